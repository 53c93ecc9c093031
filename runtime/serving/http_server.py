"""The hypercorn settings every ``roost serve`` process serves HTTP with."""

from __future__ import annotations

import logging

from hypercorn.config import Config as HypercornConfig

GRACEFUL_TIMEOUT_SECONDS = 30.0


def hypercorn_settings(bind: str) -> HypercornConfig:
    """Serve on ``bind`` (``host:port``, or ``fd://N`` for an inherited listening socket);
    on shutdown, in-flight requests get ``GRACEFUL_TIMEOUT_SECONDS`` to finish."""
    settings = HypercornConfig()
    settings.bind = [bind]
    settings.graceful_timeout = GRACEFUL_TIMEOUT_SECONDS
    settings.accesslog = None
    settings.errorlog = logging.getLogger("hypercorn.error")
    return settings
