"""Detections as a dataclass of parallel arrays (one row per box), pure numpy, no frames inside."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Detections:
    """Boxes found in one frame.

    Attributes:
        xyxy: (n, 4) float32 corners in frame pixels: left, top, right, bottom.
        confidence: (n,) float32 scores.
        class_id: (n,) int64 class indices into the model's class names.
        data: extra per-box arrays of length n, e.g. `"embedding"` (n, d) from the ReID embedder.
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    data: dict[str, npt.NDArray[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (n, 4), got {self.xyxy.shape}")
        for name, array in (("confidence", self.confidence), ("class_id", self.class_id)):
            if array.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) like xyxy, got {array.shape}")
        for key, array in self.data.items():
            if len(array) != n:
                raise ValueError(f"data['{key}'] must have {n} rows like xyxy, got {len(array)}")

    @classmethod
    def empty(cls) -> Detections:
        """No boxes."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(
        self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | slice
    ) -> Detections:
        """A new `Detections` with the rows picked by a boolean mask, indices or a slice."""
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            {key: array[index] for key, array in self.data.items()},
        )

    def with_data(self, **arrays: npt.NDArray[Any]) -> Detections:
        """A copy with more per-box arrays in `data`."""
        return Detections(self.xyxy, self.confidence, self.class_id, {**self.data, **arrays})


def clip_boxes(xyxy: FloatArray, frame_hw: tuple[int, int]) -> FloatArray:
    """Boxes (n, 4) clipped to a frame of this height and width, as a new array."""
    height, width = frame_hw
    clipped: FloatArray = np.clip(xyxy, 0, np.array([width, height, width, height], xyxy.dtype))
    return clipped


def pixel_box(
    xyxy: FloatArray | tuple[float, float, float, float], frame_hw: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Whole-pixel corners of one box clipped to the frame; empty (right <= left or bottom <=
    top) when the box lies outside it."""
    box = clip_boxes(np.asarray(xyxy, np.float32).reshape(1, 4), frame_hw)[0]
    left, top, right, bottom = (int(v) for v in box)
    return left, top, right, bottom


def crop_box(
    image: npt.NDArray[Any], xyxy: FloatArray | tuple[float, float, float, float]
) -> npt.NDArray[Any] | None:
    """The part of the image inside the box (clipped to it), or None when nothing is inside."""
    left, top, right, bottom = pixel_box(xyxy, image.shape[:2])
    if right <= left or bottom <= top:
        return None
    return image[top:bottom, left:right]
