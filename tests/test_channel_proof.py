"""The channel a cluster's nodes call each other on (``runtime.placement.server``): with the
internal token set, a connection must first prove it, or it is closed unanswered; a
malformed message closes its connection and nothing else. No NATS here: the channel alone,
in process, on a loopback TCP port."""

from __future__ import annotations

import struct
from functools import partial

import trio

from runtime import Actor, open_runtime
from runtime.placement import frames
from runtime.placement.server import answer_calls

PROOF = b"p" * 32


class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n


async def _first_answer(stream: trio.SocketStream) -> object:
    """The first message the channel answers, or None if it closed the connection."""
    with trio.fail_after(5):
        async for message in frames.messages(stream):
            return message
    return None


async def _open_channel(nursery: trio.Nursery, rt, proof: bytes | None) -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await nursery.start(partial(answer_calls, listeners, rt._host, rt.statistics, proof=proof))
    return port


async def test_a_connection_that_does_not_prove_the_token_is_closed_unanswered(tmp_path):
    async with open_runtime(data_dir=tmp_path, actors={"COUNTERS": Counter}) as rt:
        async with trio.open_nursery() as nursery:
            port = await _open_channel(nursery, rt, PROOF)
            for first in ([0, "hello", b"wrong" * 6], [1, "statistics"]):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(frames.frame(first) + frames.frame([2, "statistics"]))
                assert await _first_answer(stream) is None
                await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_a_connection_that_proves_the_token_is_answered(tmp_path):
    async with open_runtime(data_dir=tmp_path, actors={"COUNTERS": Counter}) as rt:
        async with trio.open_nursery() as nursery:
            port = await _open_channel(nursery, rt, PROOF)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(frames.frame([0, "hello", PROOF]) + frames.frame([7, "statistics"]))
            call_id, ok, value = await _first_answer(stream)
            assert (call_id, ok) == (7, True) and "live_actors" in value
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_a_malformed_message_closes_only_its_connection(tmp_path):
    async with open_runtime(data_dir=tmp_path, actors={"COUNTERS": Counter}) as rt:
        async with trio.open_nursery() as nursery:
            port = await _open_channel(nursery, rt, None)
            for garbage in (frames.frame(42), frames.frame(["only"]), struct.pack(">I", 3) + b"\xc1\xc1\xc1"):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(garbage)
                assert await _first_answer(stream) is None
                await stream.aclose()
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(frames.frame([1, "statistics"]))
            call_id, ok, _ = await _first_answer(stream)
            assert (call_id, ok) == (1, True)
            await stream.aclose()
            nursery.cancel_scope.cancel()
