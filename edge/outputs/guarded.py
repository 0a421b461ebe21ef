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


class Guard:
    """What one side output does on a fault: it is counted in the camera's `sink_errors`,
    reported to `side_outputs` as `name` (e.g. `snapshots:cam0`), and left out for the following
    `backoff` delay, then tried again; its first attempt that goes through marks it working.

    A new fault is logged once, by `side_outputs` (one line; a bug's traceback only at debug
    level, `edge -v`); the same fault again is one line with its next delay.

    Args:
        name: the output's name in `/healthz` and STATUS.
        side_outputs: the device's record of degraded side outputs.
        metrics: the camera's metrics.
        backoff: how long it is left out after each fault in a row.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        name: str,
        side_outputs: SideOutputs,
        metrics: Metrics,
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._side_outputs, self._metrics, self._backoff = side_outputs, metrics, backoff
        self._clock = clock
        self._retry_at: float | None = None  # while left out: when it is tried again

    def attempt(self, action: Callable[[], None]) -> None:
        """Run `action` unless the output is left out; a fault degrades it, a success after
        one marks it working."""
        if self._retry_at is not None and self._clock() < self._retry_at:
            return
        try:
            action()
        except Exception as error:  # any fault of a side output stays here
            self.failed(error)
            return
        if self._retry_at is not None:
            self._retry_at = None
            self._side_outputs.recover(self.name)

    def failed(self, error: Exception) -> None:
        """Count, report and log a fault; leave the output out for the next delay."""
        delay = self._backoff.failed()
        self._retry_at = self._clock() + delay
        self._metrics.increment("sink_errors")
        reason = describe(error)
        if self._side_outputs.degraded().get(self.name) == reason:
            log.warning("%s failed again: %s; retrying in %.1f s", self.name, reason, delay)
        else:  # `degrade` logs the one line
            log.debug("%s failed", self.name, exc_info=trace_of(error))
        self._side_outputs.degrade(self.name, reason)


class GuardedSink:
    """Wraps one of a camera's side outputs (events, MOT, snapshots, MQTT, footage, track-id
    ledger) in a `Guard`: the camera's other outputs never see its faults.

    Args:
        sink: the side output.
        guard: what a fault of it does (its name in `/healthz` and STATUS, its backoff).
    """

    def __init__(self, sink: Sink, guard: Guard) -> None:
        self.sink, self._guard = sink, guard
        self.name = guard.name

    def write(self, packet: Packet, fps: float) -> None:
        """Pass the frame on unless the output is left out; a fault degrades it."""
        self._guard.attempt(lambda: self.sink.write(packet, fps))

    def close(self, final_events: list[TrackEvent]) -> None:
        """Close the output (even if left out: its files still end cleanly)."""
        try:
            self.sink.close(final_events)
        except Exception as error:  # any fault of a side output stays here
            self._guard.failed(error)
