"""Mutual TLS on the channel between nodes (``--cluster-tls-cert``, ``-key``, ``-ca``).

Every node presents its certificate and accepts only peers whose certificate the cluster's
CA signed: the listening side requires a client certificate, the calling side checks the
server's against the address it dialled (the peer's ``--advertise`` host, which the
certificate must name as a DNS name or an IP address). TLS 1.2 at least.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass

import trio

from ..errors import ConfigError

log = logging.getLogger("roost.cluster")

# A node that cannot reach a peer retries every few milliseconds: say why once in a while.
FAILURE_LOG_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ChannelTls:
    cert: str  # this node's certificate chain (PEM)
    key: str  # its private key (PEM)
    ca: str  # the CA certificates that sign the nodes' certificates (PEM)

    def server_context(self) -> ssl.SSLContext:
        context = self._context(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        return self._context(ssl.Purpose.SERVER_AUTH)  # verifies the server and its name

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(purpose, cafile=self.ca)
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"the channel's TLS files (--cluster-tls-cert {self.cert}, --cluster-tls-key {self.key},"
                f" --cluster-tls-ca {self.ca}) cannot be used: {exc}"
            ) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


class TlsListener(trio.abc.Listener[trio.SSLStream[trio.SocketStream]]):
    """Accepts TCP connections as TLS streams; the handshake runs with the first read, in
    the connection's own task (a slow client does not hold up ``accept``)."""

    def __init__(self, inner: trio.SocketListener, context: ssl.SSLContext) -> None:
        self._inner = inner
        self._context = context

    async def accept(self) -> trio.SSLStream[trio.SocketStream]:
        stream = await self._inner.accept()
        return trio.SSLStream(stream, self._context, server_side=True, https_compatible=False)

    async def aclose(self) -> None:
        await self._inner.aclose()


class TlsDialer:
    """Opens TLS connections to peers, handshake included; a failure is an ``OSError``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._logged: dict[str, float] = {}

    async def open(self, host: str, port: int) -> trio.SSLStream[trio.SocketStream]:
        stream = await trio.open_tcp_stream(host, port)
        secured = trio.SSLStream(stream, self._context, server_hostname=host, https_compatible=False)
        try:
            await secured.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(stream)
            why = f"the TLS handshake with {host}:{port} failed: {exc.__cause__ or exc}"
            self._log(f"{host}:{port}", why)
            raise OSError(why) from None
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return secured

    def _log(self, where: str, why: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(where, -FAILURE_LOG_SECONDS) >= FAILURE_LOG_SECONDS:
            self._logged[where] = now
            log.warning("%s", why, extra={"event": "cluster.tls_failed"})
