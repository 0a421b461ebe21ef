"""Shared session fixture: the test detector and embedder quantized to INT8 in both flavours.

Calibrated on a few frames of the sample video only, to stay fast: the 320×320 detector fails its
accuracy gate this way (it is the suite's failed-gate model), the embedder passes. Import the
fixture into a test module by name, with `detector_320` and `reid_onnx` from `detect_models`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.errors import EdgeError
from export.data import data_file
from export.quantize import Recipe, quantize

FRAMES = 4  # calibration frames
TEST_FRAMES = 4  # held-out frames for the gate


@pytest.fixture(scope="session")
def int8_models(
    detector_320: Path, reid_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Path]:
    """(model, flavour) → the INT8 model, written even when its gate failed; the command's
    error is then kept beside it as `MODEL_FLAVOUR.error`. Flavour "cpu" is for this CPU's
    instruction set; ("embedder", "cpu-avx2") is the cpu flavour for x86 without VNNI."""
    folder = tmp_path_factory.mktemp("int8")
    recipes = {"cpu": Recipe(), "tensorrt": Recipe(flavour="tensorrt")}
    made = [(model, flavour) for model in ("detector", "embedder") for flavour in recipes]
    recipes["cpu-avx2"] = Recipe(isa="avx2")
    models: dict[tuple[str, str], Path] = {}
    for model, flavour in [*made, ("embedder", "cpu-avx2")]:
        fp32 = detector_320 if model == "detector" else reid_onnx
        output = folder / f"{fp32.stem}_{flavour}_int8.onnx"
        try:
            quantize(model, fp32, data_file("vtest.avi"), output, recipes[flavour], FRAMES,
                     TEST_FRAMES, detector_model=detector_320)  # fmt: skip
        except EdgeError as failed:
            (folder / f"{model}_{flavour}.error").write_text(str(failed))
        models[model, flavour] = output
    return models
