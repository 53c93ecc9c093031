"""The interface through which built-in actors (the ``actors`` package) plug into a runtime.

The runtime never imports ``actors``: it loads an ``Extension`` by import string, the way
``roost.toml`` names classes, and asks it for namespaces to host and bindings to add.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

BUILTINS = "actors.extension:builtins"

# A Prometheus metric family: name, type ("gauge", "counter"), help, and its samples.
MetricFamily = tuple[str, str, str, list[tuple[Mapping[str, str], float]]]


def load_object(path: str) -> Any:
    """Import ``"package.module:Name"`` (``Name`` may be dotted); ``ImportError`` if absent."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ImportError(f"{path!r} is not an import path of the form 'package.module:Name'")
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ImportError(f"{path!r} is not an import path of the form 'package.module:Name'")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return found


class Extension(Protocol):
    """What a package of built-ins adds to every runtime. Every member but ``name`` is optional.

    ``namespaces(config)``: actor classes to host, by binding name (each its own namespace;
    names starting with ``__`` are not reachable over HTTP), given the resolved config.
    ``bindings(rt)``: extra ``env`` entries, made once the runtime's namespaces exist.
    ``routes()``: HTTP routes, ``(methods, rule, async handler(rt, request, **params))``.
    ``start(rt)``: background work, run in the runtime's nursery until it closes.
    ``metrics(rt)``: more metric families for ``/metrics``, read at each scrape, as
    ``(name, type, help, [(labels, value), ...])`` (``MetricFamily``).
    """

    name: str

    def namespaces(self, config: Any) -> Mapping[str, type]: ...

    def bindings(self, rt: Any) -> Mapping[str, Any]: ...

    def routes(self) -> list[tuple[list[str], str, Any]]: ...

    async def start(self, rt: Any) -> None: ...

    async def metrics(self, rt: Any) -> list[MetricFamily]: ...


class Transferable(Protocol):
    """A value ``stub.queue(...)`` can hand to an actor in another worker process.

    ``transfer_state()`` gives ``(factory, state)``: the import path of a callable that
    rebuilds a copy from ``state`` (msgpack-able), on the owner. Once the handler ran with the
    copy, the copy's ``transfer_outcome()`` travels back and the original's
    ``apply_transfer_outcome(outcome)`` takes it in, so the caller sees what the handler did
    (a queue batch: each message's ack or retry).
    """

    def transfer_state(self) -> tuple[str, Any]: ...

    def transfer_outcome(self) -> Any: ...

    def apply_transfer_outcome(self, outcome: Any) -> None: ...


def load_extension(path: str) -> Extension:
    extension = load_object(path)
    if not isinstance(getattr(extension, "name", None), str):
        raise TypeError(f"{path!r} is not a Roost extension (it has no name)")
    return extension
