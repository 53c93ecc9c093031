"""How an exception raised inside an actor reaches its caller.

Roost's own errors arrive as themselves; a builtin exception, or an importable class that
can be rebuilt from its arguments or message, arrives as the same class; anything else as
``RemoteError``. The caller never receives the actor's exception object (nor its traceback
and the frames it holds): it gets a rebuilt one, as it would from another process. Every
error rebuilt here has ``remote = True``. ``to_wire`` and ``from_wire`` carry an error that
arrived so to a caller in another worker process, as the same class with the same
arguments and attributes.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

from ..errors import ActorError, DataCloneError, RemoteError
from . import codec


def arrived(exc: Exception) -> Exception:
    """The exception the caller sees for ``exc`` raised by the actor."""
    rebuilt = _rebuild(exc)
    rebuilt.remote = True  # type: ignore[attr-defined]
    return rebuilt


def to_wire(exc: Exception) -> list[Any]:
    """``exc`` (as ``arrived`` made it) as msgpack-able data: class, arguments, attributes."""
    cls = type(exc)
    try:
        args = codec.copy(list(exc.args))
    except DataCloneError:
        args = [str(exc)]
    attributes = {}
    for name, value in vars(exc).items():
        if name == "remote":
            continue
        try:
            attributes[name] = codec.copy(value)
        except DataCloneError:
            continue
    return [cls.__module__, cls.__qualname__, args, attributes, str(exc)]


def from_wire(data: list[Any]) -> Exception:
    """The error ``to_wire`` described, rebuilt without running its ``__init__``."""
    module, qualname, args, attributes, text = data
    cls = _importable_named(module, qualname)
    if cls is None or not issubclass(cls, Exception):
        rebuilt: Exception = RemoteError(remote_type=f"{module}.{qualname}", remote_message=text)
    else:
        rebuilt = cls.__new__(cls)
        rebuilt.args = tuple(args)
        rebuilt.__dict__.update(attributes)
    rebuilt.remote = True  # type: ignore[attr-defined]
    return rebuilt


def _rebuild(exc: Exception) -> Exception:
    if isinstance(exc, ActorError):
        clone = copy.copy(exc)
        clone.__traceback__ = clone.__cause__ = clone.__context__ = None
        return clone
    cls = type(exc)
    if _importable(cls):
        try:
            args = codec.copy(exc.args)
        except DataCloneError:
            args = [str(exc)]
        for attempt in (args, [str(exc)]):
            try:
                return cls(*attempt)
            except Exception:  # the class cannot be rebuilt this way; try the next
                continue
    return RemoteError(remote_type=f"{cls.__module__}.{cls.__qualname__}", remote_message=str(exc))


def _importable(cls: type) -> bool:
    return _importable_named(cls.__module__, cls.__qualname__) is cls


def _importable_named(module: str, qualname: str) -> Any:
    if "<locals>" in qualname:
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None
