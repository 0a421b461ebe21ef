"""Faults the runtime survives: exponential backoff between attempts at something that keeps
failing (a camera's stage, a side output, the shared detection), and how a fault is logged."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from edge.errors import EdgeError


def describe(error: BaseException) -> str:
    """An error in one line: an EdgeError says what to fix; anything else is named by type.

    Every run of whitespace becomes one space: OpenCV's and ONNX Runtime's messages span lines,
    which would break a journal line, the `/healthz` body and the STATUS line apart."""
    text = str(error) if isinstance(error, EdgeError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def trace_of(error: BaseException) -> BaseException | None:
    """What to log with an error (`exc_info`): an EdgeError is a problem the user can fix, said
    in one line; anything else is a bug and keeps its traceback."""
    return None if isinstance(error, EdgeError) else error


class Backoff:
    """Delays that double from `initial_s` up to `max_s` with each failure in a row.

    A run of failures ends at a success (`succeeded()`), or once the thing has gone
    `reset_after_s` after its last wait (default `max_s`) without failing: the next failure then
    waits `initial_s` again. Thread-safe.

    Args:
        initial_s: the first failure's delay.
        max_s: the longest delay.
        reset_after_s: seconds of working that end a run of failures (None: `max_s`).
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        reset_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_s, self.max_s = initial_s, max(max_s, initial_s)
        self.reset_after_s = self.max_s if reset_after_s is None else reset_after_s
        self.failures = 0  # failures in the current run
        self._clock = clock
        self._resumed = -float("inf")  # when the last wait ended
        self._failed_at = -float("inf")  # when the last failure was counted
        self._lock = threading.Lock()

    def failed(self) -> float:
        """Count a failure; return how long to wait before the next attempt."""
        with self._lock:
            now = self._clock()
            if now - self._resumed > self.reset_after_s:
                self.failures = 0  # it worked long enough since the last wait
            self.failures += 1
            doublings = min(self.failures - 1, 60)  # a float overflows near 2**1024
            delay = min(self.initial_s * 2**doublings, self.max_s)
            self._resumed, self._failed_at = now + delay, now
            return delay

    def succeeded(self, started: float | None = None) -> None:
        """Count a success: the next failure is the first of a new run.

        Args:
            started: when (`clock` seconds) the attempt that succeeded began, if known; one
                begun before the last failure proves nothing about it, and is not counted.
        """
        with self._lock:
            if started is None or started > self._failed_at:
                self.failures = 0
