"""A side output that cannot stop its camera: its faults are counted, reported as degraded, and
the output is left out for a while and then tried again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge.faults import Backoff, describe, trace_of
from edge.metrics import Metrics
from edge.outputs.base import Sink
from edge.service.side_outputs import SideOutputs
from edge.types import Packet, TrackEvent

log = logging.getLogger(__name__)


class GuardedSink:
    """Wraps one of a camera's side outputs (events, MOT, snapshots, MQTT, footage, track-id
    ledger): an exception from it is counted in the camera's `sink_errors`, reported to
    `side_outputs` as `name` (e.g. `snapshots:cam0`), and the output skips the frames of the
    following `backoff` delay, then gets the next frame again; its first frame that goes
    through marks it working. The camera's other outputs never see the fault.

    Args:
        sink: the side output.
        name: its name in `/healthz` and STATUS.
        side_outputs: the device's record of degraded side outputs.
        metrics: the camera's metrics.
        backoff: how long it is left out after each fault in a row.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        sink: Sink,
        name: str,
        side_outputs: SideOutputs,
        metrics: Metrics,
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink, self.name = sink, name
        self._side_outputs, self._metrics, self._backoff = side_outputs, metrics, backoff
        self._clock = clock
        self._retry_at: float | None = None  # while left out: when it is tried again

    def write(self, packet: Packet, fps: float) -> None:
        """Pass the frame on unless the output is left out; a fault degrades it."""
        if self._retry_at is not None and self._clock() < self._retry_at:
            return
        try:
            self.sink.write(packet, fps)
        except Exception as error:  # any fault of a side output stays here
            self._failed(error)
            return
        if self._retry_at is not None:
            self._retry_at = None
            self._side_outputs.recover(self.name)

    def close(self, final_events: list[TrackEvent]) -> None:
        """Close the output (even if left out: its files still end cleanly)."""
        try:
            self.sink.close(final_events)
        except Exception as error:  # any fault of a side output stays here
            self._failed(error)

    def _failed(self, error: Exception) -> None:
        delay = self._backoff.failed()
        self._retry_at = self._clock() + delay
        self._metrics.increment("sink_errors")
        reason = describe(error)
        log.warning(
            "%s failed: %s; retrying in %.1f s", self.name, reason, delay, exc_info=trace_of(error)
        )
        self._side_outputs.degrade(self.name, reason)
