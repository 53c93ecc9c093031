"""The benchmarks' HTTP load generator against a peer that resets and refuses connections: it
counts them as errors, reconnects, and never crashes the run."""

from __future__ import annotations

import socket
import struct

import trio

from benchmarks.http_load import _Load

RESET_EVERY = 3  # of the requests the peer receives, every third is answered with a reset


async def _resetting_peer(listener: trio.SocketListener) -> None:
    served = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal served
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(4096)
                    if not data:
                        return
                    buffer += data
                _, _, buffer = buffer.partition(b"\r\n\r\n")
                served += 1
                if served % RESET_EVERY == 0:
                    # SO_LINGER 0: the close sends RST, as a peer that drops connections does.
                    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    await trio.serve_listeners(handle, [listener])


async def test_resets_are_counted_in_doubt_and_the_load_goes_on():
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_resetting_peer, listener)
        load = _Load(port, actors=4, seconds=10.0, max_requests=300)
        await load.run(8)
        nursery.cancel_scope.cancel()
    answered = load.statuses.get(200, 0)
    doubtful = sum(load.in_doubt.values())
    assert load.connection_errors >= doubtful > 0
    assert answered > 0 and answered + doubtful == 300
    # The honest check: applied increments lie between the answered ones and those plus the
    # ones in doubt.
    assert load.check_counted(answered) is None
    assert load.check_counted(answered + doubtful) is None
    assert "answered 200" in load.check_counted(answered - 1)
    assert "cut off by a broken connection" in load.check_counted(answered + doubtful + 1)


async def test_a_refused_connection_is_an_error_not_a_crash():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    load = _Load(port, actors=1, seconds=0.2, max_requests=100)
    await load.run(2)
    assert load.connection_errors > 0
    assert load.statuses == {} and load.in_doubt == {}
