"""``roost.toml`` and its in-code equivalent, checked and normalised into ``Config``.

Trio-free. Every mistake raises ``ConfigError`` naming the source, the table and the key,
before anything starts. Classes may be given as import paths (``"module:Class"``) or, in
code, as the classes themselves; both are resolved here. ``model`` holds the values,
``parse`` the whole config, ``queues`` the queue tables, ``triggers`` the cron trigger
tables and ``cron`` their expressions, ``cluster`` the ``[cluster]`` table, ``checks`` the
single values.
"""

from .model import Config, CronTrigger, HttpConfig, QueueConfig, RouteConfig, WebhookConfig
from .parse import check_bindings, load_config, merge, parse_config, secret_values

__all__ = [
    "Config",
    "CronTrigger",
    "HttpConfig",
    "QueueConfig",
    "RouteConfig",
    "WebhookConfig",
    "check_bindings",
    "load_config",
    "merge",
    "parse_config",
    "secret_values",
]
