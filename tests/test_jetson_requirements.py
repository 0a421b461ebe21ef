"""The Jetson commands of README and docs/tensorrt.md work with requirements-jetson.txt alone.

A fresh virtualenv gets only requirements-jetson.txt (pip from PyPI; about 2 minutes here, as
PyGObject builds from source on x86, hence `slow`) and runs each of those Jetson commands as
far as `--help` and its first real step. pycuda is left out: it compiles against CUDA, which
this machine lacks (on the Jetson it compiles against JetPack's), so the TensorRT commands stop
at their first step with the one-line error for a missing pycuda; TensorRT comes with JetPack.
No training package (TensorFlow, ultralytics, torch, scikit-image) may be needed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import detect_models

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow
detector_320 = detect_models.detector_320


@pytest.fixture(scope="module")
def jetson_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtualenv holding requirements-jetson.txt without pycuda."""
    folder = tmp_path_factory.mktemp("jetson")
    lines = (ROOT / "requirements-jetson.txt").read_text().splitlines()
    kept = [line for line in lines if not line.startswith("pycuda")]
    requirements = folder / "requirements.txt"
    requirements.write_text(
        "\n".join(kept).replace("-r requirements.txt", f"-r {ROOT / 'requirements.txt'}")
    )
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    python = folder / "venv" / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)]
    subprocess.run(pip, check=True, timeout=900)
    return python


def run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_no_training_package_is_installed(jetson_python: Path) -> None:
    for package in ("torch", "tensorflow", "keras", "ultralytics", "skimage"):
        found = run(
            jetson_python, "-c", f"import importlib.util as u; print(u.find_spec({package!r}))"
        )
        assert found.stdout.strip() == "None", package


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "export", "--help"],
        ["-m", "export", "quantize", "--help"],
        ["-m", "edge", "engines", "--help"],
        ["-m", "edge", "colorize", "--help"],
        ["-m", "edge", "run", "--help"],
        ["-m", "benchmarks.colorize", "--help"],
    ],
)
def test_readme_commands_start(jetson_python: Path, command: list[str]) -> None:
    result = run(jetson_python, *command)
    assert result.returncode == 0, result.stderr
    assert "needs " not in result.stdout, result.stdout  # no command listed as unavailable


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input", "none.onnx"], r"export quantize: error: detector model not found: .*"),
        # with a model, the footage is read first (counting its frames): `make int8`'s path
        (["--calib", "x.mp4"], r"export quantize: error: video not found: x\.mp4"),
    ],
)
def test_export_quantize_reaches_its_first_step(
    jetson_python: Path, detector_320: Path, arguments: list[str], message: str
) -> None:
    command = ["-m", "export", "quantize", "--model", "detector", "--input", str(detector_320)]
    result = run(jetson_python, *command, *arguments)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert re.fullmatch(message, result.stderr.strip().splitlines()[-1]), result.stderr


@pytest.mark.parametrize("command", [["engines"], ["engines", "--int8"]])
def test_tensorrt_commands_stop_at_the_missing_pycuda_with_one_line(
    jetson_python: Path, command: list[str]
) -> None:
    result = run(jetson_python, "-m", "edge", *command)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"edge {command[0]}: error: pycuda is not installed: on a Jetson TensorRT comes with "
        "JetPack (make the virtualenv with --system-site-packages) and pycuda from `pip install "
        "-r requirements-jetson.txt` (with /usr/local/cuda/bin on PATH)"
    )
