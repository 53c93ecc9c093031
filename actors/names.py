"""Reserved binding names of the built-in actors (never reachable over the HTTP actor routes)."""

QUEUES_BINDING = "__QUEUES"
REGISTRY_BINDING = "__ROOST_QUEUES"
JOBS_BINDING = "__JOBS"
SCHEDULER_BINDING = "__SCHEDULER"
IDEMPOTENCY_BINDING = "__IDEMPOTENCY"


def consumer_binding(queue: str) -> str:
    return f"__CONSUMER__{queue}"
