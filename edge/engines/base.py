"""The inference-engine interface every backend implements: named tensors in, named tensors out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from edge.engines.precision import precision_of
from edge.errors import EdgeError


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None for a dynamic axis) and dtype of one model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[np.generic]

    def mismatch(self, array: np.ndarray) -> str | None:
        """Describe why `array` cannot feed this tensor, or return None when it can."""
        if array.dtype != self.dtype:
            return f"input '{self.name}' expects dtype {self.dtype}, got {array.dtype}"
        fits = array.ndim == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, array.shape, strict=True)
        )
        if not fits:
            return f"input '{self.name}' expects shape {self.shape_text()}, got {array.shape}"
        return None

    def shape_text(self) -> str:
        """The shape with '?' for dynamic axes, e.g. (?, 128, 128, 1)."""
        return "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ")"


class InferenceEngine(ABC):
    """A loaded model. `run` checks the feeds, then calls the backend."""

    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: dict[str, str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs and return its named outputs.

        Raises:
            EdgeError: an input is missing, unexpected, or of the wrong dtype or shape.
        """
        expected = {t.name: t for t in self.inputs}
        if set(feeds) != set(expected):
            raise EdgeError(
                f"{self.path.name}: inputs {sorted(expected)} expected, got {sorted(feeds)}"
            )
        for name, array in feeds.items():
            problem = expected[name].mismatch(array)
            if problem:
                raise EdgeError(f"{self.path.name}: {problem}")
        return self._infer(feeds)

    @property
    def precision(self) -> str:
        """fp32, fp16 or int8: what runs, as the model's metadata records it."""
        return precision_of(self.metadata)

    @property
    def max_batch(self) -> int | None:
        """The largest batch (axis 0) one `run` accepts, or None when unbounded.

        ONNX Runtime takes any batch a dynamic axis allows; a TensorRT engine only what its
        optimization profile covers, so callers with many items split them by this.
        """
        static = [t.shape[0] for t in self.inputs if t.shape and t.shape[0] is not None]
        return min(static) if static else None

    @property
    def min_batch(self) -> int:
        """The smallest batch one `run` accepts (more than 1 for a fixed-batch engine, e.g. for
        DLA); callers pad up to it."""
        static = [t.shape[0] for t in self.inputs if t.shape and t.shape[0] is not None]
        return max(static, default=1)

    @abstractmethod
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Backend-specific inference on already-checked feeds."""

    def close(self) -> None:  # noqa: B027 - backends without resources need not override
        """Release the backend's resources."""

    def __enter__(self) -> InferenceEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_batched(engine: InferenceEngine, batch: np.ndarray) -> np.ndarray:
    """The engine's one output for a batch of its one input, in as few calls as it allows:
    split by its largest batch, and a fixed-batch engine's short batch padded with copies of
    the last item (their outputs dropped)."""
    largest = engine.max_batch or len(batch)
    smallest = engine.min_batch
    input_name, output_name = engine.inputs[0].name, engine.outputs[0].name
    parts = []
    for start in range(0, len(batch), largest):
        chunk = batch[start : start + largest]
        if len(chunk) < smallest:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], smallest - len(chunk), axis=0)])
        parts.append(engine.run({input_name: chunk})[output_name][: len(batch) - start])
    return np.concatenate(parts)
