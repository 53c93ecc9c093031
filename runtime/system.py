"""``open_runtime`` and ``Runtime``: the shards, the host and the extensions wired in one nursery.

Closing the runtime refuses new instances, stops background work, commits every pending
write, and closes the LMDB environments. Reopening the same data directory sees every write
that was durable. ``open_worker_runtime`` is the same runtime in one worker process of
``roost serve --workers N``: it opens only the environment of the partitions the worker owns,
serves calls that other workers forward to them, and forwards the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import trio

from . import clock
from .alarms import Alarms
from .config import Config, merge, parse_config
from .durability.shards import Shards, open_shards
from .errors import ConfigError
from .extensions import BUILTINS, Extension, load_extension
from .http import create_app
from .limits import (
    DEFAULT_IDLE_TIMEOUT_SECONDS,
    DEFAULT_MAP_SIZE_BYTES,
    DEFAULT_MAX_INBOX,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
)
from .model.actor import Actor
from .model.env import Env
from .model.host import Forwarder, Host, NamespaceInfo
from .model.stubs import Namespace
from .observability.tracing import Tracing, open_tracing
from .triggers import CRON_BINDING, TRIGGERS_BINDING, CronActor, CronTriggers

log = logging.getLogger("roost.runtime")


class Runtime:
    """A running Roost: namespaces by binding, the shared ``env``, and statistics.

    ``tracing`` makes its spans (``runtime.observability.tracing``); the built-in actors reach it here,
    as they reach the runtime only through its public names and this object."""

    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS

    def __init__(self, config: Config, shards: Shards, host: Host, alarms: Alarms) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self._shards = shards
        self._host = host
        self._alarms = alarms
        self._extensions: list[Extension] = []
        self._asgi_app: Any = None
        self._namespaces: dict[str, Namespace] = {}
        self.env: Env = Env({})
        self.tracing = Tracing(enabled=False)
        # Set in a worker of ``roost serve --workers N``: the other workers, for ``/metrics``.
        self.placement: Placed | None = None
        self.http_requests = 0  # answered by ``asgi_app``

    def namespace(self, binding: str) -> Namespace:
        """The namespace bound as ``binding``; ``KeyError`` naming the known ones if absent."""
        try:
            return self._namespaces[binding]
        except KeyError:
            raise KeyError(
                f"no actor namespace bound as {binding!r}; bound: {sorted(self._namespaces)}"
            ) from None

    @property
    def namespaces(self) -> Mapping[str, Namespace]:
        return dict(self._namespaces)

    def queue(self, name: str) -> Any:
        """The producer and operations handle of queue ``name`` (an ``actors.Queue``)."""
        for extension in self._extensions:
            if hasattr(extension, "queue"):
                return extension.queue(self, name)
        raise KeyError(f"no queue named {name!r}")

    @property
    def closing(self) -> bool:
        """True once the runtime began shutting down."""
        return self._host.closed

    @property
    def asgi_app(self) -> Any:
        """The ASGI app serving this runtime over HTTP (API.md section 6), built once."""
        if self._asgi_app is None:
            routes = [
                route
                for extension in self._extensions
                if hasattr(extension, "routes")
                for route in extension.routes()
            ]
            metrics = [partial(e.metrics, self) for e in self._extensions if hasattr(e, "metrics")]
            self._asgi_app = create_app(self, routes=routes, metrics=metrics)
        return self._asgi_app

    def statistics(self) -> dict[str, Any]:
        """This process's statistics (in a worker: its partitions' only), commits summed over
        its shards."""
        every = [shard.committer.statistics for shard in self._shards]
        host = self._host.statistics
        alarms = self._alarms.statistics
        return {
            "live_actors": self._host.live_instances,
            "live_actors_by_binding": self._host.live_instances_by_binding(),
            "events": host.events,
            "instances_started": host.instances_started,
            "evictions": host.evictions,
            "resets": host.resets,
            "commits": sum(c.commits for c in every),
            "committed_actors": sum(c.actors for c in every),
            "committed_writes": sum(c.writes for c in every),
            "failed_commits": sum(c.failed_commits for c in every),
            "commit_seconds_total": sum(c.seconds_total for c in every),
            "commit_latency_buckets": {
                bound: sum(c.latency_buckets[i] for c in every)
                for i, bound in enumerate(every[0].BUCKETS_SECONDS)
            },
            "alarms_pending": self._alarms.pending,
            "alarms_delivered": alarms.delivered,
            "alarms_failed": alarms.failed,
            "alarms_retried": alarms.retried,
            "alarms_dropped": alarms.dropped,
            "http_requests": self.http_requests,
        }

    def _bind(self, info: NamespaceInfo) -> Namespace:
        """Make ``info`` reachable as ``rt.namespace(info.binding)``."""
        namespace = Namespace(self._host, info)
        self._namespaces[info.binding] = namespace
        return namespace


@asynccontextmanager
async def open_runtime(
    config: Config | Mapping[str, Any] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    actors: Mapping[str, type[Actor] | str] | None = None,
    queues: list[Mapping[str, Any]] | None = None,
    vars: Mapping[str, str] | None = None,
    webhooks: list[Mapping[str, Any]] | None = None,
    triggers: list[Mapping[str, Any]] | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
    max_inbox: int = DEFAULT_MAX_INBOX,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    map_size: int = DEFAULT_MAP_SIZE_BYTES,
    max_map_size: int = DEFAULT_MAP_SIZE_BYTES,
    extensions: tuple[str, ...] = (BUILTINS,),
) -> AsyncIterator[Runtime]:
    """Open a runtime on ``data_dir`` and close it cleanly when the block exits.

    ``config`` is what ``load_config`` returns or a dict shaped like ``roost.toml``; keyword
    arguments add to it (``triggers=[{"cron", "binding", "name"}]``: cron triggers, as
    ``[[triggers.crons]]`` tables). ``idle_timeout`` (seconds) is how long an idle instance stays in
    memory; ``max_inbox`` how many events may be pending for one actor before callers get
    ``OverloadedError``. ``request_timeout`` (seconds) is how long an HTTP request to
    ``rt.asgi_app`` may take before it is cancelled and answered 504. ``map_size`` is the
    LMDB map to start with and ``max_map_size`` the most it may grow to (bytes). Raises
    ``ConfigError`` for a bad configuration.
    """
    resolved = _resolve_config(
        config,
        data_dir=data_dir,
        actors=actors,
        queues=queues,
        vars=vars,
        webhooks=webhooks,
        triggers=triggers,
    )
    options = _Options(idle_timeout, max_inbox, request_timeout, map_size, max_map_size, extensions)
    async with _open(resolved, options, None) as rt:
        yield rt


class Placed(Protocol):
    """Where a process stands among others holding the same actors: a worker of ``roost
    serve --workers N`` (``runtime.placement``) or a cluster's node (``runtime.cluster``)."""

    async def open_shards(self, data_dir: str, *, map_size_bytes: int, max_map_size_bytes: int) -> Shards: ...

    def attach(self, host: Host, rescan_alarms: Callable[[], None]) -> None: ...

    def forwarder(self, host: Host) -> Forwarder: ...

    async def serve(self, host: Host, statistics: Callable[[], dict[str, Any]], *, task_status: Any = ...) -> None: ...

    async def statistics(self, own: dict[str, Any]) -> dict[Any, dict[str, Any] | None]: ...


@asynccontextmanager
async def open_worker_runtime(
    config: Config,
    placement: Placed,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
) -> AsyncIterator[Runtime]:
    """The runtime of one worker process (or cluster node): the partitions ``placement``
    gives it, the others reached through it."""
    options = _Options(
        idle_timeout, DEFAULT_MAX_INBOX, request_timeout, DEFAULT_MAP_SIZE_BYTES, DEFAULT_MAP_SIZE_BYTES
    )
    async with _open(config, options, placement) as rt:
        yield rt


@dataclass(frozen=True, slots=True)
class _Options:
    idle_timeout: float
    max_inbox: int
    request_timeout: float
    map_size: int
    max_map_size: int
    extensions: tuple[str, ...] = (BUILTINS,)


@asynccontextmanager
async def _open(resolved: Config, options: _Options, placement: Placed | None) -> AsyncIterator[Runtime]:
    if resolved.data_dir is None:
        raise ConfigError(f"{resolved.source}: no data_dir given (set data_dir, or pass data_dir=...)")
    _check_positive("idle_timeout", options.idle_timeout)
    _check_positive("max_inbox", options.max_inbox)
    _check_positive("request_timeout", options.request_timeout)
    loaded = [load_extension(path) for path in options.extensions]
    classes: dict[str, type] = {**resolved.actors, CRON_BINDING: CronActor}
    for extension in loaded:
        if hasattr(extension, "namespaces"):
            classes.update(extension.namespaces(resolved))
    for binding, cls in classes.items():
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise ConfigError(
                f"{resolved.source}: binding {binding!r}: {cls!r} is not a subclass of runtime.Actor"
            )
    if placement is None:
        shards = await _open_shards(resolved.data_dir, options)
    else:
        shards = await placement.open_shards(
            resolved.data_dir, map_size_bytes=options.map_size, max_map_size_bytes=options.max_map_size
        )
    host = Host(shards, idle_timeout_seconds=options.idle_timeout, max_inbox=options.max_inbox)
    for shard in shards:
        shard.committer.on_failure = host.on_commit_failure
    alarms = Alarms(shards, host)
    host.on_alarm_committed = alarms.alarm_committed
    host.deliver_alarm_now = alarms.deliver_now
    rt = Runtime(resolved, shards, host, alarms)
    rt.tracing = host.tracing = open_tracing()
    rt._extensions = loaded
    rt.request_timeout_seconds = options.request_timeout
    if placement is not None:
        rt.placement = placement
        placement.attach(host, alarms.rescan)
        host.forwarder = placement.forwarder(host)
    bindings: dict[str, Any] = dict(resolved.vars)
    for binding, cls in classes.items():
        namespace = rt._bind(host.add_namespace(binding, cls))
        if binding in resolved.actors:
            bindings[binding] = namespace
    triggers = bindings[TRIGGERS_BINDING] = CronTriggers(resolved.triggers, rt.namespaces)
    for extension in loaded:
        if hasattr(extension, "bindings"):
            bindings.update(extension.bindings(rt))
    rt.env = host.env = Env(bindings)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            for shard in shards:
                await nursery.start(shard.committer.run)
            background = trio.CancelScope()
            await nursery.start(_run_background, background, host, alarms, rt, loaded, triggers)
            try:
                yield rt
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                with trio.CancelScope(shield=True):
                    host.close("the runtime is shut down")
                    background.cancel()
                    for shard in shards:
                        shard.committer.close()
    except BaseExceptionGroup as group:
        # The nursery wraps what the ``async with`` body raised; the caller gets it as raised.
        if body_error is not None and group.exceptions == (body_error,):
            raise body_error from None
        raise
    finally:
        shards.close()


async def _run_background(
    scope: trio.CancelScope,
    host: Host,
    alarms: Alarms,
    rt: Runtime,
    loaded: list[Extension],
    triggers: CronTriggers,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The host's tasks, the alarms, the arming of cron triggers and the extensions'
    background work, cancelled together at close (after which the committer commits what
    they wrote)."""
    with scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            if rt.placement is not None:
                # Before anything that may call another worker: alarms, the extensions.
                await nursery.start(rt.placement.serve, host, rt.statistics)
            await nursery.start(alarms.run)
            crons = host.namespaces[CRON_BINDING]
            moving = getattr(rt.placement, "partitions_move", False)
            nursery.start_soon(
                triggers.arm,
                rt.namespace(CRON_BINDING),
                lambda actor_id: moving or host.shards.for_prefix(crons.key + actor_id.raw) is not None,
            )
            for extension in loaded:
                if hasattr(extension, "start"):
                    nursery.start_soon(extension.start, rt)
            task_status.started()


def _resolve_config(config: Config | Mapping[str, Any] | None, **overrides: Any) -> Config:
    if config is None:
        base = Config()
    elif isinstance(config, Config):
        base = config
    elif isinstance(config, Mapping):
        base = parse_config(config)
    else:
        raise TypeError(f"config must be a Config or a dict, not {type(config).__name__}")
    return merge(base, **overrides)


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


async def _open_shards(path: str, options: _Options) -> Shards:
    def open_them() -> Shards:
        return open_shards(path, map_size_bytes=options.map_size, max_map_size_bytes=options.max_map_size)

    if clock.is_virtual():
        return open_them()
    return await trio.to_thread.run_sync(open_them)
