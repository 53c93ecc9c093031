"""``load_config``, ``parse_config`` and ``merge``: a whole config, checked table by table."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import ConfigError
from .checks import Where, binding_name, expect, import_class, queue_name, required, unknown
from .cluster import cluster_from_toml
from .model import Config, HttpConfig, RouteConfig, WebhookConfig
from .queues import add_dead_letter_queues, queues_from_code, queues_from_toml
from .triggers import check_triggers, cron_triggers, triggers_from_toml

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
    "triggers",
    "cluster",
    "name",
    "main",
    "compatibility_date",
}
_RESERVED_PREFIXES = (
    "/actors",
    "/rpc",
    "/queues",
    "/jobs",
    "/webhooks",
    "/healthz",
    "/metrics",
    "/dashboard",
)


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
    where = Where(source)
    expect(data, Mapping, where, "", "a table")
    unknown(data, _TOP_KEYS, where, "")
    data_dir = data.get("data_dir")
    if data_dir is not None:
        expect(data_dir, str, where, "data_dir", "a string")
    variables = _vars(data.get("vars", {}), where)
    actors = _durable_objects(data.get("durable_objects", {}), where)
    queues = queues_from_toml(data.get("queues", {}), where)
    entries = expect(data.get("webhooks", []), list, where, "webhooks", "an array of tables")
    webhooks = _webhooks(entries, where, "webhooks")
    routes = _routes(expect(data.get("routes", []), list, where, "routes", "an array of tables"), where)
    http = _http(data.get("http", {}), where)
    triggers = triggers_from_toml(data.get("triggers", {}), where)
    cluster = cluster_from_toml(data.get("cluster"), where, source)
    config = Config(source, data_dir, actors, queues, variables, webhooks, routes, http, triggers, cluster)
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
    triggers: list[Mapping[str, Any]] | None = None,
) -> Config:
    """``config`` plus the keyword arguments of ``open_runtime`` (which add to it)."""
    where = Where(config.source)
    merged_actors = dict(config.actors)
    for binding, cls in (actors or {}).items():
        merged_actors[binding] = import_class(cls, where, f"actors.{binding}")
    merged_queues = {**config.queues, **queues_from_code(queues or [], where)}
    add_dead_letter_queues(merged_queues)
    merged_vars = dict(config.vars)
    for name, value in (vars or {}).items():
        merged_vars[binding_name(name, where, "vars")] = expect(value, str, where, f"vars.{name}", "a string")
    result = Config(
        config.source,
        os.fspath(data_dir) if data_dir is not None else config.data_dir,
        merged_actors,
        merged_queues,
        merged_vars,
        {**config.webhooks, **_webhooks(webhooks or [], where, "webhooks")},
        config.routes,
        config.http,
        cron_triggers(
            expect(triggers or [], list, where, "triggers", "a list"), where, "triggers", config.triggers
        ),
        config.cluster,
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
    names a declared queue and var; the internal token names a var that is not empty; every
    cron trigger names an actor that has a ``scheduled`` handler."""
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
    check_triggers(config)


def _vars(table: Any, where: Where) -> dict[str, str]:
    expect(table, Mapping, where, "vars", "a table")
    out = {}
    for name, value in table.items():
        binding_name(name, where, "vars")
        out[name] = expect(value, str, where, f"vars.{name}", "a string")
    return out


def _durable_objects(table: Any, where: Where) -> dict[str, type]:
    expect(table, Mapping, where, "durable_objects", "a table")
    unknown(table, {"bindings"}, where, "durable_objects")
    entries = table.get("bindings", [])
    expect(entries, list, where, "durable_objects.bindings", "an array of tables")
    out: dict[str, type] = {}
    for i, entry in enumerate(entries):
        t = f"durable_objects.bindings[{i}]"
        expect(entry, Mapping, where, t, "a table")
        unknown(entry, {"name", "class_name", "script_name"}, where, t)
        name = binding_name(required(entry, "name", where, t), where, f"{t}.name")
        if name in out:
            raise where.error(t, f"key 'name': binding {name!r} is declared twice")
        out[name] = import_class(required(entry, "class_name", where, t), where, f"{t}.class_name")
    return out


def _http(table: Any, where: Where) -> HttpConfig:
    expect(table, Mapping, where, "http", "a table")
    unknown(table, {"internal_token"}, where, "http")
    token = table.get("internal_token")
    if token is not None:
        token = binding_name(token, where, "http.internal_token")
    return HttpConfig(internal_token=token)


def _webhooks(entries: list[Any], where: Where, table: str) -> dict[str, WebhookConfig]:
    out: dict[str, WebhookConfig] = {}
    for i, entry in enumerate(entries):
        t = f"{table}[{i}]"
        expect(entry, Mapping, where, t, "a table")
        unknown(entry, {"provider", "queue", "secret"}, where, t)
        provider = queue_name(required(entry, "provider", where, t), where, f"{t}.provider")
        queue = queue_name(required(entry, "queue", where, t), where, f"{t}.queue")
        secret = binding_name(required(entry, "secret", where, t), where, f"{t}.secret")
        out[provider] = WebhookConfig(provider, queue, secret)
    return out


def _routes(entries: list[Any], where: Where) -> list[RouteConfig]:
    out = []
    for i, entry in enumerate(entries):
        t = f"routes[{i}]"
        expect(entry, Mapping, where, t, "a table")
        unknown(entry, {"path", "binding", "name"}, where, t)
        path = expect(required(entry, "path", where, t), str, where, f"{t}.path", "a string")
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
        binding = binding_name(required(entry, "binding", where, t), where, f"{t}.binding")
        name = expect(required(entry, "name", where, t), str, where, f"{t}.name", "a string")
        out.append(RouteConfig(path, binding, name))
    return out
