"""The RTSP output with a real gst-rtsp-server on loopback: the address it binds, its login, and
a client that stalls (bounded, counted, never memory)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from benchmarks.processes import free_port
from edge.config import load
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.video import gst, rtsp
from edge.video.rtsp import RtspMount, RtspServer, rtsp_server

SIZE = (160, 120)
LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at `port`, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == LISTEN:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def serve(*overrides: str) -> RtspServer:
    server = rtsp_server(load(None, list(overrides)).output)
    assert server is not None
    return server


def describe_status(port: int, path: str = "/edge") -> str:
    """The status line an RTSP DESCRIBE without credentials gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        request = f"DESCRIBE rtsp://127.0.0.1:{port}{path} RTSP/1.0\r\nCSeq: 1\r\n\r\n"
        client.sendall(request.encode())
        return client.recv(4096).decode().splitlines()[0]


class Feeder:
    """Pushes frames into a mount from a thread, as a camera's video sink does."""

    def __init__(self, mount: RtspMount) -> None:
        self.mount = mount
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        image = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        while not self._stop.wait(1 / 15):
            self.mount.write(image)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def port() -> int:
    return free_port()


def first_frame(url: str, user: str = "", password: str = "") -> np.ndarray | None:
    """One frame played from `url` by rtspsrc (with that login), or None if it got none."""
    Gst = gst.init()
    client = Gst.parse_launch(
        "rtspsrc name=client latency=0 ! decodebin ! videoconvert ! video/x-raw,format=BGR "
        "! appsink name=sink sync=false"
    )
    source = client.get_by_name("client")
    source.set_property("location", url)
    if user:
        source.set_property("user-id", user)
        source.set_property("user-pw", password)
    client.set_state(Gst.State.PLAYING)
    try:
        sample = client.get_by_name("sink").emit("try-pull-sample", 20 * Gst.SECOND)
        return None if sample is None else gst.sample_to_array(sample)[0]
    finally:
        client.set_state(Gst.State.NULL)


def test_the_server_binds_loopback_unless_told_otherwise(port: int) -> None:
    server = serve(f"output.rtsp_port={port}")
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
        feeder = Feeder(server.mount("/edge", *SIZE, 15.0, 300, Metrics()))
        assert first_frame(f"rtsp://127.0.0.1:{port}/edge") is not None  # no login: anyone
        feeder.stop()
    finally:
        server.close()
    server = serve(f"output.rtsp_port={port}", "output.rtsp_host='0.0.0.0'")
    try:
        assert listening_addresses(port) == {"0.0.0.0"}
    finally:
        server.close()


def test_a_login_is_required_when_a_user_is_set(port: int, tmp_path: Path) -> None:
    secret = tmp_path / "rtsp.password"
    secret.write_text("s3cret pass\n")
    server = serve(
        f"output.rtsp_port={port}",
        "output.rtsp_user='viewer'",
        f"output.rtsp_password_file='{secret}'",
    )
    feeder = Feeder(server.mount("/edge", *SIZE, 15.0, 300, Metrics()))
    try:
        assert describe_status(port) == "RTSP/1.0 401 Unauthorized"
        url = f"rtsp://127.0.0.1:{port}/edge"
        assert first_frame(url, "viewer", "wrong") is None
        image = first_frame(url, "viewer", "s3cret pass")
        assert image is not None
        assert image.shape == (SIZE[1], SIZE[0], 3)
    finally:
        feeder.stop()
        server.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["output.rtsp_user='viewer'"], "output.rtsp_user and output.rtsp_password_file go"),
        (["output.rtsp_password_file='/x'"], "output.rtsp_user and output.rtsp_password_file"),
        (
            ["output.rtsp_user='viewer'", "output.rtsp_password_file='/nonexistent/pw'"],
            r"cannot read output.rtsp_password_file /nonexistent/pw: No such file",
        ),
    ],
)
def test_a_login_without_its_password_is_one_clear_error(
    port: int, overrides: list[str], message: str
) -> None:
    with pytest.raises(EdgeError, match=message):
        serve(f"output.rtsp_port={port}", *overrides)


def test_a_stalled_client_holds_a_bounded_queue_and_its_drops_are_counted(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame_bytes = SIZE[0] * SIZE[1] * 3
    monkeypatch.setattr(rtsp, "CLIENT_QUEUE_BYTES", 8 * frame_bytes)
    Gst = gst.init()
    server = RtspServer(port)
    metrics = Metrics()
    mount = server.mount("/edge", *SIZE, 15.0, 300, metrics)
    feeder = Feeder(mount)
    try:
        # A client whose network stalls once it plays: its payloader stops taking data.
        client = Gst.parse_launch(
            f"rtspsrc location=rtsp://127.0.0.1:{port}/edge latency=0 ! fakesink sync=false"
        )
        client.set_state(Gst.State.PLAYING)
        waited = threading.Event()
        while not mount._clients:  # the server-side appsrc of that client
            waited.wait(0.05)
        src = mount._clients[0][0]
        feeder.stop()
        payloader = src.get_parent().get_by_name("pay0")
        payloader.get_static_pad("sink").add_probe(
            Gst.PadProbeType.BLOCK | Gst.PadProbeType.BUFFER, lambda *_: Gst.PadProbeReturn.OK
        )
        image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        for _ in range(300):
            mount.write(image)
            assert src.get_property("current-level-bytes") <= 8 * frame_bytes
        dropped = metrics.snapshot().counters["rtsp_frames_dropped"]
        # Everything past the queue and the few frames inside the blocked encoder was dropped.
        assert 300 - 8 - 10 <= dropped < 300
        client.set_state(Gst.State.NULL)
    finally:
        server.close()
