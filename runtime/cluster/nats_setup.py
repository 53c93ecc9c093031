"""What Roost keeps in JetStream, created or checked when a node connects: the stream
``ROOST`` (a subject per partition), the KV buckets and the object store ``roost_snapshots``;
and the retry of a call while NATS is briefly unavailable. On the NATS thread, with nats-py's
JetStream context; ``jetstream`` calls these.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js.api import ObjectStoreConfig, StorageType, StreamConfig

from .nats_errors import DUPLICATE_IN_PROCESS, NO_SUITABLE_PEERS, STREAM_NAME_IN_USE, ClusterSetupError

STREAM = "ROOST"
SUBJECTS = "roost.p.*"
SNAPSHOTS = "roost_snapshots"  # an object store: the partitions' snapshots (snapshot_store)
DUPLICATE_WINDOW_SECONDS = 120.0
# how long the server keeps the delete marker it writes when a key's per-message TTL expires
MARKER_TTL_SECONDS = 60.0
RETRY_PAUSE_SECONDS = 0.05
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoRespondersError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
)

T = TypeVar("T")


async def retry(
    coro_fn: Callable[..., Awaitable[T]], *args: Any, on_retry: Callable[[], None] | None = None, **kwargs: Any
) -> T:
    """``coro_fn`` again while NATS is briefly unavailable (a reconnect, an election), until
    the call's limit cancels it; other errors propagate."""
    while True:
        try:
            return await coro_fn(*args, **kwargs)
        except nats.js.errors.APIError as exc:
            if not _transient_api_error(exc):
                raise
        except _TRANSIENT:
            pass
        if on_retry is not None:
            on_retry()
        await asyncio.sleep(RETRY_PAUSE_SECONDS)


def _transient_api_error(exc: nats.js.errors.APIError) -> bool:
    # 503: no leader now, JetStream temporarily unavailable; 10158: an earlier attempt with
    # this message id is still being proposed, and will be answered as a duplicate once done;
    # 10005: creating a replicated stream while a server is (or looks) offline
    return exc.code == 503 or exc.err_code in (DUPLICATE_IN_PROCESS, NO_SUITABLE_PEERS)


async def ensure_stream(js: Any, replicas: int) -> str:
    """The stream ``ROOST``, created or checked; its incarnation (a digest of its creation
    time, which tells it from an earlier stream of the name)."""
    config = StreamConfig(
        name=STREAM,
        subjects=[SUBJECTS],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    info = await _ensure(js, STREAM, f"the stream {STREAM}", lambda: js.add_stream(config), replicas)
    created = info.created.isoformat() if info.created is not None else ""
    return hashlib.blake2b(created.encode(), digest_size=4).hexdigest()


async def ensure_bucket(js: Any, bucket: str, replicas: int) -> None:
    async def create() -> Any:
        await js.create_key_value(
            bucket=bucket,
            history=1,
            storage=StorageType.FILE,
            replicas=replicas,
            limit_marker_ttl=MARKER_TTL_SECONDS,
        )
        return await js.stream_info(f"KV_{bucket}")

    await _ensure(js, f"KV_{bucket}", f"the KV bucket {bucket}", create, replicas)


async def ensure_object_store(js: Any, bucket: str, replicas: int) -> None:
    async def create() -> Any:
        await js.create_object_store(bucket, config=ObjectStoreConfig(storage=StorageType.FILE, replicas=replicas))
        return await js.stream_info(f"OBJ_{bucket}")

    await _ensure(js, f"OBJ_{bucket}", f"the object store {bucket}", create, replicas)


async def _stream_info(js: Any, name: str) -> Any:
    try:
        return await retry(js.stream_info, name)
    except nats.js.errors.NotFoundError:
        return None


async def _ensure(js: Any, name: str, what: str, create: Callable[[], Awaitable[Any]], replicas: int) -> Any:
    info = await _stream_info(js, name)
    if info is None:
        try:
            info = await retry(create)
        except nats.js.errors.APIError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:  # another node created it meanwhile
                raise ClusterSetupError(f"cannot create {what}: {exc.description}") from exc
            info = await _stream_info(js, name)
    config = info.config
    if config.storage != StorageType.FILE:
        storage = getattr(config.storage, "value", config.storage)
        raise ClusterSetupError(
            f"{what} has {storage} storage; Roost needs file storage. Storage cannot be "
            f"changed in place: back it up, delete it (nats stream rm {name}) and let Roost create it"
        )
    if config.num_replicas != replicas:
        raise ClusterSetupError(
            f"{what} has {config.num_replicas} replicas, Roost is configured for {replicas}: "
            f"run `nats stream edit {name} --replicas {replicas}` or start Roost with --replicas {config.num_replicas}"
        )
    return info
