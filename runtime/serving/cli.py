"""``roost serve``: load ``roost.toml``, open the runtime, serve it over HTTP (``http_server``);
with ``--workers N`` (N > 1), a supervisor of N worker processes instead (``supervisor``).

Logs go to stderr as text or JSON lines (``--log-format``), with every secret var redacted.

SIGINT or SIGTERM stops accepting connections, closes idle kept-alive ones, lets in-flight
requests finish, closes the runtime (every pending write committed) and exits 0; a second
signal exits at once, which loses nothing acknowledged, since every acknowledged write is
durable already.

Protected mode: on an address other than loopback, the internal routes (every actor method,
every queue operation) need ``[http] internal_token``, or ``--allow-open-internal-routes``
to say that something in front of Roost guards them.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from dataclasses import replace
from functools import partial

import trio

from ..config import Config, load_config, secret_values
from ..errors import ConfigError, DataDirectoryLockedError
from ..limits import DEFAULT_IDLE_TIMEOUT_SECONDS, DEFAULT_REQUEST_TIMEOUT_SECONDS
from ..observability.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from ..cluster.options import ClusterOptions, split_address
from ..system import Runtime, open_runtime
from .cluster_flags import add_cluster_flags
from .cluster_flags import cluster_options as build_cluster_options
from .collector import tune_for_serving
from .exits import EXIT_BAD_CONFIG, EXIT_SECOND_SIGNAL
from .http_server import open_listeners, serve_http
from .operator_cli import COMMANDS as OPERATOR_COMMANDS
from .operator_cli import add_commands as add_operator_commands
from .operator_cli import run as run_operator_command
from .supervisor import supervise

log = logging.getLogger("roost.serve")
# Below this an internal token draws a warning at start.
MIN_TOKEN_CHARACTERS = 16

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roost", description="Durable actors on trio and LMDB.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the actors of a roost.toml over HTTP")
    serve.add_argument("--config", default="roost.toml", help="the roost.toml to load (default: %(default)s)")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port, 0 for any free one (default: %(default)s)"
    )
    serve.add_argument("--data-dir", help="LMDB data directory (default: data_dir of the config)")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes, actors partitioned over them; 'auto' for one per core (default: %(default)s)",
    )
    serve.add_argument(
        "--allow-open-internal-routes",
        action="store_true",
        help="serve the internal routes without [http] internal_token on an address other than"
        " loopback (only behind something that guards them)",
    )
    serve.add_argument(
        "--log-format", choices=LOG_FORMATS, default="text", help="text or JSON lines (default: %(default)s)"
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="(default: %(default)s)")
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT_SECONDS,
        help="seconds an HTTP request may take before it is answered 504 (default: %(default)s)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_SECONDS,
        help="seconds an idle actor stays in memory before it is evicted (default: %(default)s)",
    )
    add_cluster_flags(serve)
    add_operator_commands(commands)
    args = parser.parse_args(argv)
    if args.command in OPERATOR_COMMANDS:
        return run_operator_command(args)
    for option in ("request_timeout", "idle_timeout"):
        if not getattr(args, option) > 0:
            flag = "--" + option.replace("_", "-")
            parser.error(f"{flag} must be a positive number of seconds, not {getattr(args, option)}")
    # Import paths in the config resolve from the current directory, as with `python -m`.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        config = load_config(args.config)
        _check_protected_mode(config, args.host, allow_open=args.allow_open_internal_routes)
        configure_logging(args.log_format, args.log_level, secrets=secret_values(config))
        log.info(
            "config %s loaded: %d actor bindings, %d queues, %d vars",
            config.source,
            len(config.actors),
            len(config.queues),
            len(config.vars),
            extra={"event": "config.loaded", "config": config.source},
        )
        _warn_of_a_short_token(config)
        cluster_options = build_cluster_options(parser, args, config.cluster)
        if cluster_options is not None:
            _check_open_channel(config, cluster_options, allow_open=args.allow_open_internal_routes)
        if args.workers > 1:
            if cluster_options is not None:
                parser.error("--cluster runs one process per node: leave out --workers")
            return trio.run(
                partial(
                    supervise,
                    config,
                    workers=args.workers,
                    host=args.host,
                    port=args.port,
                    data_dir=args.data_dir,
                    request_timeout=args.request_timeout,
                    idle_timeout=args.idle_timeout,
                    log_format=args.log_format,
                    log_level=args.log_level,
                )
            )
        tune_for_serving()
        trio.run(
            partial(
                serve_forever,
                config,
                host=args.host,
                port=args.port,
                data_dir=args.data_dir,
                request_timeout=args.request_timeout,
                idle_timeout=args.idle_timeout,
                cluster=cluster_options,
            )
        )
    except (ConfigError, DataDirectoryLockedError, BaseExceptionGroup) as exc:
        refused = _refused_start(exc)
        if refused is None:
            raise
        what = "bad configuration" if isinstance(refused, ConfigError) else "cannot serve"
        print(f"roost: {what}: {refused}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return 0


def _refused_start(exc: BaseException) -> BaseException | None:
    """The ConfigError or locked data directory that stopped the start, however deep the
    nurseries it came through nested it; None for anything else."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, (ConfigError, DataDirectoryLockedError)) else None


def _workers(text: str) -> int:
    if text == "auto":
        return len(os.sched_getaffinity(0))
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, or auto, not {text!r}")
    return count


def _warn_of_a_short_token(config: Config) -> None:
    """A short internal token can be guessed: nothing limits how often a client tries one."""
    name = config.http.internal_token
    if name is not None and len(config.vars[name]) < MIN_TOKEN_CHARACTERS:
        log.warning(
            "[http] internal_token: the value of %s has %d characters; use at least %d random ones"
            " (openssl rand -hex 16 gives 32)",
            name,
            len(config.vars[name]),
            MIN_TOKEN_CHARACTERS,
            extra={"event": "config.short_token"},
        )


def _check_protected_mode(config: Config, host: str, *, allow_open: bool) -> None:
    if config.http.internal_token is not None or allow_open or _is_loopback(host):
        return
    raise ConfigError(
        f"{config.source}: refusing to serve the internal routes (/actors, /rpc, /queues, /jobs,"
        f" /metrics) open on {host}: set [http] internal_token, or pass"
        " --allow-open-internal-routes if something in front of Roost guards them"
    )


def _check_open_channel(config: Config, options: ClusterOptions, *, allow_open: bool) -> None:
    """The channel between nodes runs any actor's methods: on an address other than loopback
    it needs the internal token (as the internal routes do) or mutual TLS."""
    host = split_address(options.listen or options.advertise)[0]
    guarded = config.http.internal_token is not None or options.tls is not None
    if guarded or allow_open or _is_loopback(host):
        return
    raise ConfigError(
        f"{config.source}: refusing to open the cluster's channel between nodes on {host} without"
        " [http] internal_token (the nodes prove it to each other) or --cluster-tls-cert/-key/-ca;"
        " pass --allow-open-internal-routes if the network between the nodes is guarded"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


async def serve_forever(
    config: Config,
    *,
    host: str,
    port: int,
    data_dir: str | None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
    cluster: ClusterOptions | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly; with ``cluster``, as that
    cluster's node.

    The port and the runtime open outside the signal watcher's nursery, so what they refuse
    at start (a port in use, a held data directory, a bad config) arrives as itself. A signal
    during start is handled once serving begins; a second one exits at once while requests
    drain.
    """
    shutdown = trio.Event()
    listeners = await open_listeners(f"{host}:{port}")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with _open(config, data_dir, request_timeout, idle_timeout, cluster) as rt:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_signals, signals, shutdown)
                async with trio.open_nursery() as server:
                    binds = await server.start(partial(serve_http, rt.asgi_app, listeners, shutdown=shutdown))
                    log.info(
                        "serving on %s (config %s, data dir %s)",
                        " ".join(binds),
                        config.source,
                        rt.data_dir,
                        extra={"event": "serve.started", "binds": binds, "data_dir": rt.data_dir},
                    )
                log.info("stopped accepting; closing the runtime", extra={"event": "shutdown.draining"})
                nursery.cancel_scope.cancel()
        log.info("runtime closed; every acknowledged write is on disk", extra={"event": "shutdown.done"})


def _open(
    config: Config, data_dir: str | None, request_timeout: float, idle_timeout: float, cluster: ClusterOptions | None
) -> AsyncContextManager[Runtime]:
    if cluster is None:
        return open_runtime(config, data_dir=data_dir, request_timeout=request_timeout, idle_timeout=idle_timeout)
    from ..cluster.node import open_cluster_runtime  # imports nats-py: only for a cluster

    if data_dir is not None:
        config = replace(config, data_dir=data_dir)
    return open_cluster_runtime(config, cluster, request_timeout=request_timeout, idle_timeout=idle_timeout)


async def _watch_signals(signals: trio.abc.ReceiveChannel[int], shutdown: trio.Event) -> None:
    async for signum in signals:
        if shutdown.is_set():
            log.warning(
                "second %s: exiting now", signal.Signals(signum).name, extra={"event": "shutdown.forced"}
            )
            os._exit(EXIT_SECOND_SIGNAL)
        log.info(
            "%s: shutting down (a second signal exits at once)",
            signal.Signals(signum).name,
            extra={"event": "shutdown.started", "signal": signal.Signals(signum).name},
        )
        shutdown.set()


if __name__ == "__main__":
    sys.exit(main())
