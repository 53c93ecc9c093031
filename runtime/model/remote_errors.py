"""How an exception raised inside an actor reaches its caller.

Roost's own errors arrive as themselves; a builtin exception, or an importable class that
can be rebuilt from its arguments or message, arrives as the same class; anything else as
``RemoteError``. The caller never receives the actor's exception object (nor its traceback
and the frames it holds): it gets a rebuilt one, as it would from another process. Every
error rebuilt here has ``remote = True``.
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
    if "<locals>" in cls.__qualname__:
        return False
    try:
        found: Any = importlib.import_module(cls.__module__)
        for part in cls.__qualname__.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return False
    return found is cls
