"""Runtime metrics: per-stage latency (running percentiles and histograms), counters, gauges.

One `Metrics` object is shared by the pipeline's threads (every method takes a lock). Readers
(logs, the summary, the Prometheus endpoint) take a `snapshot()`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 2048  # observations kept per stage for percentiles
# Histogram bucket upper bounds in seconds (Prometheus convention), 1 ms .. 5 s.
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class StageStats:
    """Latency of one stage: recent window for percentiles, cumulative histogram since start."""

    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0

    def add(self, seconds: float) -> None:
        """Record one observation."""
        self.recent.append(seconds)
        self.count += 1
        self.total += seconds
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.bucket_counts[index] += 1
                break


@dataclass(frozen=True)
class StageSnapshot:
    """Copy of one stage's numbers; percentiles in milliseconds over the recent window."""

    count: int
    total_s: float
    cumulative_buckets: tuple[int, ...]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float


@dataclass(frozen=True)
class Snapshot:
    """Everything at one instant."""

    stages: dict[str, StageSnapshot]
    counters: dict[str, int]
    gauges: dict[str, float]
    uptime_s: float


class Metrics:
    """Thread-safe store of stage timings, counters and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, StageStats] = {}
        self._counters: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        self._started = time.monotonic()

    def observe(self, stage: str, seconds: float) -> None:
        """Record how long one frame spent in `stage`."""
        with self._lock:
            self._stages.setdefault(stage, StageStats()).add(seconds)

    def increment(self, counter: str, amount: int = 1) -> None:
        """Add to a counter (frames, dropped frames, reconnects...)."""
        with self._lock:
            self._counters[counter] = self._counters.get(counter, 0) + amount

    def set(self, gauge: str, value: float) -> None:
        """Set a gauge (FPS, active tracks...)."""
        with self._lock:
            self._gauges[gauge] = value

    def snapshot(self) -> Snapshot:
        """A consistent copy of all metrics."""
        with self._lock:
            stages = {name: _stage_snapshot(stats) for name, stats in self._stages.items()}
            return Snapshot(
                stages, dict(self._counters), dict(self._gauges), time.monotonic() - self._started
            )


def _stage_snapshot(stats: StageStats) -> StageSnapshot:
    recent = np.array(stats.recent) * 1000 if stats.recent else np.zeros(1)
    p50, p95, p99 = (float(v) for v in np.percentile(recent, [50, 95, 99]))
    return StageSnapshot(
        count=stats.count,
        total_s=stats.total,
        cumulative_buckets=tuple(int(c) for c in np.cumsum(stats.bucket_counts)),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=float(recent.mean()),
    )
