"""The web server in-process, over real HTTP on loopback: password file and CLI, login rate
limit, CSRF and WebSocket origin checks, TLS cookies, start-up failures that leave the cameras
running, the config's [web] checks, and a live feed that does nothing while nobody watches."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import http.client
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import make_mocked_request

from edge.config import OutputConfig, WebConfig, load
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.recordings import Segment, segment_path
from edge.runtime import DeviceOutputs, open_sinks
from edge.service.health import Health
from edge.service.side_outputs import SideOutputs
from edge.types import Frame, Packet
from edge.utc import iso
from edge.web import auth, limits, proxy
from edge.web.app import Device, WebServer, serve
from edge.web.live import LiveFeed
from edge.web.recordings import MAX_EXPORT_BYTES, CameraFiles
from tests.systemd_unit import service_sandbox

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

PASSWORD = "a long enough secret"


def _device(cameras: dict[str, CameraFiles] | None = None) -> Device:
    metrics = {"cam0": Metrics()}
    return Device(cameras or {}, metrics, Health(metrics, None, 10.0), OutputConfig())


class _Camera:
    """Camera cam0's outputs (120x160 at 10 FPS, `segment_s` segments), fed frames by hand."""

    def __init__(self, folder: Path, segment_s: float) -> None:
        config = load(
            None,
            [f"output.dir='{folder}'", "output.bitrate_kbps=300", f"output.segment_s={segment_s}"],
        )
        self.sinks = open_sinks(config, ("Normal",), Metrics(), DeviceOutputs(config))
        self.files = CameraFiles.of(config)
        self.fed = 0

    def feed(self, frames: int) -> None:
        image = np.full((120, 160, 3), 40, np.uint8)
        for index in range(self.fed, self.fed + frames):
            image[:, index % 160] = 250
            packet = Packet(Frame(index, image.copy(), time.monotonic(), index / 10, 10.0))
            for sink in self.sinks:
                sink.write(packet, 10.0)
        self.fed += frames

    def close(self) -> None:
        for sink in self.sinks:
            sink.close([])


def _recorded(folder: Path, frames: int) -> CameraFiles:
    """Camera cam0's folder after `frames` frames in 1 s segments."""
    camera = _Camera(folder, 1)
    camera.feed(frames)
    camera.close()
    return camera.files


def _config(folder: Path, **values: object) -> WebConfig:
    auth.write_password(folder / "password", PASSWORD)
    settings = {"password_file": str(folder / "password"), "state_dir": str(folder / "state")}
    settings |= {"enabled": True, "port": 0}
    return WebConfig(**{**settings, **values})  # type: ignore[arg-type]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebServer]:
    web = WebServer(_config(tmp_path), _device())
    try:
        yield web
    finally:
        web.close()


def _send(
    connection: http.client.HTTPConnection, method: str, path: str, body: str = "", **headers: str
) -> http.client.HTTPResponse:
    """One request on a connection (a body goes as a form); the response's body is left unread."""
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection.request(method, path, body=body or None, headers=headers)
    return connection.getresponse()


def _request(
    server: WebServer, method: str, path: str, body: str = "", source: str = "", **headers: str
) -> http.client.HTTPResponse:
    """One request from the loopback address `source` (default: the system's choice)."""
    address = (source, 0) if source else None
    connection = http.client.HTTPConnection(
        "127.0.0.1", server.port, timeout=30, source_address=address
    )
    response = _send(connection, method, path, body, **headers)
    response.read()
    return response


def _login(
    server: WebServer, password: str, origin: str | None = None, source: str = ""
) -> http.client.HTTPResponse:
    origin = origin if origin is not None else f"http://127.0.0.1:{server.port}"
    return _request(server, "POST", "/login", f"password={password}", source, Origin=origin)


def _session(server: WebServer) -> str:
    """A logged-in session's Cookie header."""
    good = _login(server, PASSWORD)
    assert good.status == 303
    return (good.getheader("Set-Cookie") or "").split(";")[0]


def test_password_file_holds_only_a_scrypt_hash_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "web" / "password"
    auth.write_password(path, PASSWORD)
    stored = path.read_text()
    assert PASSWORD not in stored
    assert stored.startswith("scrypt$16384$8$1$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.verify_password(stored, PASSWORD)
    assert not auth.verify_password(stored, PASSWORD + "x")
    assert not auth.verify_password("scrypt$garbage", PASSWORD)
    path.chmod(0o644)  # set again over a file someone opened up: 0600 again
    auth.write_password(path, PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(EdgeError, match="at least 8 characters"):
        auth.write_password(path, "short")


def _passwd(config: Path, *args: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "web", "passwd", "--config", str(config), *args],
        input=text, text=True, capture_output=True, timeout=60,
    )  # fmt: skip


def test_passwd_command_sets_the_password_the_config_names(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'[web]\npassword_file = "{tmp_path}/pw"\n')
    done = _passwd(config, "--stdin", text=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert auth.verify_password((tmp_path / "pw").read_text(), PASSWORD)
    again = _passwd(config, "--stdin", "--if-missing", text="another password\n")
    assert "already set" in again.stdout
    assert auth.verify_password((tmp_path / "pw").read_text(), PASSWORD)
    short = _passwd(config, "--stdin", text="short\n")
    assert short.returncode == 2
    assert short.stderr.strip().splitlines() == [
        "edge web: error: the password needs at least 8 characters"
    ]


def test_failed_logins_are_rate_limited_per_address(server: WebServer) -> None:
    for _ in range(auth.FAILURES):
        assert _login(server, "wrong password").status == 401
    limited = _login(server, PASSWORD)  # even the right one waits now
    assert limited.status == 429
    assert 0 < int(limited.getheader("Retry-After") or 0) <= auth.WINDOW_S + 1


def test_logins_sent_at_once_count_each_other(server: WebServer) -> None:
    """Twenty wrong passwords sent together: all pass the limiter's check before scrypt has
    refused the first, unless a try counts from when it begins."""
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        statuses = sorted(pool.map(lambda _: _login(server, "wrong password").status, range(20)))
    assert statuses == [401] * auth.FAILURES + [429] * (20 - auth.FAILURES)


def test_failed_logins_from_many_addresses_are_limited_together(server: WebServer) -> None:
    """One machine can take many addresses (127.0.0.0/8 is all loopback here, an IPv6 /64 on a
    LAN): past GLOBAL_FAILURES, a fresh address waits too, and a right password that got in
    counted as no failure."""
    assert _login(server, PASSWORD, source="127.0.0.2").status == 303
    for n in range(auth.GLOBAL_FAILURES):
        address = f"127.0.1.{n // auth.FAILURES + 1}"
        assert _login(server, "wrong password", source=address).status == 401, n
    assert _login(server, PASSWORD, source="127.0.2.1").status == 429


def test_state_changing_requests_from_another_site_are_refused(server: WebServer) -> None:
    assert _login(server, PASSWORD, origin="http://evil.example").status == 403
    assert _login(server, PASSWORD, origin="").status == 403  # no Origin, no Referer
    socket = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    socket["Cookie"] = _session(server)
    refused = _request(server, "GET", "/api/live/cam0", Origin="http://evil.example", **socket)
    assert refused.status == 403


@pytest.mark.parametrize(("limit", "status"), [("-1", 400), ("0", 400), ("x", 400), ("5", 200)])
def test_events_limit_below_one_is_refused(server: WebServer, limit: str, status: int) -> None:
    response = _request(server, "GET", f"/api/events?limit={limit}", Cookie=_session(server))
    assert response.status == status


def _export(
    web: WebServer, start: float, end: float, cookie: str, **headers: str
) -> http.client.HTTPResponse:
    query = f"start={iso(start)}&end={iso(end)}".replace("+", "%2B")
    return _request(web, "GET", f"/api/export/cam0?{query}", Cookie=cookie, **headers)


def test_an_export_is_made_once_for_the_byte_ranges_a_player_asks(tmp_path: Path) -> None:
    camera = _recorded(tmp_path / "out", 25)
    web = WebServer(_config(tmp_path), _device({"cam0": camera}))
    try:
        cookie = _session(web)
        segments = camera.segments()
        assert len(segments) == 3
        start, end = segments[0].start, segments[-1].end + 1
        assert _export(web, start, end, cookie).status == 200
        (made,) = (tmp_path / "state" / "cache").glob("*.mp4")
        first = made.stat()
        assert _export(web, start, end, cookie, Range="bytes=100-199").status == 206
        assert list((tmp_path / "state" / "cache").glob("*.mp4")) == [made]
        again = made.stat()
        assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    finally:
        web.close()


def _written(camera: CameraFiles, size: int) -> Segment:
    """The camera's one segment once it holds more than `size` bytes (the encoder writes
    from its own thread)."""
    deadline = time.monotonic() + 10
    while not (found := camera.segments()) or found[0].size <= size:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    (segment,) = found
    return segment


def test_a_growing_segment_gives_one_copy_per_url(tmp_path: Path) -> None:
    """The open segment, listed at one size, grows before the player's next byte range: the
    same URL must give the same bytes."""
    camera = _Camera(tmp_path / "out", 60)
    web = WebServer(_config(tmp_path), _device({"cam0": camera.files}))
    try:
        cookie = _session(web)
        camera.feed(20)
        segment = _written(camera.files, 0)
        url = f"/api/segments/cam0/{segment.path.name}?v={segment.size}"
        assert _request(web, "GET", url, Cookie=cookie).status == 200
        (made,) = (tmp_path / "state" / "cache").glob("*.mp4")
        first = made.stat()
        camera.feed(20)
        _written(camera.files, segment.size)
        assert _request(web, "GET", url, Cookie=cookie, Range="bytes=100-199").status == 206
        assert list((tmp_path / "state" / "cache").glob("*.mp4")) == [made]
        assert made.stat().st_ino == first.st_ino
        bigger = url.replace(f"v={segment.size}", f"v={segment.size + 10**9}")
        assert _request(web, "GET", bigger, Cookie=cookie).status == 404  # no such size yet
    finally:
        camera.close()
        web.close()


def test_an_export_longer_than_the_page_makes_is_refused(tmp_path: Path) -> None:
    """Two segments (sparse files: no disk used) that hold more than MAX_EXPORT_BYTES."""
    camera = CameraFiles("cam0", tmp_path / "out", "recordings", "", False)
    folder = camera.root / "cam0"
    folder.mkdir(parents=True)
    start = time.time() - 3600
    for seq in (1, 2):
        with segment_path(folder, "cam0", start + 60 * seq, seq).open("wb") as stream:
            stream.truncate(MAX_EXPORT_BYTES // 2 + 1)
    web = WebServer(_config(tmp_path), _device({"cam0": camera}))
    try:
        cookie = _session(web)
        refused = _export(web, start, time.time(), cookie)
        assert refused.status == 400
        assert not list((tmp_path / "state" / "cache").glob("*"))
    finally:
        web.close()


def test_a_new_password_ends_every_session(server: WebServer, tmp_path: Path) -> None:
    cookie = _session(server)
    assert _request(server, "GET", "/api/cameras", Cookie=cookie).status == 200
    auth.write_password(tmp_path / "password", "another long secret")
    assert _request(server, "GET", "/api/cameras", Cookie=cookie).status == 401
    assert _login(server, PASSWORD).status == 401


def test_a_password_file_removed_while_serving_is_named_at_login(
    server: WebServer, tmp_path: Path
) -> None:
    (tmp_path / "password").unlink()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    origin = f"http://127.0.0.1:{server.port}"
    response = _send(connection, "POST", "/login", f"password={PASSWORD}", Origin=origin)
    assert response.status == 503
    assert "run `python -m edge web passwd`" in response.read().decode()
    for _ in range(auth.FAILURES):  # not counted as failed guesses
        assert _login(server, PASSWORD).status == 503


def test_a_live_socket_closes_when_its_session_ends(tmp_path: Path) -> None:
    """A viewer logged out (or whose session expired) stops getting frames."""
    feed = LiveFeed("cam0")
    device = _device({"cam0": CameraFiles("cam0", tmp_path / "out", "recordings", "", False)})
    device.feeds = {"cam0": feed}
    web = WebServer(_config(tmp_path), device)
    stop = threading.Event()

    def camera() -> None:
        while not stop.wait(0.05):
            feed.offer(np.zeros((48, 64, 3), np.uint8), time.time())

    async def watch(cookie: str) -> aiohttp.WSMessage:
        origin = f"http://127.0.0.1:{web.port}"
        async with (
            aiohttp.ClientSession(headers={"Cookie": cookie}) as client,
            client.ws_connect(f"{origin}/api/live/cam0", origin=origin) as socket,
        ):
            assert (await socket.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY
            logout = functools.partial(_request, web, "POST", "/logout", Origin=origin)
            assert (await asyncio.to_thread(logout, Cookie=cookie)).status == 303
            deadline = time.monotonic() + 5  # frames come every 0.05 s until it closes
            while (message := await socket.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY:
                if time.monotonic() > deadline:
                    break
            return message

    threading.Thread(target=camera, daemon=True).start()
    try:
        closed = asyncio.run(watch(_session(web)))
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1008)
    finally:
        stop.set()
        web.close()


def _cookie_flags(response: http.client.HTTPResponse) -> set[str]:
    return {part.strip().lower() for part in (response.getheader("Set-Cookie") or "").split(";")}


def test_behind_a_tls_proxy_on_this_device_logins_work_per_browser(server: WebServer) -> None:
    """As Caddy or nginx in front of host 127.0.0.1 pass it on: the browser's https origin and
    host, its scheme and address in X-Forwarded-*. The login is not refused as another site,
    the cookie is Secure, and one browser's failures do not lock out another."""

    def login(password: str, browser: str) -> http.client.HTTPResponse:
        headers = {
            "Host": "jetson.local",
            "Origin": "https://jetson.local",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": f"198.51.100.7, {browser}",
        }
        return _request(server, "POST", "/login", f"password={password}", **headers)

    for _ in range(auth.FAILURES):
        assert login("wrong password", "192.0.2.10").status == 401
    assert login(PASSWORD, "192.0.2.10").status == 429
    good = login(PASSWORD, "192.0.2.11")
    assert good.status == 303
    assert {"secure", "httponly", "samesite=strict"} <= _cookie_flags(good)


class _Peer:
    """A connection from `address`: all that aiohttp asks a transport for here."""

    def __init__(self, address: tuple[object, ...]) -> None:
        self.address = address

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.address if name == "peername" else default


@pytest.mark.parametrize(
    ("peer", "believed"),
    [(("127.0.0.1", 5000), True), (("::1", 5000, 0, 0), True), (("192.0.2.9", 5000), False)],
)
def test_forwarded_headers_are_believed_only_from_this_device(
    peer: tuple[object, ...], believed: bool
) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.1, 10.0.0.2"}
    request = make_mocked_request("POST", "/login", headers, transport=_Peer(peer))
    expected = ("https", "10.0.0.2") if believed else ("http", peer[0])
    assert (proxy.scheme(request), proxy.client(request)) == expected


def _idle(web: WebServer) -> socket.socket:
    """A connection that sends nothing."""
    return socket.create_connection(("127.0.0.1", web.port), timeout=30)


def test_connections_are_bounded_so_clients_cannot_take_the_cameras_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each connection is a file descriptor of the cameras' process: past MAX_CONNECTIONS a new
    one is answered 503 and closed, and one that sends no request is closed after IDLE_S."""
    monkeypatch.setattr(limits, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(limits, "IDLE_S", 1.0)
    web = WebServer(_config(tmp_path), _device())
    try:
        held = [_idle(web) for _ in range(4)]
        time.sleep(0.2)  # all four made
        refused = _idle(web)
        assert refused.recv(100).startswith(b"HTTP/1.1 503")
        assert all(connection.recv(1) == b"" for connection in held)  # closed when idle
        assert _request(web, "GET", "/login").status == 200
    finally:
        web.close()


def test_session_cookie_is_http_only_strict_and_secure_under_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    web = WebServer(_config(tmp_path, cert_file=str(cert), key_file=str(key)), _device())
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        connection = http.client.HTTPSConnection("127.0.0.1", web.port, context=context)
        origin = f"https://127.0.0.1:{web.port}"
        response = _send(connection, "POST", "/login", f"password={PASSWORD}", Origin=origin)
        assert response.status == 303
        assert {"httponly", "secure", "samesite=strict"} <= _cookie_flags(response)
    finally:
        web.close()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("no password", "no web password set"),
        ("port taken", "cannot serve the web page on 127.0.0.1"),
        ("bad certificate", "cannot load web.cert_file"),
        ("state unwritable", "cannot write the web state folder /proc/self: unable to open"),
    ],
)
def test_a_page_that_cannot_start_is_degraded_not_fatal(
    tmp_path: Path, server: WebServer, change: str, problem: str
) -> None:
    config = _config(tmp_path)
    if change == "no password":
        config = WebConfig(password_file=str(tmp_path / "missing"), state_dir=str(tmp_path))
    elif change == "port taken":
        config = _config(tmp_path, port=server.port)
    elif change == "state unwritable":  # no file can be made there, as on a read-only mount
        config = _config(tmp_path, state_dir="/proc/self")
    else:
        (tmp_path / "cert.pem").write_text("not a certificate")
        config = _config(tmp_path, cert_file=str(tmp_path / "cert.pem"), key_file="k.pem")
    side_outputs = SideOutputs(Metrics())
    assert serve(config, _device(), side_outputs) is None
    reason = side_outputs.degraded()["web"]
    assert problem in reason
    assert reason.endswith("the web page is off")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["web.cert_file='c.pem'"], "config key 'web.key_file': HTTPS needs both"),
        (["web.port=70000"], "config key 'web.port': expected a value in [0, 65535]"),
        (["web.session_h=0"], "config key 'web.session_h'"),
        (["web.host=''"], "config key 'web.host': expected a host name or address"),
    ],
)
def test_web_config_errors_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(EdgeError) as error:
        load(None, overrides)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_live_feed_encodes_nothing_without_a_viewer() -> None:
    feed = LiveFeed("cam0")
    frame = np.zeros((48, 64, 3), np.uint8)
    feed.offer(frame, time.time())
    assert feed._pending is None  # no viewer: the frame is not even kept
    feed.viewers = 1
    feed.offer(frame, 1.5)
    assert feed._pending is not None
    assert feed._pending[0] is frame  # kept by reference: no copy in the pipeline's thread


def test_shipped_config_keeps_the_page_state_where_the_unit_lets_it_write() -> None:
    """The password file (written by the service user) and the index and MP4 cache lie in the
    unit's writable folders, relative to its WorkingDirectory=."""
    sandbox = service_sandbox()
    web = load(DEPLOY / "edge.toml").web
    for path in (web.password_file, web.state_dir):
        target = sandbox.working_directory / path
        assert any(target.is_relative_to(folder) for folder in sandbox.writable), path
