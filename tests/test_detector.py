"""YOLOv8 detector: numpy pre/post-processing, parity with ultralytics, refusal of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.detections import Detections
from edge.engines import open_engine
from edge.errors import EdgeError
from edge.models.detector import Detector, Letterbox, letterbox, nms
from tests.detect_models import single_output_model

PARITY_FRAMES = 50
PARITY_IOU = 0.95


@pytest.fixture(scope="module")
def detector(detector_onnx: Path) -> Detector:
    # ultralytics' own thresholds, which the parity test compares at (the runtime's default
    # confidence is tuned for tracking: edge.config)
    return Detector(open_engine(detector_onnx), conf=0.25, iou=0.7)


@pytest.mark.parametrize(
    ("frame_hw", "input_hw", "resized_hw", "pad_xy"),
    [
        ((576, 768), (640, 640), (480, 640), (0, 80)),  # the sample video: bars top and bottom
        ((480, 640), (480, 640), (480, 640), (0, 0)),  # camera aspect: no resize, no bars
        ((720, 1280), (640, 640), (360, 640), (0, 140)),
        ((1000, 500), (640, 640), (640, 320), (160, 0)),  # portrait: bars left and right
        ((101, 101), (64, 96), (64, 64), (16, 0)),  # odd padding split as ultralytics does
    ],
)
def test_letterbox_fits_frame_into_input(
    frame_hw: tuple[int, int],
    input_hw: tuple[int, int],
    resized_hw: tuple[int, int],
    pad_xy: tuple[int, int],
) -> None:
    frame = np.full((*frame_hw, 3), 200, np.uint8)
    padded, box = letterbox(frame, input_hw)
    assert padded.shape == (*input_hw, 3)
    assert (box.pad_x, box.pad_y) == pad_xy
    assert box.gain_y * frame_hw[0] == pytest.approx(resized_hw[0])
    assert box.gain_x * frame_hw[1] == pytest.approx(resized_hw[1])
    x, y = pad_xy
    assert (padded[y : y + resized_hw[0], x : x + resized_hw[1]] == 200).all()
    assert (padded == 114).sum() == 3 * (input_hw[0] * input_hw[1] - resized_hw[0] * resized_hw[1])


@pytest.mark.parametrize(
    ("boxes", "scores", "iou", "kept"),
    [
        ([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], [0.9, 0.8, 0.7], 0.5, [0, 2]),
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.8, 0.9], 0.5, [1]),  # highest score wins
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.5, [0, 1]),  # IoU 1/3: both kept
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.3, [0]),
        ([], [], 0.5, []),
    ],
)
def test_nms_keeps_best_of_overlapping_boxes(
    boxes: list[list[float]], scores: list[float], iou: float, kept: list[int]
) -> None:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    assert nms(xyxy, np.array(scores, np.float32), iou, 300).tolist() == kept


def _head(rows: list[tuple[float, float, float, float, float, float]]) -> np.ndarray:
    """A raw (6, N) head for 2 classes from (cx, cy, w, h, score0, score1) rows."""
    return np.array(rows, np.float32).T.copy()


def test_postprocess_is_class_aware_and_maps_back(detector: Detector) -> None:
    raw = _head(
        [
            (320, 320, 100, 200, 0.9, 0.1),  # class 0
            (322, 320, 100, 200, 0.1, 0.8),  # same place, class 1: kept (other class)
            (324, 320, 100, 200, 0.7, 0.1),  # duplicate of the first: suppressed
            (100, 100, 20, 20, 0.2, 0.1),  # below conf 0.25
        ]
    )
    found = detector.postprocess(raw, Letterbox(640 / 768, 480 / 576, 0, 80), (576, 768))
    assert found.class_id.tolist() == [0, 1]
    assert found.confidence.tolist() == pytest.approx([0.9, 0.8])
    # Centre (320, 320) in the input is (384, 288) in the frame; size scales by 768/640.
    assert found.xyxy[0].tolist() == pytest.approx([324, 168, 444, 408])


def test_class_filter_and_max_det(detector_onnx: Path) -> None:
    rows = [(50.0 * i + 25, 300, 40, 80, 0.5 + i / 100, 0.3) for i in range(10)]
    raw = _head([*rows, (600, 600, 30, 30, 0.1, 0.95)])
    box = Letterbox(1.0, 1.0, 0, 0)
    with open_engine(detector_onnx) as engine:
        falls = Detector(engine, classes=["Fall"]).postprocess(raw, box, (640, 640))
        top3 = Detector(engine, max_det=3).postprocess(raw, box, (640, 640))
    assert falls.class_id.tolist() == [1]
    assert top3.confidence.tolist() == pytest.approx([0.95, 0.59, 0.58])


def _match(ours: Detections, theirs: Detections) -> int:
    """How many of `theirs` boxes one of `ours` matches (same class, IoU >= PARITY_IOU), 1:1."""
    used: set[int] = set()
    matched = 0
    for box, cls in zip(theirs.xyxy, theirs.class_id, strict=True):
        lt = np.maximum(box[:2], ours.xyxy[:, :2])
        rb = np.minimum(box[2:], ours.xyxy[:, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        areas = np.prod(ours.xyxy[:, 2:] - ours.xyxy[:, :2], axis=1)
        iou = inter / (np.prod(box[2:] - box[:2]) + areas - inter)
        iou[(ours.class_id != cls) | np.isin(np.arange(len(ours)), list(used))] = 0
        if len(iou) and iou.max() >= PARITY_IOU:
            used.add(int(iou.argmax()))
            matched += 1
    return matched


def test_parity_with_ultralytics_on_sample_video(
    detector: Detector,
    detector_onnx: Path,
    vtest_frames: list[np.ndarray],
) -> None:
    """Same ONNX model, 640×640 input, conf 0.25, IoU 0.7, all classes, on 50 real frames."""
    from export.yolo import load_yolo

    reference = load_yolo(detector_onnx)
    theirs_total = ours_total = matched = 0
    for frame in vtest_frames[:PARITY_FRAMES]:
        # rect=False: square letterbox, as our fixed-size model (ultralytics takes its dynamic
        # batch for a dynamic size)
        result = reference.predict(frame, imgsz=640, conf=0.25, iou=0.7, rect=False, verbose=False)[
            0
        ]
        theirs = Detections(
            result.boxes.xyxy.numpy().astype(np.float32),
            result.boxes.conf.numpy().astype(np.float32),
            result.boxes.cls.numpy().astype(np.int64),
        )
        ours = detector(frame)
        theirs_total, ours_total = theirs_total + len(theirs), ours_total + len(ours)
        matched += _match(ours, theirs)
    assert theirs_total > 5 * PARITY_FRAMES  # the walkers are found: the comparison means something
    assert matched / theirs_total >= 0.99
    assert (ours_total - matched) / theirs_total <= 0.01


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((0, 0, 3), np.uint8), "empty frame"),
        (None, "empty frame"),
        (np.zeros((48, 64), np.uint8), r"not a BGR uint8 image \(H, W, 3\)"),
        (np.zeros((48, 64, 3), np.float32), "not a BGR uint8 image"),
    ],
)
def test_bad_frame_is_refused(detector: Detector, frame: np.ndarray, message: str) -> None:
    with pytest.raises(EdgeError, match=message):
        detector(frame)


def test_unknown_class_name_is_refused(detector_onnx: Path) -> None:
    with (
        open_engine(detector_onnx) as engine,
        pytest.raises(EdgeError, match=r"class 'person' is not in .*classes are Normal, Fall"),
    ):
        Detector(engine, classes=["Normal", "person"])


@pytest.mark.parametrize(
    ("output_shape", "metadata", "message"),
    [
        ([1, 3], {"names": "{0: 'a', 1: 'b'}"}, r"outputs \(1, 3\), not a YOLOv8 detection head"),
        ([1, 3], {"class_names": json.dumps(["a"])}, r"head \(1, 5, 84\) for 1 classes"),
        ([1, 3], {"task": "classify", "names": "{0: 'a'}"}, "'classify' model, not 'detect'"),
        ([1, 3], {}, "no class names in its metadata"),
    ],
)
def test_model_that_is_not_a_yolov8_detector_is_refused(
    tmp_path: Path, output_shape: list[int], metadata: dict[str, str], message: str
) -> None:
    path = single_output_model(tmp_path / "other.onnx", output_shape, metadata, [1, 3, 64, 64])
    with open_engine(path) as engine, pytest.raises(EdgeError, match=message):
        Detector(engine)


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _dynamic_reshape_model(path: Path) -> Path:
    """A model whose output (1, 3·h, w) has only dynamic axes, so loading cannot judge it."""
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Slice", ["shape", "three", "four"], ["width"]),
        helper.make_node("Concat", ["one_any", "width"], ["target"], axis=0),
        helper.make_node("Reshape", ["images", "target"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic_reshape",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)],
        initializer=[_ints("three", [3]), _ints("four", [4]), _ints("one_any", [1, -1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="class_names", value=json.dumps(["a", "b"]))
    onnx.save(model, str(path))
    return path


def test_dynamic_output_unlike_a_head_is_refused_when_run(tmp_path: Path) -> None:
    path = _dynamic_reshape_model(tmp_path / "dyn.onnx")
    with open_engine(path) as engine:
        detector = Detector(engine, input_hw=(64, 64))  # the dynamic output shape cannot tell
        with pytest.raises(EdgeError, match=r"gave output \(192, 64\), not a YOLOv8 detection"):
            detector(np.zeros((64, 64, 3), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"conf": 1.5}, "conf must be within"), ({"iou": -0.1}, "iou"), ({"max_det": 0}, "max_det")],
)
def test_bad_thresholds_are_refused(
    detector_onnx: Path,
    kwargs: dict[str, float],
    message: str,
) -> None:
    with open_engine(detector_onnx) as engine, pytest.raises(ValueError, match=message):
        Detector(engine, **kwargs)  # type: ignore[arg-type]
