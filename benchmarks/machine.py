"""What a benchmark ran on, recorded next to every result; GPU load on a Jetson (tegrastats)."""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
import threading
from pathlib import Path

log = logging.getLogger(__name__)
JETSON_MODEL = Path("/proc/device-tree/model")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _command_output(command: list[str]) -> str | None:
    """The command's stripped stdout, or None when it is absent or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("%s failed: %s", command[0], exc)
        return None
    return done.stdout.strip() or None


def gpu_name() -> str | None:
    """The Jetson module's name, else the first NVIDIA GPU nvidia-smi lists, else None."""
    if JETSON_MODEL.is_file():
        return JETSON_MODEL.read_text().strip("\x00\n ")
    names = _command_output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return names.splitlines()[0] if names else None


def tensorrt_version() -> str | None:
    """TensorRT's version when its Python package imports here, else None."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        return None
    version = getattr(tensorrt, "__version__", None)  # the stubs import too, without a version
    return str(version) if version else None


def power_mode() -> str | None:
    """The Jetson power mode (`nvpmodel -q`, e.g. "NV Power Mode: MAXN"), None elsewhere."""
    text = _command_output(["nvpmodel", "-q"])
    return " ".join(text.split()) if text else None


def machine_info() -> dict[str, object]:
    """CPU, usable cores, GPU, OS, Python, inference-runtime versions, Jetson power mode."""
    import onnxruntime

    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "machine": platform.machine(),
        "gpu": gpu_name(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "tensorrt": tensorrt_version(),
        "power_mode": power_mode(),
    }


TEGRA_GPU = re.compile(r"GR3D_FREQ (\d+)%")
TEGRA_RAM = re.compile(r"RAM (\d+)/(\d+)MB")


def parse_tegrastats(line: str) -> dict[str, float]:
    """GPU load (%) and used RAM (MB, shared by CPU and GPU on a Jetson) from one line."""
    values: dict[str, float] = {}
    if match := TEGRA_GPU.search(line):
        values["gpu_percent"] = float(match.group(1))
    if match := TEGRA_RAM.search(line):
        values["ram_used_mb"] = float(match.group(1))
    return values


class Tegrastats:
    """Samples `tegrastats` while running (`with`); does nothing where it is absent."""

    def __init__(self, interval_ms: int = 500) -> None:
        self.interval_ms = interval_ms
        self.samples: list[dict[str, float]] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Tegrastats:
        if shutil.which("tegrastats"):
            self._process = subprocess.Popen(
                ["tegrastats", "--interval", str(self.interval_ms)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            for line in self._process.stdout:
                sample = parse_tegrastats(line)
                if sample:
                    self.samples.append(sample)

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def summary(self) -> dict[str, float] | None:
        """Mean and peak of each sampled value, or None when nothing was sampled."""
        if not self.samples:
            return None
        result: dict[str, float] = {}
        for key in sorted({k for s in self.samples for k in s}):
            values = [s[key] for s in self.samples if key in s]
            result[f"{key}_mean"] = sum(values) / len(values)
            result[f"{key}_max"] = max(values)
        return result
