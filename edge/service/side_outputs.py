"""Which side outputs are degraded, and why: one record that `/healthz`, systemd's `STATUS=` and
`/metrics` read.

A side output (the MQTT publisher, its spool, the footage collector, the RTSP server, a camera's
event file or snapshot sink) that fails is disabled or retried by its owner, which reports it here
with one line saying what failed and what to change; the cameras keep running. A degraded side
output leaves the device healthy (`/healthz` still answers 200 while every camera delivers) but
is named in its body and in the STATUS line, and counted in the gauge `side_outputs_degraded`.
"""

from __future__ import annotations

import logging
import threading

from edge.metrics import Metrics

log = logging.getLogger(__name__)


class SideOutputs:
    """Degraded side outputs by name (`mqtt`, `spool`, `collector:cam0`, ...); thread-safe.

    Args:
        metrics: the device's metrics: `side_outputs_degraded` (gauge) and
            `side_output_faults` (counter, each time one becomes degraded).
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._reasons: dict[str, str] = {}
        self._lock = threading.Lock()
        metrics.set("side_outputs_degraded", 0)

    def degrade(self, name: str, reason: str) -> None:
        """Mark `name` degraded; logs one error line when it was not already (or said why else)."""
        with self._lock:
            before = self._reasons.get(name)
            self._reasons[name] = reason
            self._metrics.set("side_outputs_degraded", len(self._reasons))
            if before is None:
                self._metrics.increment("side_output_faults")
        if before != reason:
            log.error("%s degraded: %s (the cameras keep running)", name, reason)

    def recover(self, name: str) -> None:
        """Mark `name` working again (logged once, if it was degraded)."""
        with self._lock:
            was = self._reasons.pop(name, None)
            self._metrics.set("side_outputs_degraded", len(self._reasons))
        if was is not None:
            log.info("%s works again", name)

    def degraded(self) -> dict[str, str]:
        """Each degraded side output and why, by name."""
        with self._lock:
            return dict(sorted(self._reasons.items()))
