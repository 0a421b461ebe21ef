"""The health panel's numbers: read from the same `Metrics` snapshots and `Health` that
`/metrics` and `/healthz` render (`edge.service.metrics_http`), never kept twice."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge.config import OutputConfig
from edge.metrics import Metrics
from edge.service.health import Health
from edge.service.metrics_http import healthz
from edge.version import version
from edge.web.recordings import CameraFiles

# Device gauges (metrics under "") the panel shows when MQTT is on.
MQTT_GAUGES = ("mqtt_connected", "mqtt_spooled_messages", "mqtt_spooled_bytes")


def report(
    metrics: Mapping[str, Metrics],
    health: Health,
    cameras: Sequence[CameraFiles],
    output: OutputConfig,
    models: Sequence[Mapping[str, str]],
) -> dict[str, Any]:
    """Everything the health panel shows, as JSON-ready values.

    Args:
        metrics: each camera's metrics by name, and the device's under "" (as `/metrics`).
        health: the cameras' liveness (as `/healthz`).
        cameras: the cameras' folders (disk use of each output file system).
        output: the device's retention bounds.
        models: each model's file, backend and precision.
    """
    snapshots = {name: m.snapshot() for name, m in metrics.items()}
    now = time.time()
    rows = []
    for camera in cameras:
        snap = snapshots[camera.name]
        age = health.last_frame_age_s(camera.name)
        total = snap.stages.get("total")
        rows.append(
            {
                "camera": camera.name,
                "healthy": health.healthy(camera.name),
                "fps": snap.gauges.get("fps", 0.0),
                "p95_ms": total.p95_ms if total else None,
                "frames": snap.counters.get("frames", 0),
                "dropped": snap.counters.get("dropped_frames", 0),
                "reconnects": snap.counters.get("reconnects", 0),
                "last_frame_utc": now - age if age is not None else None,
                "recording_bytes": snap.gauges.get("recording_bytes", 0.0),
                "disk": _disk(camera.dir),
            }
        )
    device = snapshots.get("")
    gauges = device.gauges if device is not None else {}
    healthy, lines = healthz(health)
    return {
        "version": version(),
        "uptime_s": max(s.uptime_s for s in snapshots.values()),
        "healthy": healthy,
        "status": lines.splitlines(),
        "cameras": rows,
        "retention": {
            "keep_gb": output.keep_gb,
            "keep_days": output.keep_days,
            "min_free_gb": output.min_free_gb,
        },
        "mqtt": {k: gauges[k] for k in MQTT_GAUGES if k in gauges} or None,
        "models": list(models),
    }


def _disk(folder: Path) -> dict[str, float] | None:
    """Size and free bytes of the file system that holds `folder` (None: not there yet)."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    return {"total": usage.total, "free": usage.free}
