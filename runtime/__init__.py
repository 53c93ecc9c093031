"""Roost's runtime: durable actors on trio with LMDB-backed storage.

The public names are those of API.md; everything else lives in private modules.
"""

from .clock import now
from .config import load_config
from .errors import (
    ActorError,
    ActorResetError,
    DataCloneError,
    MethodNotFoundError,
    OverloadedError,
    RemoteError,
    StorageError,
    StorageLimitError,
)
from .model.actor import Actor, ActorContext, AlarmInfo
from .model.env import Env
from .model.ids import ActorId
from .model.request import Request, Response
from .model.stubs import ActorStub, Namespace
from .storage import Storage
from .system import open_runtime

__all__ = [
    "Actor",
    "ActorContext",
    "ActorError",
    "ActorId",
    "ActorResetError",
    "ActorStub",
    "AlarmInfo",
    "DataCloneError",
    "Env",
    "MethodNotFoundError",
    "Namespace",
    "OverloadedError",
    "RemoteError",
    "Request",
    "Response",
    "Storage",
    "StorageError",
    "StorageLimitError",
    "load_config",
    "now",
    "open_runtime",
]
