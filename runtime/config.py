"""``roost.toml`` and its in-code equivalent, checked and normalised into ``Config``.

Trio-free. Every mistake raises ``ConfigError`` naming the source, the table and the key,
before anything starts. Classes may be given as import paths (``"module:Class"``) or, in
code, as the classes themselves; both are resolved here.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConfigError
from .extensions import load_object
from .limits import DEFAULT_CONSUMER_MAX_WALL_TIME_SECONDS

BINDING_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


# Cloudflare's message_retention_period: how long a queue keeps a message nobody acked.
DEFAULT_MESSAGE_RETENTION_SECONDS = 345_600  # 4 days
MIN_MESSAGE_RETENTION_SECONDS = 60
MAX_MESSAGE_RETENTION_SECONDS = 1_209_600  # 14 days


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


# (key, type, low, high) of each consumer setting; None bounds are open.
_CONSUMER_SETTINGS: dict[str, tuple[type | tuple[type, ...], float | None, float | None]] = {
    "max_batch_size": (int, 1, 100),
    "max_batch_timeout": ((int, float), 0, 60),
    "max_retries": (int, 0, 100),
    "max_concurrency": (int, 1, 250),
    "retry_delay": ((int, float), 0, 43200),  # Cloudflare's cap on a delay: 12 hours
    "max_wall_time": ((int, float), 1, 86400),
}
# The same, of each setting of a queue itself.
_QUEUE_SETTINGS: dict[str, tuple[type | tuple[type, ...], float | None, float | None]] = {
    "message_retention_period": ((int, float), MIN_MESSAGE_RETENTION_SECONDS, MAX_MESSAGE_RETENTION_SECONDS),
}
_CONSUMER_KEYS = {"queue", "dead_letter_queue", "dead_letter_expired", *_CONSUMER_SETTINGS}
# A var is a secret (never written to a log line) when a [[webhooks]] names it, or when its
# name says so.
SECRET_NAME_PARTS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "API_KEY", "PRIVATE_KEY")
_TOP_KEYS = {
    "data_dir",
    "vars",
    "durable_objects",
    "queues",
    "webhooks",
    "routes",
    "http",
    "name",
    "main",
    "compatibility_date",
}
_RESERVED_PREFIXES = ("/actors", "/rpc", "/queues", "/jobs", "/webhooks", "/healthz", "/metrics")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read ``roost.toml`` at ``path``; vars are overridden by environment variables."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    config = parse_config(data, source=source)
    overridden = {k: os.environ.get(k, v) for k, v in config.vars.items()}
    data_dir = config.data_dir
    if data_dir is not None and not os.path.isabs(data_dir):
        data_dir = os.path.join(os.path.dirname(os.path.abspath(source)), data_dir)
    config = replace(config, data_dir=data_dir, vars=overridden)
    check_bindings(config)  # an environment variable may have emptied the internal token
    return config


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Check a ``roost.toml``-shaped mapping and resolve its classes."""
    where = _Where(source)
    _expect(data, Mapping, where, "", "a table")
    _unknown(data, _TOP_KEYS, where, "")
    data_dir = data.get("data_dir")
    if data_dir is not None:
        _expect(data_dir, str, where, "data_dir", "a string")
    variables = _vars(data.get("vars", {}), where)
    actors = _durable_objects(data.get("durable_objects", {}), where)
    queues = _queues(data.get("queues", {}), where)
    entries = _expect(data.get("webhooks", []), list, where, "webhooks", "an array of tables")
    webhooks = _webhooks(entries, where, "webhooks")
    routes = _routes(_expect(data.get("routes", []), list, where, "routes", "an array of tables"), where)
    http = _http(data.get("http", {}), where)
    config = Config(source, data_dir, actors, queues, variables, webhooks, routes, http)
    check_bindings(config)
    return config


def merge(
    config: Config,
    *,
    data_dir: str | os.PathLike[str] | None,
    actors: Mapping[str, type | str] | None,
    queues: list[Mapping[str, Any]] | None,
    vars: Mapping[str, str] | None,
    webhooks: list[Mapping[str, Any]] | None = None,
) -> Config:
    """``config`` plus the keyword arguments of ``open_runtime`` (which add to it)."""
    where = _Where(config.source)
    merged_actors = dict(config.actors)
    for binding, cls in (actors or {}).items():
        merged_actors[binding] = _class(cls, where, f"actors.{binding}")
    merged_queues = dict(config.queues)
    given: dict[str, int] = {}
    for i, entry in enumerate(queues or []):
        table = f"queues[{i}]"
        _expect(entry, Mapping, where, table, "a dict")
        _unknown(entry, {"binding", "consumer", *_CONSUMER_KEYS, *_QUEUE_SETTINGS}, where, table)
        name = _queue_name(entry.get("queue"), where, f"{table}.queue")
        if name in given:
            raise where.error(
                table, f"key 'queue': queue {name!r} is given already, by queues[{given[name]}]"
            )
        given[name] = i
        settings = _consumer_settings(entry, where, table)
        settings.update(_ranged(entry, _QUEUE_SETTINGS, where, table))
        consumer = entry.get("consumer")
        if consumer is not None:
            settings["consumer"] = _class(consumer, where, f"{table}.consumer")
        binding = entry.get("binding")
        if binding is not None:
            settings["binding"] = _binding(binding, where, f"{table}.binding")
        merged_queues[name] = QueueConfig(name, **settings)
    _add_dead_letter_queues(merged_queues)
    merged_vars = dict(config.vars)
    for name, value in (vars or {}).items():
        merged_vars[_binding(name, where, "vars")] = _expect(value, str, where, f"vars.{name}", "a string")
    result = Config(
        config.source,
        os.fspath(data_dir) if data_dir is not None else config.data_dir,
        merged_actors,
        merged_queues,
        merged_vars,
        {**config.webhooks, **_webhooks(webhooks or [], where, "webhooks")},
        config.routes,
        config.http,
    )
    check_bindings(result)
    return result


def secret_values(config: Config) -> list[str]:
    """The values of the vars that are secrets: those a [[webhooks]] names as its ``secret``,
    the one ``[http] internal_token`` names, and those whose name contains SECRET, TOKEN,
    PASSWORD, PASSWD, API_KEY or PRIVATE_KEY."""
    named = {hook.secret for hook in config.webhooks.values()} | {config.http.internal_token}
    return [
        value
        for name, value in config.vars.items()
        if name in named or any(part in name.upper() for part in SECRET_NAME_PARTS)
    ]


def check_bindings(config: Config) -> None:
    """Every env name is bound once: across actors, queue producers and vars; every webhook
    names a declared queue and var; the internal token names a var that is not empty."""
    token = config.http.internal_token
    if token is not None:
        if token not in config.vars:
            raise ConfigError(f"{config.source}: [http] key 'internal_token': no var named {token!r}")
        if not config.vars[token].strip():
            raise ConfigError(
                f"{config.source}: [http] key 'internal_token': var {token!r} is empty (set it, or"
                " remove internal_token)"
            )
    for i, route in enumerate(config.routes):
        if route.binding not in config.actors:
            raise ConfigError(
                f"{config.source}: [routes[{i}]] key 'binding': no durable object binding {route.binding!r}"
            )
    for provider, hook in config.webhooks.items():
        table = f"webhooks.{provider}"
        if hook.queue not in config.queues:
            raise ConfigError(f"{config.source}: [{table}] key 'queue': queue {hook.queue!r} is not declared")
        if hook.secret not in config.vars:
            raise ConfigError(f"{config.source}: [{table}] key 'secret': no var named {hook.secret!r}")
    seen: dict[str, str] = {}
    names = [(b, "durable_objects.bindings") for b in config.actors]
    names += [(q.binding, "queues.producers") for q in config.queues.values() if q.binding]
    names += [(v, "vars") for v in config.vars]
    for name, table in names:
        if name in seen:
            raise ConfigError(
                f"{config.source}: [{table}] binding {name!r} is already bound in [{seen[name]}]"
            )
        seen[name] = table


# -- tables ----------------------------------------------------------------------------------


class _Where:
    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, table: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{table}] {message}" if table else f"{self.source}: {message}")


def _vars(table: Any, where: _Where) -> dict[str, str]:
    _expect(table, Mapping, where, "vars", "a table")
    out = {}
    for name, value in table.items():
        _binding(name, where, "vars")
        out[name] = _expect(value, str, where, f"vars.{name}", "a string")
    return out


def _durable_objects(table: Any, where: _Where) -> dict[str, type]:
    _expect(table, Mapping, where, "durable_objects", "a table")
    _unknown(table, {"bindings"}, where, "durable_objects")
    entries = table.get("bindings", [])
    _expect(entries, list, where, "durable_objects.bindings", "an array of tables")
    out: dict[str, type] = {}
    for i, entry in enumerate(entries):
        t = f"durable_objects.bindings[{i}]"
        _expect(entry, Mapping, where, t, "a table")
        _unknown(entry, {"name", "class_name", "script_name"}, where, t)
        name = _binding(_required(entry, "name", where, t), where, f"{t}.name")
        if name in out:
            raise where.error(t, f"key 'name': binding {name!r} is declared twice")
        out[name] = _class(_required(entry, "class_name", where, t), where, f"{t}.class_name")
    return out


def _queues(table: Any, where: _Where) -> dict[str, QueueConfig]:
    _expect(table, Mapping, where, "queues", "a table")
    _unknown(table, {"producers", "consumers", "settings"}, where, "queues")
    producers: dict[str, str] = {}
    for i, entry in enumerate(
        _expect(table.get("producers", []), list, where, "queues.producers", "an array")
    ):
        t = f"queues.producers[{i}]"
        _expect(entry, Mapping, where, t, "a table")
        _unknown(entry, {"queue", "binding", "delivery_delay"}, where, t)
        queue = _queue_name(_required(entry, "queue", where, t), where, f"{t}.queue")
        producers[queue] = _binding(_required(entry, "binding", where, t), where, f"{t}.binding")
    consumers: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(
        _expect(table.get("consumers", []), list, where, "queues.consumers", "an array")
    ):
        t = f"queues.consumers[{i}]"
        _expect(entry, Mapping, where, t, "a table")
        _unknown(entry, {"class_name", *_CONSUMER_KEYS}, where, t)
        queue = _queue_name(_required(entry, "queue", where, t), where, f"{t}.queue")
        if queue in consumers:
            raise where.error(t, f"key 'queue': queue {queue!r} already has a consumer")
        settings = _consumer_settings(entry, where, t)
        settings["consumer"] = _class(_required(entry, "class_name", where, t), where, f"{t}.class_name")
        consumers[queue] = settings
    dead_letter = {s.get("dead_letter_queue") for s in consumers.values()} - {None}
    for i, queue in enumerate(consumers):
        if queue not in producers and queue not in dead_letter:
            raise where.error(
                f"queues.consumers[{i}]",
                f"key 'queue': queue {queue!r} is not declared by any [[queues.producers]] or dead_letter_queue",
            )
    queues = {
        name: QueueConfig(name, binding=producers.get(name), **consumers.get(name, {}))
        for name in [*producers, *(q for q in consumers if q not in producers)]
    }
    _add_dead_letter_queues(queues)
    entries = _expect(table.get("settings", []), list, where, "queues.settings", "an array")
    _queue_settings(entries, queues, where)
    return queues


def _queue_settings(entries: list[Any], queues: dict[str, QueueConfig], where: _Where) -> None:
    """``[[queues.settings]]``: the settings of a queue declared elsewhere, at most once each."""
    given: dict[str, str] = {}
    for i, entry in enumerate(entries):
        t = f"queues.settings[{i}]"
        _expect(entry, Mapping, where, t, "a table")
        _unknown(entry, {"queue", *_QUEUE_SETTINGS}, where, t)
        queue = _queue_name(_required(entry, "queue", where, t), where, f"{t}.queue")
        if queue not in queues:
            raise where.error(
                t,
                f"key 'queue': queue {queue!r} is not declared by any [[queues.producers]],"
                " [[queues.consumers]] or dead_letter_queue",
            )
        if queue in given:
            raise where.error(
                t, f"key 'queue': queue {queue!r} has its settings already, in [{given[queue]}]"
            )
        given[queue] = t
        queues[queue] = replace(queues[queue], **_ranged(entry, _QUEUE_SETTINGS, where, t))


def _http(table: Any, where: _Where) -> HttpConfig:
    _expect(table, Mapping, where, "http", "a table")
    _unknown(table, {"internal_token"}, where, "http")
    token = table.get("internal_token")
    if token is not None:
        token = _binding(token, where, "http.internal_token")
    return HttpConfig(internal_token=token)


def _webhooks(entries: list[Any], where: _Where, table: str) -> dict[str, WebhookConfig]:
    out: dict[str, WebhookConfig] = {}
    for i, entry in enumerate(entries):
        t = f"{table}[{i}]"
        _expect(entry, Mapping, where, t, "a table")
        _unknown(entry, {"provider", "queue", "secret"}, where, t)
        provider = _queue_name(_required(entry, "provider", where, t), where, f"{t}.provider")
        queue = _queue_name(_required(entry, "queue", where, t), where, f"{t}.queue")
        secret = _binding(_required(entry, "secret", where, t), where, f"{t}.secret")
        out[provider] = WebhookConfig(provider, queue, secret)
    return out


def _routes(entries: list[Any], where: _Where) -> list[RouteConfig]:
    out = []
    for i, entry in enumerate(entries):
        t = f"routes[{i}]"
        _expect(entry, Mapping, where, t, "a table")
        _unknown(entry, {"path", "binding", "name"}, where, t)
        path = _expect(_required(entry, "path", where, t), str, where, f"{t}.path", "a string")
        if (
            not path.startswith("/")
            or path.endswith("/")
            or "<" in path
            or path.startswith(_RESERVED_PREFIXES)
        ):
            raise where.error(
                t,
                f"key 'path': {path!r} must start with '/', not end with one, and not be one of Roost's own",
            )
        binding = _binding(_required(entry, "binding", where, t), where, f"{t}.binding")
        name = _expect(_required(entry, "name", where, t), str, where, f"{t}.name", "a string")
        out.append(RouteConfig(path, binding, name))
    return out


def _add_dead_letter_queues(queues: dict[str, QueueConfig]) -> None:
    """A queue named only as a dead_letter_queue exists too."""
    for q in list(queues.values()):
        if q.dead_letter_queue and q.dead_letter_queue not in queues:
            queues[q.dead_letter_queue] = QueueConfig(q.dead_letter_queue)


def _consumer_settings(entry: Mapping[str, Any], where: _Where, table: str) -> dict[str, Any]:
    out = _ranged(entry, _CONSUMER_SETTINGS, where, table)
    dlq = entry.get("dead_letter_queue")
    if dlq is not None:
        out["dead_letter_queue"] = _queue_name(dlq, where, f"{table}.dead_letter_queue")
        if dlq == entry.get("queue"):
            raise where.error(
                table, f"key 'dead_letter_queue': queue {dlq!r} cannot be its own dead-letter queue"
            )
    if "dead_letter_expired" in entry:
        key = f"{table}.dead_letter_expired"
        expired = _expect(entry["dead_letter_expired"], bool, where, key, "a boolean")
        if expired and dlq is None:
            raise where.error(table, "key 'dead_letter_expired': true needs a dead_letter_queue to send to")
        out["dead_letter_expired"] = expired
    return out


def _ranged(
    entry: Mapping[str, Any],
    spec: Mapping[str, tuple[type | tuple[type, ...], float | None, float | None]],
    where: _Where,
    table: str,
) -> dict[str, Any]:
    """The numeric keys of ``entry`` that ``spec`` names, checked against its types and ranges."""
    out: dict[str, Any] = {}
    for key, (kind, low, high) in spec.items():
        if key not in entry:
            continue
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = "an integer" if kind is int else "a number"
            raise where.error(table, f"key {key!r}: expected {expected}, got {value!r}")
        # Written so that NaN is out of every range.
        if not ((low is None or value >= low) and (high is None or value <= high)):
            raise where.error(table, f"key {key!r}: {value!r} is out of range {low}..{high}")
        out[key] = value
    return out


# -- values ----------------------------------------------------------------------------------


def _expect(value: Any, kind: Any, where: _Where, key: str, description: str) -> Any:
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        table, _, leaf = key.rpartition(".")
        raise where.error(
            table, f"key {leaf!r}: expected {description}, got {type(value).__name__} {value!r}"
        )
    return value


def _required(entry: Mapping[str, Any], key: str, where: _Where, table: str) -> Any:
    if key not in entry:
        raise where.error(table, f"key {key!r} is required")
    return entry[key]


def _unknown(entry: Mapping[str, Any], allowed: set[str], where: _Where, table: str) -> None:
    for key in entry:
        if key not in allowed:
            raise where.error(table, f"unknown key {key!r} (expected one of: {', '.join(sorted(allowed))})")


def _binding(name: Any, where: _Where, key: str) -> str:
    _expect(name, str, where, key, "a string")
    if not name or not set(name) <= BINDING_CHARS or name[0].isdigit():
        table, _, leaf = key.rpartition(".")
        raise where.error(table, f"key {leaf!r}: {name!r} is not a valid binding name (letters, digits, _)")
    return name


def _queue_name(name: Any, where: _Where, key: str) -> str:
    _expect(name, str, where, key, "a string")
    if not name or len(name) > 63 or not all(c.isalnum() or c in "-_" for c in name) or not name.isascii():
        table, _, leaf = key.rpartition(".")
        raise where.error(
            table, f"key {leaf!r}: {name!r} is not a valid queue name (1-63 of a-z, 0-9, - and _)"
        )
    return name


def _class(value: Any, where: _Where, key: str) -> type:
    """Resolve an import path to a class (the runtime checks that it is an Actor)."""
    table, _, leaf = key.rpartition(".")
    if isinstance(value, str):
        try:
            value = load_object(value)
        except ImportError as exc:
            raise where.error(table, f"key {leaf!r}: cannot import {value!r}: {exc}") from None
        except Exception as exc:  # the user's module raised while importing
            raise where.error(
                table, f"key {leaf!r}: importing {value!r} raised {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(value, type):
        raise where.error(table, f"key {leaf!r}: {value!r} is not a class")
    return value
