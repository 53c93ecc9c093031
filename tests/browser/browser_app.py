"""The app the browser tests serve: a queue whose consumer fails some messages on their first
delivery (so they die into the dead-letter queue) and records every message it handles."""

from __future__ import annotations

from actors import schedule_job, update_job_status
from runtime import Actor, now

CONFIG = """
data_dir = "state"
[vars]
ADMIN_KEY = "{token}"
{http}
[[durable_objects.bindings]]
name = "LOG"
class_name = "browser_app:Log"
[[durable_objects.bindings]]
name = "JOBS"
class_name = "browser_app:Jobs"
[[queues.producers]]
queue = "emails"
binding = "EMAILS"
[[queues.producers]]
queue = "orders"
binding = "ORDERS"
[[queues.consumers]]
queue = "orders"
class_name = "browser_app:FlakyConsumer"
max_retries = 0
max_batch_timeout = 0
dead_letter_queue = "orders-dlq"
"""


class Log(Actor):
    """What the consumer handled, in order."""

    async def record(self, body: dict) -> None:
        handled = await self.storage.get("handled", [])
        await self.storage.put("handled", [*handled, body])

    async def handled(self) -> list:
        return await self.storage.get("handled", [])


class FlakyConsumer(Actor):
    """Fails a message whose body has ``"fail": true`` the first time it sees it; handles
    (records) every other delivery, a redriven message's included."""

    async def queue(self, batch) -> None:
        for message in batch.messages:
            seen = f"seen:{message.id}"
            if message.body.get("fail") and not await self.storage.get(seen):
                await self.storage.put(seen, True)
                message.retry()
                continue
            await self.env.LOG.get_by_name("log").record(message.body)
            message.ack()


class Jobs(Actor):
    """Scheduled jobs and job status, set over RPC by the tests."""

    async def schedule(self, job: dict, in_seconds: float) -> str:
        return await schedule_job(self.env, job, now() + in_seconds, queue="orders")

    async def update(self, job_id: str, fields: dict) -> None:
        await update_job_status(self.env, job_id, **fields)
