"""Optical flow on skipped frames: boxes follow real image content, and the tracker uses it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from edge.detections import Detections
from edge.metrics import Metrics
from edge.models.flow import box_motions, gray
from edge.models.tracker import Tracker
from edge.pipeline import Pipeline
from edge.types import Frame, Packet


def _moved(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image with its content moved by whole pixels (edges wrap)."""
    return np.roll(image, (dy, dx), axis=(0, 1))


def test_boxes_on_real_footage_move_as_the_pixels_did(vtest_frames: list[np.ndarray]) -> None:
    before = gray(vtest_frames[0])
    boxes = np.array([[300, 200, 360, 330], [500, 150, 560, 280]], np.float32)
    for dx, dy in [(3, 0), (-4, 2), (0, -5)]:
        motions = box_motions(before, _moved(before, dx, dy), boxes)
        assert motions == pytest.approx(np.array([[dx, dy, 1.0], [dx, dy, 1.0]]), abs=0.3)


def test_a_box_coming_nearer_grows(vtest_frames: list[np.ndarray]) -> None:
    """The picture enlarged 6% about the box's centre: no shift, scale 1.06."""
    before = gray(vtest_frames[0])
    centre = (330.0, 265.0)
    zoom = cv2.getRotationMatrix2D(centre, 0.0, 1.06)
    after = cv2.warpAffine(before, zoom, before.shape[::-1])
    ((dx, dy, scale),) = box_motions(before, after, np.array([[300, 200, 360, 330]], np.float32))
    assert (dx, dy) == pytest.approx((0.0, 0.0), abs=1.0)  # its edges move 2-4 px apart
    assert scale == pytest.approx(1.06, abs=0.01)


def test_an_implausible_jump_in_size_is_no_estimate(vtest_frames: list[np.ndarray]) -> None:
    before = gray(vtest_frames[0])
    zoom = cv2.getRotationMatrix2D((330.0, 265.0), 0.0, 1.3)  # 30% larger in one frame
    after = cv2.warpAffine(before, zoom, before.shape[::-1])
    motions = box_motions(before, after, np.array([[310, 230, 350, 300]], np.float32))
    assert np.isnan(motions).all()


def test_a_box_on_featureless_pixels_does_not_move() -> None:
    flat = np.full((240, 320), 128, np.uint8)
    motions = box_motions(flat, flat, np.array([[100, 50, 140, 150]], np.float32))
    assert np.isnan(motions).all()
    assert box_motions(flat, flat, np.zeros((0, 4), np.float32)).shape == (0, 3)


def test_gray_accepts_bgr_and_gray8(vtest_frames: list[np.ndarray]) -> None:
    bgr = vtest_frames[0]
    one = gray(bgr)
    assert one.shape == bgr.shape[:2]
    assert one.dtype == np.uint8
    assert gray(one) is one  # GRAY8 is used as it is


def _scene(x: float) -> np.ndarray:
    """A textured 'person' (a fixed random pattern, 40x100 px) at column x on a flat background."""
    frame = np.full((300, 600), 90, np.uint8)
    pattern = np.random.default_rng(7).integers(0, 255, (100, 40), np.uint8)
    left = round(x)
    frame[100:200, left : left + 40] = pattern
    return frame


def _box(x: float) -> Detections:
    return Detections(
        np.array([[x, 100, x + 40, 200]], np.float32),
        np.array([0.9], np.float32),
        np.array([0], np.int64),
        {"embedding": np.eye(1, 8, dtype=np.float32)},
    )


def _errors_after_stopping(flow: bool) -> list[float]:
    """Walking right at 3 px a frame, then standing still from frame 16, with the detector on
    one frame in four: how far the skipped frames' boxes are from the person after it stopped."""
    tracker = Tracker(n_init=2, flow=flow)
    errors = []
    for frame in range(20):
        x = 100.0 + 3 * min(frame, 16)
        if frame % 4 == 0:
            update = tracker.update(_box(x), _scene(x))
        else:
            update = tracker.coast(_scene(x))
            if frame > 16:
                (track,) = update.tracks
                errors.append(abs(track.xyxy[0] - x))
    return errors


def test_skipped_frames_follow_a_person_who_stops() -> None:
    """The Kalman filter's prediction alone walks on past where the person stopped (3 px a
    frame); the flow's measurements pull the box back onto the person."""
    guessed, followed = _errors_after_stopping(False), _errors_after_stopping(True)
    assert guessed[-1] > 8.0  # three frames of the old velocity
    assert max(followed) < guessed[-1] / 2.5


def _height_errors(flow: bool) -> list[float]:
    """A textured person growing 4% a frame (walking towards the camera), the detector on one
    frame in four: how far the skipped frames' box heights are from the person's."""
    pattern = np.random.default_rng(7).integers(0, 255, (200, 80), np.uint8)
    tracker, errors = Tracker(n_init=2, flow=flow), []
    for frame in range(24):
        height = 60 * 1.04**frame
        box = np.array([320 - 0.2 * height, 240 - height / 2, 320 + 0.2 * height, 240 + height / 2])
        image = np.full((480, 640), 90, np.uint8)
        x1, y1, x2, y2 = np.round(box).astype(int)
        image[y1:y2, x1:x2] = cv2.resize(pattern, (x2 - x1, y2 - y1))
        if frame % 4 == 0:
            look = {"embedding": np.eye(1, 8, dtype=np.float32)}
            found = Detections(box[None].astype(np.float32), np.array([0.9], np.float32),
                               np.array([0]), look)  # fmt: skip
            tracker.update(found, image)
        elif frame > 8:  # confirmed at frame 4
            (track,) = tracker.coast(image).tracks
            errors.append(abs((track.xyxy[3] - track.xyxy[1]) - height))
        else:
            tracker.coast(image)
    return errors


def test_skipped_frames_follow_a_person_who_comes_nearer() -> None:
    guessed, followed = _height_errors(False), _height_errors(True)
    assert np.mean(followed[-6:]) < np.mean(guessed[-6:])


def test_flow_is_skipped_when_the_resolution_changes() -> None:
    tracker = Tracker(n_init=1)
    for frame in range(3):
        tracker.update(_box(100 + 4 * frame), _scene(100 + 4 * frame))
    textured = np.random.default_rng(1).integers(0, 255, (480, 640), np.uint8)
    update = tracker.coast(textured)  # another camera mode
    (track,) = update.tracks
    assert track.xyxy[0] == pytest.approx(112, abs=6)  # the prediction, not a flow jump


class _Recording(Tracker):
    """Our tracker, noting the frame each call is given."""

    def __init__(self) -> None:
        super().__init__(n_init=1)
        self.given: list[tuple[str, Any]] = []

    def update(self, detections: Detections, image: np.ndarray | None = None) -> Any:
        self.given.append(("update", image))
        return super().update(detections, image)

    def coast(self, image: np.ndarray | None = None) -> Any:
        self.given.append(("coast", image))
        return super().coast(image)


def test_the_pipeline_gives_the_tracker_each_frame() -> None:
    tracker = _Recording()
    camera = SimpleNamespace(models=SimpleNamespace(tracker=tracker), metrics=Metrics())
    packets = [Packet(Frame(i, _scene(100 + 3 * i), 0.0, None, 10.0)) for i in range(3)]
    packets[0].detections = _box(100)
    for packet in packets:
        Pipeline._track(camera, packet)  # type: ignore[arg-type]
    assert [kind for kind, _ in tracker.given] == ["update", "coast", "coast"]
    assert all(image is p.frame.image for (_, image), p in zip(tracker.given, packets, strict=True))
