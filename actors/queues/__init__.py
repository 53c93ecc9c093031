"""Durable queues, as Cloudflare Queues: the producer handle and registry (``queue``), the
queue actor and its parts (``actor``, ``store``, ``index``, ``segments``, ``delivery``,
``outcomes``, ``operations``), the messages consumers see (``message``, ``message_codec``),
and the HTTP routes and telemetry."""
