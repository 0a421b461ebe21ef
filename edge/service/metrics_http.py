"""Optional HTTP endpoint: `/metrics` (Prometheus text format 0.0.4) and `/healthz`.

Standard library only: a `ThreadingHTTPServer` in a daemon thread, bound to localhost by default.
The exposition is rendered from one `Metrics.snapshot()` per request.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import threading
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
    "segments_deleted": "Oldest video segments deleted to stay within output.keep_gb/keep_days.",
    "recording_bytes_deleted": "Bytes of video segments deleted by retention.",
    "snapshots_deleted": "Snapshots deleted with the segments they belong to.",
    "disk_errors": "Times the output disk refused data (full, read-only): file outputs paused.",
    "frames_not_recorded": "Frames not recorded while the output disk was paused.",
    "writes_skipped": "Event/MOT/snapshot writes skipped while the output disk was paused.",
}
GAUGES = {
    "fps": "Frames per second through the whole pipeline, recent average.",
    "active_tracks": "Tracks currently confirmed.",
    "output_paused": "1 while file outputs wait for the output disk (full or read-only), else 0.",
    "recording_bytes": "Bytes of this camera's video segments on disk.",
}
QUANTILES = {"0.5": "p50_ms", "0.95": "p95_ms", "0.99": "p99_ms"}


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


def render(snapshot: Snapshot) -> str:
    """The snapshot in Prometheus text exposition format."""
    lines: list[str] = []
    histogram = f"{PREFIX}stage_latency_seconds"
    lines += _family(histogram, "histogram", "Time one frame spent in a pipeline stage.")
    for stage, stats in sorted(snapshot.stages.items()):
        label = f'stage="{_label(stage)}"'
        for bound, count in zip(BUCKETS, stats.cumulative_buckets, strict=True):
            lines.append(f'{histogram}_bucket{{{label},le="{_number(bound)}"}} {count}')
        lines.append(f'{histogram}_bucket{{{label},le="+Inf"}} {stats.count}')
        lines.append(f"{histogram}_sum{{{label}}} {_number(stats.total_s)}")
        lines.append(f"{histogram}_count{{{label}}} {stats.count}")
    recent = f"{PREFIX}stage_latency_recent_seconds"
    lines += _family(recent, "gauge", "Latency percentile of a stage over its recent frames.")
    for stage, stats in sorted(snapshot.stages.items()):
        for quantile, attribute in QUANTILES.items():
            seconds = getattr(stats, attribute) / 1000
            labels = f'stage="{_label(stage)}",quantile="{quantile}"'
            lines.append(f"{recent}{{{labels}}} {_number(seconds)}")
    counters = {name: 0 for name in COUNTERS} | snapshot.counters
    for counter, total in sorted(counters.items()):
        name = f"{_name(counter)}_total"
        lines += _family(name, "counter", COUNTERS.get(counter, f"Pipeline counter {counter}."))
        lines.append(f"{name} {total}")
    gauges = {name: 0.0 for name in GAUGES} | snapshot.gauges
    for gauge, value in sorted(gauges.items()):
        name = _name(gauge)
        lines += _family(name, "gauge", GAUGES.get(gauge, f"Pipeline gauge {gauge}."))
        lines.append(f"{name} {_number(value)}")
    uptime = f"{PREFIX}uptime_seconds"
    lines += _family(uptime, "gauge", "Seconds since the runtime started.")
    lines.append(f"{uptime} {_number(snapshot.uptime_s)}")
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(HTTPStatus.OK, render(self.server.metrics.snapshot()), CONTENT_TYPE)
        elif path == "/healthz":
            health = self.server.health
            age = health.last_frame_age_s()
            if health.healthy():
                self._reply(HTTPStatus.OK, f"ok: last frame {age:.1f} s ago\n")
            else:
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, f"unhealthy: {health.status()}\n")
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

    def __init__(self, address: tuple[str, int], metrics: Metrics, health: Health) -> None:
        self.metrics = metrics
        self.health = health
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class MetricsServer:
    """Serves `/metrics` and `/healthz` from a daemon thread until `close()`."""

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        """Bind and start serving.

        Args:
            metrics: the pipeline's metrics.
            health: answers `/healthz`.
            host: address to bind (config `health.metrics_host`; keep it on localhost).
            port: TCP port; 0 picks a free one (see `port`).

        Raises:
            EdgeError: the address cannot be bound (in use, or not an address of this machine).
        """
        try:
            self._server = _Server((host, port), metrics, health)
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
