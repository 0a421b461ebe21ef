"""The web page's server: aiohttp on its own event loop in a daemon thread beside the pipeline.

Every page and API answers only to a logged-in session, except `/login` and `/healthz`;
requests that change state (login, logout) must come from the page's own origin. Work a request
needs (a password check, the events index, a remux) runs on a pool of two threads, so the
requests of many clients never take more than two cores' worth from the pipeline. Files are
found by validated names in the cameras' own output folders (`edge.web.recordings`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import html
import logging
import sqlite3
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from edge.config import OutputConfig, WebConfig
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.service.health import Health
from edge.service.metrics_http import healthz
from edge.service.side_outputs import SideOutputs
from edge.utc import parse_time
from edge.web import auth, health, limits, proxy
from edge.web.events import EventIndex, Query
from edge.web.live import MAX_VIEWERS, LiveFeed
from edge.web.recordings import CameraFiles, Media, TooLong, clip_at, day_of

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PUBLIC = {"/login", "/healthz", "/static/app.css"}  # the login page's style
WORKERS = 2
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
}
T = TypeVar("T")


@dataclass
class Device:
    """What the page shows: the cameras' folders, metrics (the device's under ""), health,
    live feeds, retention bounds, and each model's backend and precision."""

    cameras: dict[str, CameraFiles]
    metrics: Mapping[str, Metrics]
    health: Health
    output: OutputConfig
    models: Sequence[Mapping[str, str]] = ()
    feeds: Mapping[str, LiveFeed] = field(default_factory=dict)


class Site:
    """The routes and their state (sessions, login limiter, events index, media cache)."""

    def __init__(self, config: WebConfig, device: Device) -> None:
        self.config, self.device = config, device
        self.password_file = Path(config.password_file)
        auth.read_password(self.password_file)  # none set: the page cannot start
        state = Path(config.state_dir)
        self.index = EventIndex(state / "events.sqlite")
        self.media = Media(state / "cache")
        self.media.folder.mkdir(parents=True, exist_ok=True)
        self.sessions = auth.Sessions(config.session_h * 3600, self.password_file)
        self.limiter = auth.LoginLimiter()
        self.pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="web")
        self.sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/login", self.login_page),
                web.post("/login", self.login),
                web.post("/logout", self.logout),
                web.get("/", self.index_page),
                web.get("/static/{name}", self.static),
                web.get("/api/cameras", self.cameras),
                web.get("/api/health", self.health),
                web.get("/api/events", self.events),
                web.get("/api/clip/{camera}", self.clip),
                web.get("/api/recordings/{camera}", self.recordings),
                web.get("/api/export/{camera}", self.export),
                web.get("/api/segments/{camera}/{name}", self.segment),
                web.get("/api/snapshots/{camera}/{name}", self.snapshot),
                web.get("/api/live/{camera}", self.live),
            ]
        )
        app.on_response_prepare.append(self._headers)
        app.on_shutdown.append(self._close_sockets)
        return app

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, work)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # CSRF: a request that changes state, or opens a WebSocket, must come from this page.
        origin = request.headers.get("Origin") or request.headers.get("Referer")
        changes = request.method not in ("GET", "HEAD")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        scheme = proxy.scheme(request)
        if (changes or upgrade) and not auth.same_origin(origin, request.host, scheme):
            raise web.HTTPForbidden(text="refused: a request from another site\n")
        if request.path in PUBLIC or self.sessions.valid(request.cookies.get(auth.COOKIE)):
            response: web.StreamResponse = await handler(request)
            return response
        if request.path.startswith("/api/"):
            raise web.HTTPUnauthorized(text="log in first: /login\n")
        raise web.HTTPSeeOther("/login")

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)

    async def _close_sockets(self, app: web.Application) -> None:
        for socket in list(self.sockets):
            await socket.close()

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness, as the metrics endpoint's `/healthz` says it."""
        healthy, body = healthz(self.device.health)
        return web.Response(text=body, status=200 if healthy else 503)

    async def login_page(self, request: web.Request) -> web.Response:
        """The login form."""
        return _login_form("")

    async def login(self, request: web.Request) -> web.Response:
        """Check the password: a session cookie on success; the form again with 401 (wrong
        password), 429 (too many failures from this address, or from all together) or 503 (no
        password file) otherwise."""
        client = proxy.client(request)
        wait = self.limiter.begin(client)
        if wait > 0:
            message = f"Too many failed logins: try again in {wait:.0f} s."
            return _login_form(message, 429, {"Retry-After": str(int(wait) + 1)})
        form = await request.post()
        password = str(form.get("password", ""))
        try:
            stored = await self._run(lambda: auth.read_password(self.password_file))
        except EdgeError as exc:  # removed or damaged since the start: say so, not a 500
            self.limiter.succeeded(client)
            log.warning("web: login refused: %s", exc)
            return _login_form(f"No login possible: {exc}", 503)
        if not await self._run(lambda: auth.verify_password(stored, password)):
            log.warning("web: failed login from %s", client)
            return _login_form("Wrong password.", 401)
        self.limiter.succeeded(client)
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            auth.COOKIE,
            self.sessions.new(),
            httponly=True,
            samesite="Strict",
            secure=proxy.scheme(request) == "https",
            path="/",
        )
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        """End the session."""
        self.sessions.end(request.cookies.get(auth.COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(auth.COOKIE, path="/")
        raise response

    async def index_page(self, request: web.Request) -> web.FileResponse:
        """The page (live, events, recordings, health)."""
        return web.FileResponse(STATIC / "index.html")

    async def static(self, request: web.Request) -> web.FileResponse:
        """The page's script and style sheet."""
        name = request.match_info["name"]
        if name not in ("app.js", "app.css"):
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name)

    def _camera(self, request: web.Request) -> CameraFiles:
        camera = self.device.cameras.get(request.match_info["camera"])
        if camera is None:
            raise web.HTTPNotFound(text="no such camera\n")
        return camera

    async def cameras(self, request: web.Request) -> web.Response:
        """The cameras' names."""
        return web.json_response(sorted(self.device.cameras))

    async def health(self, request: web.Request) -> web.Response:
        """The health panel's numbers (`edge.web.health`)."""
        device = self.device
        cameras = list(device.cameras.values())
        report = functools.partial(
            health.report, device.metrics, device.health, cameras, device.output, device.models
        )
        return web.json_response(await self._run(report))

    async def events(self, request: web.Request) -> web.Response:
        """Events, newest first: `camera`, `class`, `kind` (default `started`), `since`, `until`
        (times as `edge recordings` takes them), `limit`."""
        args = request.query
        try:
            query = Query(
                camera=args.get("camera") or None,
                kind=args.get("kind", "started") or None,
                cls=args.get("class") or None,
                since=parse_time(args["since"]) if args.get("since") else None,
                until=parse_time(args["until"]) if args.get("until") else None,
                limit=int(args.get("limit", "100")),
            )
        except (EdgeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from exc
        return web.json_response(await self._run(lambda: self._events(query)))

    def _events(self, query: Query) -> dict[str, Any]:
        cameras = self.device.cameras.values()
        self.index.update(path for camera in cameras for path in camera.events_files())
        found = self.index.query(query)
        snapshots = {camera.name: camera.track_snapshots() for camera in cameras}
        for event in found:
            key = (str(event.get("run")), event.get("track_id"))
            name = snapshots.get(str(event.get("camera")), {}).get(key)  # type: ignore[arg-type]
            event["snapshot"] = f"/api/snapshots/{event['camera']}/{name}" if name else None
        return {"events": found, "classes": self.index.classes()}

    async def clip(self, request: web.Request) -> web.Response:
        """The segment to play for moment `t` (UTC), and the offset in it."""
        camera = self._camera(request)
        try:
            moment = parse_time(request.query.get("t", ""))
        except EdgeError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from exc
        found = await self._run(lambda: clip_at(camera.segments(), moment))
        if found is None:
            raise web.HTTPNotFound(text="no recording of that moment\n")
        segment, offset = found
        url = f"/api/segments/{camera.name}/{segment.path.name}?v={segment.size}"
        return web.json_response({"url": url, "offset": offset, "start": segment.start})

    async def recordings(self, request: web.Request) -> web.Response:
        """The camera's recording days, and the segments of `day` (default: the latest)."""
        camera = self._camera(request)
        segments = await self._run(camera.segments)
        days = sorted({day_of(s.start) for s in segments})
        day = request.query.get("day") or (days[-1] if days else "")
        listed = [
            {"name": s.path.name, "start": s.start, "end": s.end, "size": s.size}
            for s in segments
            if day_of(s.start) == day
        ]
        return web.json_response({"days": days, "day": day, "segments": listed})

    async def export(self, request: web.Request) -> web.FileResponse:
        """The camera's recording from `start` to `end` as one MP4 (`download=1`: a file to
        save); 400 for a range longer than the page exports."""
        camera = self._camera(request)
        try:
            start, end = (parse_time(request.query.get(k, "")) for k in ("start", "end"))
            path = await self._run(lambda: self.media.export(camera, start, end))
        except TooLong as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from exc
        except EdgeError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from exc
        return self._file(path, request.query.get("download") == "1")

    async def segment(self, request: web.Request) -> web.FileResponse:
        """A segment as MP4 (remuxed, not re-encoded; byte ranges served); `v`: its size when
        listed, so that every request of one URL gets one copy of a segment still growing."""
        camera = self._camera(request)
        name = request.match_info["name"]
        try:
            size = int(request.query["v"]) if "v" in request.query else None
        except ValueError as exc:
            raise web.HTTPBadRequest(text="v: a segment's size in bytes\n") from exc
        found = await self._run(lambda: camera.segment(name))
        if found is None or (size is not None and not 0 <= size <= found.size):
            raise web.HTTPNotFound(text="no such segment\n")
        try:
            path = await self._run(lambda: self.media.segment(found, size))
        except EdgeError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from exc
        return self._file(path, request.query.get("download") == "1")

    @staticmethod
    def _file(path: Path, download: bool) -> web.FileResponse:
        headers = {"Content-Disposition": f'attachment; filename="{path.name}"'} if download else {}
        return web.FileResponse(path, headers=headers)

    async def snapshot(self, request: web.Request) -> web.FileResponse:
        """A track's snapshot (JPEG)."""
        camera = self._camera(request)
        path = camera.snapshot(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(text="no such snapshot\n")
        return web.FileResponse(path)

    async def live(self, request: web.Request) -> web.WebSocketResponse:
        """The camera's live JPEG stream over a WebSocket (`edge.web.live`)."""
        camera = self._camera(request)
        feed = self.device.feeds.get(camera.name)
        if feed is None or feed.viewers >= MAX_VIEWERS:
            raise web.HTTPServiceUnavailable(text="no live view of this camera now\n")
        socket = web.WebSocketResponse(heartbeat=30)
        await socket.prepare(request)
        self.sockets.add(socket)
        feed.viewers += 1
        token = request.cookies.get(auth.COOKIE)
        sender = asyncio.create_task(_send_frames(feed, socket, lambda: self.sessions.valid(token)))
        try:
            async for message in socket:  # the page sends nothing; this notices the close
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            feed.viewers -= 1
            sender.cancel()
        return socket


def _login_form(
    message: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """The login page, with `message` (plain text) above the form."""
    page = (STATIC / "login.html").read_text().replace("<!--message-->", html.escape(message))
    return web.Response(text=page, status=status, content_type="text/html", headers=headers)


async def _send_frames(
    feed: LiveFeed, socket: web.WebSocketResponse, logged_in: Callable[[], bool]
) -> None:
    """Send each newest frame once the previous send is done (a slow client skips frames), while
    the session that opened the socket lasts (logged out, expired or ended by a new password:
    the socket is closed)."""
    seq = 0
    while not socket.closed:
        frame = await feed.next(seq)
        seq = frame.seq
        if not logged_in():
            await socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"logged out")
            return
        try:
            await socket.send_bytes(frame.message())
        except (ConnectionError, RuntimeError):
            return


class WebServer:
    """Serves the page from a daemon thread until `close()`."""

    def __init__(self, config: WebConfig, device: Device) -> None:
        """Check the password file and TLS files, bind, start serving.

        Raises:
            EdgeError: no password set, a TLS file unreadable, the state folder or its events
                index unwritable, or the address cannot be bound.
        """
        context = _tls(config)
        try:
            self.site = Site(config, device)
        except (OSError, sqlite3.Error) as exc:  # SQLite's own: a read-only or full disk
            raise EdgeError(
                f"cannot write the web state folder {config.state_dir}: "
                f"{getattr(exc, 'strerror', None) or exc} (see web.state_dir)"
            ) from exc
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(
            self.site.app(), handle_signals=False, access_log=None, keepalive_timeout=limits.IDLE_S
        )
        try:
            self._loop.run_until_complete(self._runner.setup())
            server = self._runner.server
            assert server is not None  # made by setup()
            listening = self._loop.create_server(
                limits.bounded(server), config.host, config.port, ssl=context,
                ssl_handshake_timeout=limits.HANDSHAKE_S if context else None,
            )  # fmt: skip
            self._server = self._loop.run_until_complete(listening)
        except OSError as exc:
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()
            raise EdgeError(
                f"cannot serve the web page on {config.host}:{config.port} ({exc.strerror}): "
                "change web.host / web.port"
            ) from exc
        self.port: int = self._server.sockets[0].getsockname()[1]  # the one picked for port 0
        for feed in device.feeds.values():
            feed.bind(self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="web", daemon=True)
        self._thread.start()
        scheme = "https" if context else "http"
        log.info("web page on %s://%s:%d/", scheme, config.host, self.port)

    def close(self) -> None:
        """Close the viewers' sockets, stop serving, release the port."""
        cleanup = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
        try:
            cleanup.result(timeout=10)
        except (concurrent.futures.TimeoutError, OSError) as exc:
            log.warning("web: stopping the server: %s", exc or "timed out")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        for feed in self.site.device.feeds.values():
            feed.close()
        self.site.pool.shutdown(wait=False, cancel_futures=True)
        self.site.index.close()
        started = time.monotonic()
        while self._loop.is_running() and time.monotonic() - started < 5:
            time.sleep(0.01)
        if not self._loop.is_running():
            self._loop.close()

    async def _stop(self) -> None:
        self._server.close()  # no new connection; the runner then closes the open ones
        await self._runner.cleanup()


def _tls(config: WebConfig) -> ssl.SSLContext | None:
    """The TLS context of `cert_file`/`key_file`; None for plain HTTP."""
    if not config.cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise EdgeError(
            f"cannot load web.cert_file {config.cert_file} / web.key_file {config.key_file}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from exc
    return context


def serve(config: WebConfig, device: Device, side_outputs: SideOutputs) -> WebServer | None:
    """The started web server; None, with `web` reported degraded, when it cannot start (no
    password set, port taken, TLS files unreadable): the cameras run without it."""
    try:
        return WebServer(config, device)
    except EdgeError as exc:
        side_outputs.degrade("web", f"{exc}; the web page is off")
        return None
