"""What clients of the page may hold in the runtime's process: open connections, and time
without a request.

The page is served from the cameras' own process, where every connection is a file descriptor
beside the segments, events files and camera streams (1024 by default under systemd). Without
these bounds a machine on the LAN that opened a thousand connections and sent nothing kept them
an hour each (aiohttp's default) and left the recorder unable to open its next segment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

MAX_CONNECTIONS = 256  # beyond this a new connection is answered 503 and closed
# A connection with no request in progress is closed after this: idle keep-alive, and one that
# never completes a request (aiohttp's keep-alive timer runs from the connection's start).
IDLE_S = 15.0
HANDSHAKE_S = 10.0  # a TLS handshake not done by then is dropped
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _Busy(asyncio.Protocol):
    """A connection beyond `MAX_CONNECTIONS`: told so and closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(BUSY)
        transport.close()


def bounded(server: web.Server) -> Callable[[], asyncio.BaseProtocol]:
    """The protocol factory for `loop.create_server`: aiohttp's `server`, or `_Busy` while it
    holds `MAX_CONNECTIONS` (a burst accepted in one go may pass it by the listen backlog)."""

    def factory() -> asyncio.BaseProtocol:
        if len(server.connections) >= MAX_CONNECTIONS:
            return _Busy()
        return server()

    return factory
