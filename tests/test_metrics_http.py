"""The metrics endpoint, served for real on 127.0.0.1 and read with Prometheus' own parser."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.errors import EdgeError
from edge.metrics import BUCKETS, Metrics
from edge.service.health import Health
from edge.service.metrics_http import MAX_CLIENTS, MetricsServer, healthz
from edge.service.side_outputs import SideOutputs

# Seconds per observation, per stage: includes one past the last bucket (only in +Inf).
OBSERVATIONS = {
    "capture": [0.0004, 0.0009, 0.003],
    "detect": [0.15, 0.16, 0.21, 7.5],
    "track": [0.002],
    "total": [0.2, 0.25, 0.31],
}


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> Metrics:
    store = Metrics()
    for stage, values in OBSERVATIONS.items():
        for seconds in values:
            store.observe(stage, seconds)
    store.increment("frames", 3)
    store.increment("dropped_frames", 2)
    store.set("fps", 4.5)
    store.set("active_tracks", 2)
    return store


@pytest.fixture
def health(metrics: Metrics, clock: Clock) -> Health:
    return Health({"cam0": metrics}, None, stall_s=5.0, clock=clock)


@pytest.fixture
def server(metrics: Metrics, health: Health) -> Iterator[MetricsServer]:
    endpoint = MetricsServer({"cam0": metrics}, health, "127.0.0.1", 0)
    yield endpoint
    endpoint.close()


def _get(server: MetricsServer, path: str) -> tuple[int, str, str]:
    """Status, content type and body of GET `path`, error statuses included."""
    url = f"http://{server.host}:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def _families(server: MetricsServer) -> dict[str, dict[str, object]]:
    status, content_type, body = _get(server, "/metrics")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return {
        family.name: {"type": family.type, "help": family.documentation, "samples": family.samples}
        for family in text_string_to_metric_families(body)
    }


def test_metrics_parse_with_histograms_per_stage(server: MetricsServer) -> None:
    families = _families(server)
    latency = families["edge_stage_latency_seconds"]
    assert latency["type"] == "histogram"
    assert latency["help"] == "Time one frame spent in a pipeline stage."
    samples = latency["samples"]
    assert isinstance(samples, list)
    for stage, values in OBSERVATIONS.items():
        mine = [s for s in samples if s.labels["stage"] == stage]
        buckets = {s.labels["le"]: s.value for s in mine if s.name.endswith("_bucket")}
        expected = {repr(b): sum(v <= b for v in values) for b in BUCKETS}
        assert buckets == {**expected, "+Inf": len(values)}, stage
        (count,) = (s.value for s in mine if s.name.endswith("_count"))
        (total,) = (s.value for s in mine if s.name.endswith("_sum"))
        assert count == len(values)
        assert total == pytest.approx(sum(values))


def test_metrics_counters_gauges_and_percentiles(server: MetricsServer) -> None:
    families = _families(server)

    def value(name: str, **labels: str) -> float:
        samples = families[name]["samples"]
        assert isinstance(samples, list)
        wanted = labels if name == "edge_uptime_seconds" else {"camera": "cam0", **labels}
        (found,) = (s.value for s in samples if s.labels == wanted)
        return float(found)

    # The parser names counter families without `_total`; the samples keep it.
    for name, total in [("frames", 3), ("dropped_frames", 2), ("reconnects", 0)]:
        assert families[f"edge_{name}"]["type"] == "counter"
        assert value(f"edge_{name}") == total
    assert families["edge_tracks_started"]["help"] == "Tracks confirmed by the tracker."
    assert value("edge_fps") == 4.5
    assert value("edge_active_tracks") == 2
    assert families["edge_fps"]["type"] == "gauge"
    assert value("edge_uptime_seconds") >= 0
    p50 = value("edge_stage_latency_recent_seconds", stage="total", quantile="0.5")
    assert p50 == pytest.approx(0.25)


def test_metrics_before_any_frame_still_lists_every_series(health: Health) -> None:
    endpoint = MetricsServer({"cam0": Metrics()}, health, "127.0.0.1", 0)
    families = _families(endpoint)
    endpoint.close()
    assert {"edge_frames", "edge_dropped_frames", "edge_reconnects", "edge_tracks_started"} <= set(
        families
    )
    assert families["edge_stage_latency_seconds"]["samples"] == []


def test_healthz_follows_the_frames(server: MetricsServer, health: Health, clock: Clock) -> None:
    status, _, body = _get(server, "/healthz")
    assert (status, body) == (503, "cam0: unhealthy: no frame yet\n")
    health.frame_done("cam0")
    clock.now += 1.0
    assert _get(server, "/healthz")[::2] == (200, "cam0: ok: last frame 1.0 s ago\n")
    clock.now += 5.0
    assert _get(server, "/healthz")[::2] == (503, "cam0: unhealthy: stalled, no frame for 6 s\n")


def test_several_cameras_each_labelled_and_listed(clock: Clock) -> None:
    door, yard, device = Metrics(), Metrics(), Metrics()
    door.increment("frames", 7)
    yard.increment("frames", 2)
    device.increment("mqtt_published", 4)
    health = Health({"door": door, "yard": yard}, None, stall_s=5.0, clock=clock)
    endpoint = MetricsServer({"door": door, "yard": yard, "": device}, health, "127.0.0.1", 0)
    try:
        frames = _families(endpoint)["edge_frames"]["samples"]
        assert isinstance(frames, list)
        assert {s.labels["camera"]: s.value for s in frames} == {"door": 7, "yard": 2}
        published = _families(endpoint)["edge_mqtt_published"]["samples"]
        assert isinstance(published, list)
        assert [(s.labels, s.value) for s in published] == [({}, 4)]
        health.frame_done("door")
        health.frame_done("yard")
        clock.now += 6.0
        health.frame_done("door")
        status, _, body = _get(endpoint, "/healthz")
        assert status == 503
        assert (
            body == "door: ok: last frame 0.0 s ago\nyard: unhealthy: stalled, no frame for 6 s\n"
        )
        assert health.status().startswith("stalled: yard; door: 0.0 fps")
    finally:
        endpoint.close()


def test_unknown_path_is_404(server: MetricsServer) -> None:
    assert _get(server, "/")[0] == 404


def test_port_in_use_is_a_one_line_error(
    server: MetricsServer, metrics: Metrics, health: Health
) -> None:
    with pytest.raises(EdgeError, match=rf"cannot serve metrics on 127.0.0.1:{server.port} "):
        MetricsServer({"cam0": metrics}, health, "127.0.0.1", server.port)


def test_healthz_names_a_degraded_side_output_and_stays_healthy() -> None:
    """A side output that failed (here the spool) is named with its reason; the cameras
    deliver, so the device is still healthy, and STATUS says it too."""
    now = [100.0]
    metrics, device = Metrics(), Metrics()
    side_outputs = SideOutputs(device)
    health = Health({"cam0": metrics}, None, stall_s=5.0, clock=lambda: now[0],
                    side_outputs=side_outputs)  # fmt: skip
    health.frame_done("cam0")
    side_outputs.degrade("spool", "cannot write /x/spool.db: Read-only file system")
    healthy, body = healthz(health)
    assert healthy
    assert "spool: degraded: cannot write /x/spool.db: Read-only file system" in body
    assert "degraded: spool" in health.status()
    assert device.snapshot().gauges["side_outputs_degraded"] == 1
    side_outputs.recover("spool")
    assert "degraded" not in healthz(health)[1]
    assert device.snapshot().gauges["side_outputs_degraded"] == 0


def test_a_silent_client_is_dropped_after_the_timeout_while_others_are_served(
    metrics: Metrics, health: Health
) -> None:
    """A client that connects and sends nothing holds its connection (and a thread) only for
    the timeout; meanwhile /healthz answers everyone else."""
    endpoint = MetricsServer({"cam0": metrics}, health, "127.0.0.1", 0, timeout_s=0.5)
    try:
        silent = socket.create_connection((endpoint.host, endpoint.port), timeout=5)
        started = time.monotonic()
        assert _get(endpoint, "/healthz")[0] in (200, 503)
        assert silent.recv(1) == b""  # the server closed it
        assert 0.4 < time.monotonic() - started < 3
        silent.close()
    finally:
        endpoint.close()


def test_a_trickling_client_is_cut_at_the_deadline_and_connections_are_capped(
    metrics: Metrics, health: Health
) -> None:
    """A client sending its request a byte at a time (each within the read timeout) is cut
    when the connection's deadline passes; beyond MAX_CLIENTS open connections, one more is
    closed at once instead of getting a thread."""
    endpoint = MetricsServer({"cam0": metrics}, health, "127.0.0.1", 0, timeout_s=0.6)
    held: list[socket.socket] = []
    try:
        trickler = socket.create_connection((endpoint.host, endpoint.port), timeout=5)

        def trickle() -> None:  # a header line that never ends, a byte every 0.1 s
            with contextlib.suppress(OSError):
                for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"x" * 100:
                    trickler.send(bytes([byte]))
                    time.sleep(0.1)

        started = time.monotonic()
        threading.Thread(target=trickle, daemon=True).start()
        assert trickler.recv(1) == b""  # the server closed it
        assert time.monotonic() - started < 2
        trickler.close()
        held = [socket.create_connection((endpoint.host, endpoint.port), timeout=5)
                for _ in range(MAX_CLIENTS)]  # fmt: skip
        time.sleep(0.1)
        extra = socket.create_connection((endpoint.host, endpoint.port), timeout=5)
        assert extra.recv(1) == b""  # closed before the deadline of the others
        extra.close()
    finally:
        for connection in held:
            connection.close()
        endpoint.close()
