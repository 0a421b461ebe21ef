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
