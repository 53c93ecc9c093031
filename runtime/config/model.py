"""The checked configuration as values: ``Config`` and the tables it holds.

Frozen dataclasses and the defaults they carry; no parsing (``parse`` makes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..limits import DEFAULT_CONSUMER_MAX_WALL_TIME_SECONDS, DEFAULT_MESSAGE_RETENTION_SECONDS


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
    retry_delay: float = 0.0
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
class HttpConfig:
    """``[http]``: ``internal_token`` names the var whose value guards the internal routes
    (``/actors``, ``/rpc``, ``/queues``, ``/jobs``, ``/metrics``); None leaves them open."""

    internal_token: str | None = None


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
