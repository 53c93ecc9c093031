"""The checked configuration as values: ``Config`` and the tables it holds.

Frozen dataclasses and the defaults they carry; no parsing (``parse`` makes them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..limits import DEFAULT_CONSUMER_MAX_WALL_TIME_SECONDS, DEFAULT_MESSAGE_RETENTION_SECONDS
from .cron import CronExpression

# How a consumer's redelivery delay grows with a message's attempts (``retry_backoff``).
FIXED_BACKOFF = "fixed"
EXPONENTIAL_BACKOFF = "exponential"
RETRY_BACKOFFS = (FIXED_BACKOFF, EXPONENTIAL_BACKOFF)
DEFAULT_MAX_RETRY_DELAY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queue: its producer binding (if any), its consumer settings (if consumed), and its
    own settings (``[[queues.settings]]`` in roost.toml)."""

    queue: str
    binding: str | None = None
    consumer: type | None = None
    max_batch_size: int = 10
    max_batch_timeout: float = 5.0
    max_retries: int = 3
    dead_letter_queue: str | None = None
    max_concurrency: int = 1
    retry_delay: float = 0.0  # the delay before a redelivery; with exponential backoff, the first
    retry_backoff: str = FIXED_BACKOFF
    max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY_SECONDS  # exponential backoff's cap
    max_wall_time: float = DEFAULT_CONSUMER_MAX_WALL_TIME_SECONDS
    dead_letter_expired: bool = False  # expired messages go to dead_letter_queue, not away
    message_retention_period: float = DEFAULT_MESSAGE_RETENTION_SECONDS


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """``POST /webhooks/{provider}``: events signed with the secret held in var ``secret``
    (Stripe's signature scheme) go to ``queue``."""

    provider: str
    queue: str
    secret: str


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Requests whose path is ``path`` or below it go to ``fetch`` of actor ``name`` of
    namespace ``binding``, with their path unchanged."""

    path: str
    binding: str
    name: str


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """``[[triggers.crons]]``: at each slot of ``cron`` (UTC), ``scheduled(event)`` of actor
    ``name`` of namespace ``binding`` runs."""

    cron: CronExpression
    binding: str
    name: str
    table: str = field(default="triggers.crons", compare=False)  # where it was given, for errors

    @property
    def identity(self) -> str:
        """What makes the trigger itself: changing any part of it makes another trigger."""
        return json.dumps([self.cron.normalized, self.binding, self.name])


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``[http]``: ``internal_token`` names the var whose value guards the internal routes
    (``/actors``, ``/rpc``, ``/queues``, ``/jobs``, ``/metrics``); None leaves them open."""

    internal_token: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterTable:
    """``[cluster]``: the values of ``roost serve --cluster``'s flags, each None when not
    given (``runtime.config.cluster`` documents the keys)."""

    nats: tuple[str, ...] | None = None
    node_name: str | None = None
    advertise: str | None = None
    listen: str | None = None
    lease_seconds: float | None = None
    replicas: int | None = None
    snapshot_every: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    source: str = "<config>"
    data_dir: str | None = None
    actors: dict[str, type] = field(default_factory=dict)
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    webhooks: dict[str, WebhookConfig] = field(default_factory=dict)
    routes: list[RouteConfig] = field(default_factory=list)
    http: HttpConfig = HttpConfig()
    triggers: tuple[CronTrigger, ...] = ()
    cluster: ClusterTable | None = None  # [cluster], for roost serve
