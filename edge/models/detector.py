"""YOLOv8 detection on any inference engine: letterbox, decode, class-aware NMS; numpy and OpenCV.

Pre- and post-processing follow ultralytics' own (LetterBox, non_max_suppression, scale_boxes) so
that boxes agree with `ultralytics predict` on the same model, input size and thresholds.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.config import DetectorConfig
from edge.detections import Detections, FloatArray, clip_boxes
from edge.engines import InferenceEngine
from edge.engines.base import run_batched
from edge.errors import EdgeError

log = logging.getLogger(__name__)

PAD_VALUE = 114  # ultralytics' letterbox grey
MAX_CANDIDATES = 30000  # boxes kept for NMS after sorting, as ultralytics does
CLASS_OFFSET = 7680.0  # shifts each class's boxes apart so one NMS pass is class-aware
EXPORT_HINT = "export it with `python -m export yolo`"
DEFAULTS = DetectorConfig()  # thresholds as `edge run` uses them


@dataclass(frozen=True)
class YoloModelInfo:
    """What the detector needs to know about a YOLOv8 detection model (from ONNX metadata)."""

    names: tuple[str, ...]
    input_hw: tuple[int, int]
    stride: int


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the model input: scale, then padding on the left and top."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int


def _class_names(metadata: dict[str, str], model: str) -> tuple[str, ...]:
    """Class names from our JSON `class_names` key, or from ultralytics' own `names` dict."""
    if "class_names" in metadata:
        return tuple(json.loads(metadata["class_names"]))
    if "names" in metadata:
        names = ast.literal_eval(metadata["names"])
        return tuple(names[i] for i in sorted(names))
    raise EdgeError(f"{model} has no class names in its metadata: {EXPORT_HINT}")


def read_model_info(
    engine: InferenceEngine, input_hw: tuple[int, int] | None = None
) -> YoloModelInfo:
    """Check that an engine holds a YOLOv8 detection model and read its classes and input size.

    Args:
        engine: the loaded model.
        input_hw: input height and width for a model with a dynamic input size; None takes the
            size stored at export.

    Raises:
        EdgeError: the model is not a YOLOv8 detection model, or its output is not a YOLOv8 head.
    """
    model, meta = engine.path.name, engine.metadata
    task = meta.get("task", "detect")
    if task != "detect":
        raise EdgeError(f"{model} is a YOLOv8 '{task}' model, not 'detect': {EXPORT_HINT}")
    names = _class_names(meta, model)
    stride = int(meta.get("stride", "32"))
    if len(engine.inputs) != 1 or len(engine.inputs[0].shape) != 4:
        shapes = ", ".join(t.shape_text() for t in engine.inputs)
        raise EdgeError(f"{model} has inputs {shapes}, not one (1, 3, H, W) image: {EXPORT_HINT}")
    static_hw = engine.inputs[0].shape[2:]
    if static_hw[0] is not None and static_hw[1] is not None:
        stored_hw = (static_hw[0], static_hw[1])
    else:
        stored = json.loads(meta.get("input_size", meta.get("imgsz", "[640, 640]")))
        stored_hw = (int(stored[0]), int(stored[1]))
    hw = input_hw or stored_hw
    if static_hw != (None, None) and hw != stored_hw:
        raise EdgeError(f"{model} has a fixed input size {stored_hw}, not {hw}: re-export it")
    if hw[0] % stride or hw[1] % stride:
        raise EdgeError(f"input size {hw} of {model} is not a multiple of its stride {stride}")
    anchors = sum((hw[0] // s) * (hw[1] // s) for s in (stride // 4, stride // 2, stride))
    head = engine.outputs[0]
    looks_like_head = (
        len(engine.outputs) == 1
        and len(head.shape) == 3
        and head.shape[0] in (None, 1)
        and head.shape[1] in (None, 4 + len(names))
        and head.shape[2] in (None, anchors)
    )
    if not looks_like_head:
        raise EdgeError(
            f"{model} outputs {', '.join(t.shape_text() for t in engine.outputs)}, not a YOLOv8 "
            f"detection head (1, {4 + len(names)}, {anchors}) for {len(names)} classes: "
            f"{EXPORT_HINT}"
        )
    return YoloModelInfo(names, hw, stride)


def letterbox(frame: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize a frame keeping its aspect ratio and pad it, centred, to the model's input size."""
    h, w = frame.shape[:2]
    gain = min(input_hw[0] / h, input_hw[1] / w)
    new_w, new_h = max(round(w * gain), 1), max(round(h * gain), 1)
    resized: np.ndarray = frame
    if (new_w, new_h) != (w, h):
        resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (input_hw[1] - new_w) / 2, (input_hw[0] - new_h) / 2
    # The ±0.1 puts an odd pixel of padding on the bottom/right, as ultralytics does.
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    padded: np.ndarray = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return padded, Letterbox(new_w / w, new_h / h, left, top)


def box_iou(box: FloatArray, boxes: FloatArray) -> FloatArray:
    """IoU of one xyxy box with each of (n, 4) boxes."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou: FloatArray = inter / (area + areas - inter + 1e-9)
    return iou


def nms(
    xyxy: FloatArray, scores: FloatArray, iou_threshold: float, max_keep: int
) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression: indices of kept boxes, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        best, order = order[0], order[1:]
        keep.append(int(best))
        order = order[box_iou(xyxy[best], xyxy[order]) <= iou_threshold]
    return np.array(keep, dtype=np.intp)


class Detector:
    """YOLOv8 detector over an inference engine.

    Args:
        engine: a YOLOv8 detection model exported by `python -m export yolo` (or ultralytics).
        conf: minimum class confidence of a box.
        iou: IoU above which NMS drops the lower-scored box of the same class.
        classes: class names to keep (None: all).
        max_det: most boxes returned per frame.
        input_hw: input size for a model with a dynamic input (None: the size stored at export).

    Raises:
        EdgeError: the model is not a YOLOv8 detection model, or a class name is unknown.
        ValueError: a threshold is out of range.
    """

    def __init__(
        self,
        engine: InferenceEngine,
        conf: float = DEFAULTS.confidence,
        iou: float = DEFAULTS.iou,
        classes: Sequence[str] | None = None,
        max_det: int = DEFAULTS.max_detections,
        input_hw: tuple[int, int] | None = None,
    ) -> None:
        for name, value in (("conf", conf), ("iou", iou)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if max_det < 1:
            raise ValueError(f"max_det must be at least 1, got {max_det}")
        self.engine = engine
        self.info = read_model_info(engine, input_hw)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.class_filter: npt.NDArray[np.int64] | None = None
        if classes is not None:
            unknown = [c for c in classes if c not in self.info.names]
            if unknown:
                raise EdgeError(
                    f"class {', '.join(map(repr, unknown))} is not in {engine.path.name}, whose "
                    f"classes are {', '.join(self.info.names)}: pick from those"
                )
            self.class_filter = np.array([self.info.names.index(c) for c in classes], np.int64)
        self._input_name = engine.inputs[0].name
        self._output_name = engine.outputs[0].name

    @property
    def names(self) -> tuple[str, ...]:
        """The model's class names, indexed by class id."""
        return self.info.names

    def preprocess(self, frame: npt.NDArray[np.uint8]) -> tuple[FloatArray, Letterbox]:
        """BGR frame (H, W, 3) uint8 to the model's (1, 3, h, w) float32 RGB input in [0, 1].

        Raises:
            EdgeError: the frame is empty or not a 3-channel image.
        """
        if frame is None or frame.size == 0:
            raise EdgeError("empty frame: the source gave no image (check the video or camera)")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise EdgeError(
                f"frame of shape {frame.shape} and dtype {frame.dtype} is not a BGR uint8 image "
                "(H, W, 3): convert it before detection"
            )
        padded, box = letterbox(frame, self.info.input_hw)
        chw = padded[:, :, ::-1].transpose(2, 0, 1)
        tensor: FloatArray = np.ascontiguousarray(chw, dtype=np.float32)[None] / np.float32(255)
        return tensor, box

    def infer(self, tensor: FloatArray) -> FloatArray:
        """Run the engine on one preprocessed frame; returns the raw head (4 + classes, anchors).

        Raises:
            EdgeError: a model with dynamic output axes gave an output unlike a YOLOv8 head.
        """
        return self.infer_batch(tensor)[0]

    def infer_batch(self, tensors: FloatArray) -> FloatArray:
        """Run the engine on (n, 3, h, w) preprocessed frames (several cameras') in as few calls
        as it allows (one for a dynamic batch); returns (n, 4 + classes, anchors).

        Raises:
            EdgeError: a model with dynamic output axes gave an output unlike a YOLOv8 head.
        """
        raw: FloatArray = run_batched(self.engine, tensors)
        if raw.ndim != 3 or raw.shape[1] != 4 + len(self.names):
            raise EdgeError(
                f"{self.engine.path.name} gave output {raw.shape[1:]}, not a YOLOv8 detection "
                f"head (4 + {len(self.names)} classes, anchors): {EXPORT_HINT}"
            )
        return raw

    def postprocess(self, raw: FloatArray, box: Letterbox, frame_hw: tuple[int, int]) -> Detections:
        """Decode the head, filter, NMS, and map boxes back to frame pixels."""
        scores = raw[4:]
        class_id = scores.argmax(axis=0)
        confidence = scores[class_id, np.arange(scores.shape[1])]
        keep = confidence > self.conf
        if self.class_filter is not None:
            keep &= np.isin(class_id, self.class_filter)
        candidates = np.flatnonzero(keep)
        if candidates.size > MAX_CANDIDATES:
            candidates = candidates[np.argsort(-confidence[candidates])[:MAX_CANDIDATES]]
        cx, cy, w, h = raw[:4, candidates]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        confidence, class_id = confidence[candidates], class_id[candidates]
        kept = nms(xyxy + (class_id * CLASS_OFFSET)[:, None], confidence, self.iou, self.max_det)
        xyxy = xyxy[kept].reshape(-1, 4)
        xyxy -= np.array([box.pad_x, box.pad_y, box.pad_x, box.pad_y], np.float32)
        xyxy /= np.array([box.gain_x, box.gain_y, box.gain_x, box.gain_y], np.float32)
        return Detections(
            clip_boxes(xyxy.astype(np.float32), frame_hw),
            confidence[kept].astype(np.float32),
            class_id[kept].astype(np.int64),
        )

    def __call__(self, frame: npt.NDArray[np.uint8]) -> Detections:
        """Detect objects in one BGR frame."""
        tensor, box = self.preprocess(frame)
        return self.postprocess(self.infer(tensor), box, (frame.shape[0], frame.shape[1]))
