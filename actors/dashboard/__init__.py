"""The operator's dashboard (``GET /dashboard``): server-rendered pages of the queues, their
messages, the scheduled jobs, job status and the runtime's statistics, with forms to pause,
resume, purge and redrive a queue behind a confirmation step. It reads and acts only through
the Python APIs of the queues, the scheduler and the job status (stubs, so it works with
``roost serve --workers N``); the login and its cookie belong to the HTTP guard."""
