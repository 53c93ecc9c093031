"""How the built-in actors plug into every runtime: ``runtime`` loads ``builtins`` by import
string and calls the members of its extension protocol (``runtime/extensions.py``)."""

from __future__ import annotations

from typing import Any

from . import queue_routes
from .names import QUEUES_BINDING, REGISTRY_BINDING, consumer_binding
from .queue import Queue, QueueRegistry
from .queue_actor import QueueActor


class _Builtins:
    name = "roost-builtins"

    def namespaces(self, config: Any) -> dict[str, type]:
        hosted: dict[str, type] = {QUEUES_BINDING: QueueActor}
        for name, settings in config.queues.items():
            if settings.consumer is not None:
                hosted[consumer_binding(name)] = settings.consumer
        return hosted

    def bindings(self, rt: Any) -> dict[str, Any]:
        registry = QueueRegistry(rt, rt.config.queues)
        producers = {s.binding: registry.queue(name) for name, s in rt.config.queues.items() if s.binding}
        return {REGISTRY_BINDING: registry, **producers}

    def routes(self) -> list[tuple[list[str], str, Any]]:
        return queue_routes.routes()

    def queue(self, rt: Any, name: str) -> Queue:
        return rt.env[REGISTRY_BINDING].queue(name)


builtins = _Builtins()
