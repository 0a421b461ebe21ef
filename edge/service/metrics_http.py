"""Optional HTTP endpoint: `/metrics` (Prometheus text format 0.0.4) and `/healthz`.

Standard library only: a `ThreadingHTTPServer` in a daemon thread, bound to localhost by default.
The exposition is rendered from one `Metrics.snapshot()` per request.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import socket
import sys
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge.errors import EdgeError
from edge.metrics import BUCKETS, Metrics, Snapshot
from edge.service.health import Health

log = logging.getLogger(__name__)

PREFIX = "edge_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Counters and gauges the pipeline keeps, with their help text; they are exported (as 0) before
# the pipeline first touches them so dashboards see every series from the start.
COUNTERS = {
    "frames": "Frames that went through every stage.",
    "dropped_frames": "Frames dropped because a stage fell behind a live source.",
    "reconnects": "Times the source was reopened after an error or end of stream.",
    "tracks_started": "Tracks confirmed by the tracker.",
    "segments_recorded": "Video segments finished (closed) by the recorder.",
    "segments_deleted": "Oldest video segments deleted by output.keep_gb/keep_days/min_free_gb.",
    "recording_bytes_deleted": "Bytes of video segments deleted by retention.",
    "snapshots_deleted": "Snapshots deleted with the segments they belong to.",
    "side_files_deleted": "Full event-file pieces and earlier runs' MOT files retention deleted.",
    "disk_errors": "Times the output disk refused data (full, read-only): file outputs paused.",
    "frames_not_recorded": "Frames not recorded while the output disk was paused.",
    "writes_skipped": "Event/MOT/snapshot writes skipped while the output disk was paused.",
    "recording_frames_dropped": "Frames not recorded: the encoder's bounded queue was full.",
    "rtsp_frames_dropped": "Frames an RTSP client missed: its bounded queue was full.",
    "capture_pipelines_left_behind": "Capture pipelines GStreamer did not stop within 5 s.",
}
GAUGES = {
    "fps": "Frames per second through the whole pipeline, recent average.",
    "active_tracks": "Tracks currently confirmed.",
    "output_paused": "1 while file outputs wait for the output disk (full or read-only), else 0.",
    "recording_bytes": "Bytes of this camera's video segments on disk.",
    "capture_pipelines_stopping": "Capture pipelines left behind that have not stopped yet.",
}
QUANTILES = {"0.5": "p50_ms", "0.95": "p95_ms", "0.99": "p99_ms"}
# Seconds a connection may last, and stay silent, before it is dropped: without it a client
# that connects and sends nothing (or a byte at a time) holds a thread forever.
REQUEST_TIMEOUT_S = 10.0
MAX_CLIENTS = 16  # connections served at once, each a thread


def _name(text: str) -> str:
    """A valid Prometheus metric name from a counter or gauge name."""
    return PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", text)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def render(snapshots: Mapping[str, Snapshot]) -> str:
    """Each camera's snapshot in Prometheus text exposition format, labelled `camera="NAME"`
    (the device's own, e.g. MQTT's, under the name "": no label)."""
    lines: list[str] = []
    cameras = {name: f'camera="{_label(name)}"' if name else "" for name in snapshots}
    histogram = f"{PREFIX}stage_latency_seconds"
    lines += _family(histogram, "histogram", "Time one frame spent in a pipeline stage.")
    for name, snapshot in snapshots.items():
        for stage, stats in sorted(snapshot.stages.items()):
            label = ",".join(filter(None, (cameras[name], f'stage="{_label(stage)}"')))
            for bound, count in zip(BUCKETS, stats.cumulative_buckets, strict=True):
                lines.append(f'{histogram}_bucket{{{label},le="{_number(bound)}"}} {count}')
            lines.append(f'{histogram}_bucket{{{label},le="+Inf"}} {stats.count}')
            lines.append(f"{histogram}_sum{{{label}}} {_number(stats.total_s)}")
            lines.append(f"{histogram}_count{{{label}}} {stats.count}")
    recent = f"{PREFIX}stage_latency_recent_seconds"
    lines += _family(recent, "gauge", "Latency percentile of a stage over its recent frames.")
    for name, snapshot in snapshots.items():
        for stage, stats in sorted(snapshot.stages.items()):
            for quantile, attribute in QUANTILES.items():
                seconds = getattr(stats, attribute) / 1000
                labels = ",".join(
                    filter(None, (cameras[name], f'stage="{_label(stage)}",quantile="{quantile}"'))
                )
                lines.append(f"{recent}{{{labels}}} {_number(seconds)}")
    # A camera's series exist (as 0) before the pipeline first touches them
    counters = {
        n: ({c: 0 for c in COUNTERS} if n else {}) | s.counters for n, s in snapshots.items()
    }
    gauges = {n: ({g: 0.0 for g in GAUGES} if n else {}) | s.gauges for n, s in snapshots.items()}
    lines += _families("counter", COUNTERS, counters, cameras)
    lines += _families("gauge", GAUGES, gauges, cameras)
    uptime = f"{PREFIX}uptime_seconds"
    lines += _family(uptime, "gauge", "Seconds since the runtime started.")
    started = max(snapshot.uptime_s for snapshot in snapshots.values())
    lines.append(f"{uptime} {_number(started)}")
    return "\n".join(lines) + "\n"


def _families(
    kind: str,
    helps: Mapping[str, str],
    values: Mapping[str, Mapping[str, float]],
    labels: Mapping[str, str],
) -> list[str]:
    """Counter or gauge families, a series per camera that has the value."""
    lines: list[str] = []
    suffix = "_total" if kind == "counter" else ""
    for metric in sorted(set().union(*values.values())):
        family = _name(metric) + suffix
        lines += _family(family, kind, helps.get(metric, f"Pipeline {kind} {metric}."))
        for name, numbers in values.items():
            if metric in numbers:
                value = numbers[metric]
                text = str(value) if isinstance(value, int) else _number(value)
                lines.append(f"{family}{_braced(labels[name])} {text}")
    return lines


def _braced(labels: str) -> str:
    return f"{{{labels}}}" if labels else ""


def healthz(health: Health) -> tuple[bool, str]:
    """`/healthz`: healthy only when every camera delivers; one line per camera, then one per
    degraded side output (which leaves the device healthy)."""
    lines = []
    for name in health.cameras:
        age, failure = health.last_frame_age_s(name), health.failure(name)
        if failure is not None:
            lines.append(f"{name}: unhealthy: failed, restarting: {failure}")
        elif health.healthy(name):
            lines.append(f"{name}: ok: last frame {age:.1f} s ago")
        elif age is None:
            lines.append(f"{name}: unhealthy: no frame yet")
        else:
            lines.append(f"{name}: unhealthy: stalled, no frame for {age:.0f} s")
    if health.side_outputs is not None:
        for output, reason in health.side_outputs.degraded().items():
            lines.append(f"{output}: degraded: {reason}")
    return health.healthy(), "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        # Each read and write times out, and the whole exchange has the same deadline, so a
        # client that trickles a byte at a time is cut too (`_Server.handle_error` logs it).
        self.request.settimeout(self.server.timeout_s)
        self._deadline = threading.Timer(self.server.timeout_s, self._cut)
        self._deadline.daemon = True
        self._deadline.start()
        super().setup()

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        metrics = self.server.metrics
        if path == "/metrics":
            snapshots = {name: m.snapshot() for name, m in metrics.items()}
            self._reply(HTTPStatus.OK, render(snapshots), CONTENT_TYPE)
        elif path == "/healthz":
            healthy, body = healthz(self.server.health)
            self._reply(HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE, body)
        else:
            self._reply(HTTPStatus.NOT_FOUND, "not found: try /metrics or /healthz\n")

    def _reply(self, status: HTTPStatus, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Mapping[str, Metrics],
        health: Health,
        timeout_s: float,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.timeout_s = timeout_s
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # At most MAX_CLIENTS connections (threads) at once: one more is closed at once.
        if not self.clients.acquire(blocking=False):
            log.debug("metrics client %s refused: %d connections open", client_address,
                      MAX_CLIENTS)  # fmt: skip
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nothing else gives the slot back
            self.clients.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.clients.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or went away mid-reply: a debug line, not a traceback.
        log.debug("metrics client %s: %s", client_address, sys.exc_info()[1])


class MetricsServer:
    """Serves `/metrics` and `/healthz` from a daemon thread until `close()`."""

    def __init__(
        self,
        metrics: Mapping[str, Metrics],
        health: Health,
        host: str,
        port: int,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        """Bind and start serving.

        Args:
            metrics: each camera's metrics by name, and the device's under "".
            health: answers `/healthz`.
            host: address to bind (config `health.metrics_host`; keep it on localhost).
            port: TCP port; 0 picks a free one (see `port`).
            timeout_s: seconds a connection may last (and stay silent) before it is dropped.

        Raises:
            EdgeError: the address cannot be bound (in use, or not an address of this machine).
        """
        try:
            self._server = _Server((host, port), metrics, health, timeout_s)
        except OSError as exc:
            raise EdgeError(
                f"cannot serve metrics on {host}:{port} ({exc.strerror}): "
                "change health.metrics_host / health.metrics_port"
            ) from exc
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, self.port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
