"""Roost's error tree. Every error the runtime raises on purpose is one of these.

    ActorError                      base of every Roost runtime error
    ├── RemoteError                 an actor raised something that cannot travel as itself
    ├── MethodNotFoundError         (also AttributeError) no such RPC-callable method
    ├── OverloadedError             an actor's inbox is full
    ├── ActorResetError             the instance was reset while the event was pending
    ├── DataCloneError              (also TypeError) a value msgpack cannot copy
    ├── CallTimeoutError            (also TimeoutError) a call ran past its time limit
    └── StorageError                storage failed (a commit, the LMDB environment)
        ├── StorageLimitError       (also ValueError) a key or value over its limit
        └── DataDirectoryLockedError  another open runtime owns the data directory

    ConfigError                     (a ValueError, not an ActorError) a bad roost.toml or config

Errors that reach a caller from an actor carry ``remote = True``; errors raised on the
caller's own side carry ``remote = False``.
"""

from __future__ import annotations


class ActorError(Exception):
    """Base class of Roost's runtime errors."""

    remote: bool = False


class RemoteError(ActorError):
    """An actor raised an exception whose class cannot be rebuilt in the caller.

    ``remote_type`` is the qualified class name (``module.Class``), ``remote_message`` its
    ``str()``.
    """

    def __init__(self, message: str = "", *, remote_type: str = "", remote_message: str = "") -> None:
        super().__init__(message or f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message


class MethodNotFoundError(ActorError, AttributeError):
    """The method does not exist, is private, or is reserved (``fetch``, ``alarm``, ...)."""


class OverloadedError(ActorError):
    """Too many events are pending for one actor; the call was not delivered."""


class ActorResetError(ActorError):
    """The actor instance was reset (failed commit, abort, timeout) before the event finished."""


class WorkerUnavailableError(ActorResetError):
    """The worker process that owns the actor is not running (it is being restarted); the
    call was not delivered and may be retried."""


class NotOwnerError(WorkerUnavailableError):
    """A forwarded call reached a process that does not serve the actor's partition (it
    moved, or is being taken over); the call was not delivered and may be retried."""


class DataCloneError(ActorError, TypeError):
    """A value cannot be copied through msgpack (unsupported type, naive datetime, ...)."""


class CallTimeoutError(ActorError, TimeoutError):
    """A call ran past its time limit (``stub.with_options(timeout=...)``, a consumer's
    ``max_wall_time``, ``alarm()``'s limit, an HTTP request's timeout) and was cancelled."""


class StorageError(ActorError):
    """Durable storage failed: a commit, or the LMDB environment itself."""


class StorageLimitError(StorageError, ValueError):
    """A key or value is over its limit, or too many keys were given at once."""


class DataDirectoryLockedError(StorageError):
    """The data directory is held by another open runtime (in this process or another)."""


class ConfigError(ValueError):
    """A configuration mistake; the message names the file, the table and the key."""


# Roost's own classes always travel as themselves across an RPC boundary.
ROOST_ERRORS: dict[str, type[ActorError]] = {
    cls.__name__: cls
    for cls in (
        ActorError,
        RemoteError,
        MethodNotFoundError,
        OverloadedError,
        ActorResetError,
        WorkerUnavailableError,
        NotOwnerError,
        DataCloneError,
        CallTimeoutError,
        StorageError,
        StorageLimitError,
    )
}
