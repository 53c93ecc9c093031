"""A no-op ASGI app on one HTTP server, in a process of its own: what the server alone costs.

``python -m benchmarks.noop_server roost|hypercorn PORT`` answers every request 200 with a
two-byte body after reading its body, on Roost's HTTP server (``runtime.serving.http_server``)
or on hypercorn (as ``roost serve`` ran before it had its own), until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import trio

SERVERS = ("roost", "hypercorn")


async def noop_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body", False):
        pass
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def serve(server: str, port: int) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_sigterm, shutdown)
        if server == "roost":
            from runtime.serving.http_server import open_listeners, serve_http

            await serve_http(noop_app, await open_listeners(f"127.0.0.1:{port}"), shutdown=shutdown)
        else:
            from hypercorn.config import Config
            from hypercorn.trio import serve as hypercorn_serve

            settings = Config()
            settings.bind = [f"127.0.0.1:{port}"]
            settings.accesslog = None
            await hypercorn_serve(noop_app, settings, shutdown_trigger=shutdown.wait)
        nursery.cancel_scope.cancel()


async def _stop_on_sigterm(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            shutdown.set()


if __name__ == "__main__":
    name, port_text = sys.argv[1:3]
    if name not in SERVERS:
        sys.exit(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    trio.run(serve, name, int(port_text))
