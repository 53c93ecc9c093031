"""OpenTelemetry spans (the ``roost[otel]`` extra), captured with the SDK's in-memory exporter.

Skipped only when the extra is absent; ``make test`` installs it. The tracer provider is
process-wide and can be set once, so this module sets it (or adds its exporter to the one
set already) and detaches its exporter afterwards.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import trio

from runtime import Actor, AlarmInfo, open_runtime
from runtime import now as runtime_now

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture
def spans():
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


class Shop(Actor):
    async def order(self, order_id: str) -> None:
        await self.env.PAYMENTS.send({"order": order_id})
        await self.storage.set_alarm(0)

    async def alarm(self, info: AlarmInfo) -> None:
        pass


class Payments(Actor):
    async def queue(self, batch) -> None:
        if batch.messages[0].attempts == 1:
            raise RuntimeError("first attempt fails")


QUEUES = [
    {
        "queue": "payments",
        "binding": "PAYMENTS",
        "consumer": Payments,
        "max_batch_timeout": 0,
        "retry_delay": 5,
        "dead_letter_queue": "dlq",
    }
]


async def test_spans_follow_a_request_through_rpc_queue_send_retries_and_alarm(
    spans, data_dir, autojump_clock
):
    async with open_runtime(data_dir=data_dir, actors={"SHOP": Shop}, queues=QUEUES) as rt:
        assert rt.tracing.enabled
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            response = await http.post(
                "/rpc/SHOP/front/order", json={"args": ["o-1"]}, headers={"traceparent": TRACEPARENT}
            )
            assert response.status_code == 200 and response.headers["x-request-id"] == TRACE_ID
        await trio.sleep(30)
    finished = spans.get_finished_spans()
    by_name: dict[str, list] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)

    [http_span] = by_name["HTTP POST /rpc/<binding>/<name>/<method>"]
    assert format(http_span.context.trace_id, "032x") == TRACE_ID  # continues the caller's trace
    assert http_span.kind == trace.SpanKind.SERVER
    [rpc] = by_name["rpc SHOP.order"]
    [send] = by_name["queue send payments"]
    assert rpc.parent.span_id == http_span.context.span_id and send.parent.span_id == rpc.context.span_id
    assert send.kind == trace.SpanKind.PRODUCER

    deliveries = by_name["queue deliver payments"]
    consumes = by_name["queue consume payments"]
    assert len(deliveries) == 2 and len(consumes) == 2  # the failed attempt and its retry
    for delivery, consume in zip(deliveries, consumes, strict=True):
        # Each delivery is linked to the send of its message, across the retry.
        assert [link.context.span_id for link in delivery.links] == [send.context.span_id]
        assert consume.parent.span_id == delivery.context.span_id
    assert not consumes[0].status.is_ok and consumes[1].status.is_unset

    [alarm] = by_name["alarm SHOP"]
    # The alarm runs in a trace of its own, linked to the call that set it.
    assert [link.context.span_id for link in alarm.links] == [rpc.context.span_id]
    for span in (http_span, rpc, send, *deliveries, *consumes, alarm):
        assert span.attributes["roost.correlation_id"] == TRACE_ID


class Reminder(Actor):
    async def remind_later(self) -> None:
        await self.storage.set_alarm(runtime_now() + 60)

    async def alarm(self, info: AlarmInfo) -> None:
        pass


async def test_an_alarm_stays_linked_to_the_span_that_set_it_across_a_restart(
    spans, data_dir, autojump_clock
):
    async with open_runtime(data_dir=data_dir, actors={"R": Reminder}) as rt:
        await rt.namespace("R").get_by_name("r").remind_later()
    async with open_runtime(data_dir=data_dir, actors={"R": Reminder}):
        await trio.sleep(120)
    finished = spans.get_finished_spans()
    [call] = [span for span in finished if span.name == "rpc R.remind_later"]
    [alarm] = [span for span in finished if span.name == "alarm R"]
    assert [link.context.span_id for link in alarm.links] == [call.context.span_id]


async def test_a_pull_is_linked_to_the_sends_of_the_messages_it_leased(spans, data_dir):
    queues = [{"queue": "inbox"}]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        queue = rt.queue("inbox")
        await queue.send({"n": 1})
        await queue.send({"n": 2})
        pulled = await queue.pull(batch_size=10)
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://q.test") as http:
            await queue.send({"n": 3})
            wire = (await http.post("/queues/inbox/messages/pull", json={})).json()["messages"]
    assert [m.body for m in pulled] == [{"n": 1}, {"n": 2}] and [m["body"] for m in wire] == [{"n": 3}]
    assert "traceparent" not in wire[0]
    finished = spans.get_finished_spans()
    sends = [span.context.span_id for span in finished if span.name == "queue send inbox"]
    receives = [span for span in finished if span.name == "queue receive inbox"]
    assert [[link.context.span_id for link in span.links] for span in receives] == [sends[:2], sends[2:]]
    assert all(span.kind == trace.SpanKind.CONSUMER for span in receives)


class Flaky(Actor):
    async def ok(self) -> int:
        return 1

    async def boom(self) -> None:
        raise RuntimeError("boom")


async def test_http_spans_carry_the_status_and_only_a_5xx_is_an_error(spans, data_dir):
    async with open_runtime(data_dir=data_dir, actors={"F": Flaky}) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://flaky.test") as http:
            statuses = [
                (await http.post(f"/rpc/F/a/{method}", json={"args": []})).status_code
                for method in ("ok", "nope", "boom")
            ]
            too_large = await http.post("/rpc/F/a/ok", content=b"x" * (2 * 1024 * 1024))
            statuses.append(too_large.status_code)
    assert statuses == [200, 404, 500, 413]
    http_spans = [span for span in spans.get_finished_spans() if span.kind == trace.SpanKind.SERVER]
    assert [span.attributes["http.response.status_code"] for span in http_spans] == statuses
    assert [span.status.status_code for span in http_spans] == [
        trace.StatusCode.UNSET,
        trace.StatusCode.UNSET,
        trace.StatusCode.ERROR,
        trace.StatusCode.UNSET,
    ]


WITHOUT_OTEL = """
import sys, tempfile, trio
sys.modules["opentelemetry"] = None  # as if the extra were not installed: importing it fails
from runtime import Actor, open_runtime

class Echo(Actor):
    async def echo(self, x):
        return x

async def main():
    with tempfile.TemporaryDirectory() as data_dir:
        async with open_runtime(data_dir=data_dir, actors={"E": Echo}) as rt:
            assert not rt.tracing.enabled
            assert await rt.namespace("E").get_by_name("a").echo(5) == 5
    assert not any(name.startswith("opentelemetry") for name in sys.modules if sys.modules[name])
    print("ok")

trio.run(main)
"""


def test_without_the_extra_nothing_is_imported_and_everything_works():
    done = subprocess.run([sys.executable, "-c", WITHOUT_OTEL], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
