"""How the built-in actors plug into every runtime: ``runtime`` loads ``builtins`` by import
string and calls the members of its extension protocol (``runtime/extensions.py``)."""

from __future__ import annotations

from typing import Any

from . import jobs_routes
from .dashboard import routes as dashboard_routes
from .idempotency import IdempotencyActor
from .job_status import JobStatusActor
from .names import (
    IDEMPOTENCY_BINDING,
    JOBS_BINDING,
    QUEUES_BINDING,
    REGISTRY_BINDING,
    SCHEDULER_BINDING,
    consumer_binding,
)
from .queues import routes as queue_routes
from .queues.actor import QueueActor
from .queues.queue import Queue, QueueRegistry
from .queues.telemetry import metric_families
from .scheduler import SchedulerActor, pending_jobs_family
from .webhooks import routes as webhook_routes

# Built-in actors that the helpers reach through ``env`` under their reserved names.
_HELPER_ACTORS: dict[str, type] = {
    JOBS_BINDING: JobStatusActor,
    IDEMPOTENCY_BINDING: IdempotencyActor,
    SCHEDULER_BINDING: SchedulerActor,
}


class _Builtins:
    name = "roost-builtins"

    def namespaces(self, config: Any) -> dict[str, type]:
        hosted: dict[str, type] = {QUEUES_BINDING: QueueActor, **_HELPER_ACTORS}
        for name, settings in config.queues.items():
            if settings.consumer is not None:
                hosted[consumer_binding(name)] = settings.consumer
        return hosted

    def bindings(self, rt: Any) -> dict[str, Any]:
        registry = QueueRegistry(rt, rt.config.queues)
        producers = {s.binding: registry.queue(name) for name, s in rt.config.queues.items() if s.binding}
        helpers = {binding: rt.namespace(binding) for binding in _HELPER_ACTORS}
        return {REGISTRY_BINDING: registry, **helpers, **producers}

    def routes(self) -> list[tuple[list[str], str, Any]]:
        return [
            *queue_routes.routes(),
            *webhook_routes.routes(),
            *dashboard_routes.routes(),
            *jobs_routes.routes(),
        ]

    def queue(self, rt: Any, name: str) -> Queue:
        return rt.env[REGISTRY_BINDING].queue(name)

    async def metrics(self, rt: Any) -> list[Any]:
        return [*await metric_families(rt.env[REGISTRY_BINDING]), await pending_jobs_family(rt.env)]


builtins = _Builtins()
