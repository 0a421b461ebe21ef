"""What every benchmark command writes: JSON (with the machine), a Markdown table, PNG plots.

A `Report` is saved after each part of a benchmark, so when a later part fails (a missing model,
a bad file) the results measured so far stay on disk.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import machine_info
from edge import paths
from edge.errors import EdgeError
from edge.files import writable_dir

log = logging.getLogger(__name__)
OUTPUT = paths.ROOT / "bench"


def stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and mean of timings in milliseconds."""
    if len(samples_ms) == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    p50, p95, p99 = (float(v) for v in np.percentile(samples_ms, [50, 95, 99]))
    return {"p50": p50, "p95": p95, "p99": p99, "mean": float(np.mean(samples_ms))}


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The results folder and file name every command takes."""
    parser.add_argument("--output", type=Path, default=OUTPUT, help="results folder")
    parser.add_argument("--name", default=name, help="results file name (NAME.json)")


def arguments(args: argparse.Namespace) -> dict[str, Any]:
    """A command's arguments as JSON-ready config (paths as text)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}


def require_model(stage: str, model: str | Path) -> None:
    """Refuse a missing model file with one line that names the stage it is for."""
    if not Path(model).is_file():
        raise EdgeError(f"{stage} model not found: {model} (run `make models`, or pass its path)")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work on a shared machine skews timings)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats get 3 significant decimals."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Report:
    """One command's results under `output/NAME.{json,md}`, rewritten as parts complete."""

    def __init__(self, name: str, output: Path, config: Mapping[str, Any]) -> None:
        self.name = name
        self.output = writable_dir(output)
        self.data: dict[str, Any] = {
            "benchmark": name,
            "machine": machine_info(),
            "load_average": load_average(),
            "config": dict(config),
            "complete": False,
        }
        self.save()

    @property
    def json_path(self) -> Path:
        """Where the JSON goes."""
        return self.output / f"{self.name}.json"

    def add(self, key: str, value: Any) -> None:
        """Record one part of the results and save at once."""
        self.data[key] = value
        self.save()

    def save(self, markdown: str | None = None) -> None:
        """Write the JSON (and the Markdown, when given)."""
        self.json_path.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        if markdown is not None:
            (self.output / f"{self.name}.md").write_text(markdown)

    def finish(self, markdown: str) -> None:
        """Mark the results complete, write JSON and Markdown, and print the Markdown."""
        self.data["complete"] = True
        self.data["load_average_end"] = load_average()
        self.save(markdown)
        log.info("wrote %s and %s", self.json_path, self.output / f"{self.name}.md")
        print(markdown)


def machine_line(data: Mapping[str, Any]) -> str:
    """One line naming the machine and the load it ran under, for Markdown headers."""
    machine = data["machine"]
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU"
    load = data.get("load_average")
    load_text = f"; load average at start {load[0]:.2f}" if load else ""
    return (
        f"Machine: {machine['cpu']}, {machine['cores']} cores{gpu}; ONNX Runtime "
        f"{machine['onnxruntime']}, TensorRT {machine.get('tensorrt') or 'absent'}{load_text}."
    )


def plot_distributions(samples: Mapping[str, Sequence[float]], title: str, path: Path) -> None:
    """Box plot of each stage's latencies (ms), one row per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, values in samples.items() if len(values)]
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    axes.boxplot([samples[n] for n in names], vert=False, whis=(1, 99), showfliers=False)
    axes.set_yticks(range(1, len(names) + 1), names)
    axes.set_xlabel("milliseconds (whiskers: p1..p99)")
    axes.set_title(title)
    axes.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_series(panels: Mapping[str, Sequence[float]], title: str, path: Path) -> None:
    """One panel per named series of per-item values (e.g. ΔPSNR per image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), squeeze=False)
    for axis, (name, values) in zip(axes[:, 0], panels.items(), strict=True):
        axis.plot(range(len(values)), values, "o", markersize=3)
        axis.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("item")
    axes[0, 0].set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
