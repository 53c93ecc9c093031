"""OpenTelemetry spans, when the ``roost[otel]`` extra is installed and a tracer provider is set.

Without the ``opentelemetry`` packages nothing here imports them and every span is a shared
``nullcontext``. With them, a runtime makes spans when the application set a tracer
provider (``opentelemetry.trace.set_tracer_provider``) before opening it; an untraced
runtime pays one attribute check per event. Spans nest through OpenTelemetry's context, which follows trio tasks like
the correlation id does; each carries the correlation id as ``roost.correlation_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .correlation import current_correlation_id

try:
    from opentelemetry import context as _context
    from opentelemetry import trace as _trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the extra is not installed: tracing stays off
    _trace = None

TRACER_NAME = "roost"
CORRELATION_ATTRIBUTE = "roost.correlation_id"
_NO_SPAN: AbstractContextManager[None] = nullcontext()


def provider_is_set() -> bool:
    """True when OpenTelemetry is installed and the application has set a tracer provider."""
    return _trace is not None and not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)


class Tracing:
    """The spans of one runtime: on when a tracer provider was set before it opened
    (``provider_is_set()`` costs about a microsecond, too much to ask on every event)."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def span(
        self,
        name: str,
        *,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
        parent: str | None = None,
        links: Iterable[str | None] = (),
    ) -> AbstractContextManager[Any]:
        """A span made current for the block (a no-op when tracing is off). ``parent`` is a W3C
        traceparent to continue (an incoming request's); ``links`` are traceparents of related
        spans (the sends of the messages a batch delivers)."""
        if not self.enabled:
            return _NO_SPAN
        assert _trace is not None
        attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
        correlation_id = current_correlation_id.get()
        if correlation_id is not None:
            attrs[CORRELATION_ATTRIBUTE] = correlation_id
        span_links = [_trace.Link(c) for c in (_span_context(tp) for tp in links if tp) if c is not None]
        return _trace.get_tracer(TRACER_NAME).start_as_current_span(
            name,
            context=_extract(parent) if parent else None,
            kind=getattr(_trace.SpanKind, kind.upper()),
            attributes=attrs,
            links=span_links,
        )

    def record_http_status(self, span: Any, status: int) -> None:
        """Put a response's status on its server span: an error only for 5xx (a 4xx is the
        client's mistake, not the server's, in OpenTelemetry's HTTP conventions)."""
        if span is None:
            return
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            assert _trace is not None
            span.set_status(_trace.Status(_trace.StatusCode.ERROR, f"HTTP {status}"))

    def current_traceparent(self) -> str | None:
        """The W3C traceparent of the current span, to store with what it causes later (a
        queue message); None when tracing is off or no span is recording."""
        return active_traceparent() if self.enabled else None


def active_traceparent() -> str | None:
    """The W3C traceparent of the span recording in this context, or None (no span, or
    OpenTelemetry not installed). For code that has no ``Tracing`` at hand: a span records
    only when a runtime's tracing is on."""
    if _trace is None or not _trace.get_current_span().is_recording():
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def open_tracing() -> Tracing:
    """The ``Tracing`` of a runtime opening now."""
    return Tracing(provider_is_set())


def _extract(traceparent: str) -> Any:
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent}, context=_context.Context())


def _span_context(traceparent: str) -> Any:
    assert _trace is not None
    found = _trace.get_current_span(_extract(traceparent)).get_span_context()
    return found if found.is_valid else None
