"""What a request says of its browser when a reverse proxy on this device passed it on.

Behind a proxy that terminates TLS (`docs/web.md`: Caddy or nginx in front of
`host = "127.0.0.1"`), the server sees plain HTTP from a loopback address: the page's origin is
`https://...` while the request's scheme is `http` (every login and WebSocket failed the origin
check), and every browser has the proxy's address (one login limit for all of them). The proxy
says both in `X-Forwarded-Proto` and `X-Forwarded-For`; they are believed only from a loopback
peer, which a machine on the LAN cannot be.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web


def _from_local_proxy(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:  # a Unix socket, or no peer
        return False


def scheme(request: web.Request) -> str:
    """The scheme the browser used: the proxy's `X-Forwarded-Proto`, else the connection's."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https") and _from_local_proxy(request):
        return forwarded
    return request.scheme


def client(request: web.Request) -> str:
    """The browser's address: the last `X-Forwarded-For` entry (the one the proxy itself saw),
    else the connection's peer."""
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    if forwarded and _from_local_proxy(request):
        return forwarded
    return request.remote or "?"
