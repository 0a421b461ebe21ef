"""Optical flow on skipped frames: boxes follow real image content, and the tracker uses it."""

from __future__ import annotations

import numpy as np
import pytest

from edge.detections import Detections
from edge.models.flow import box_shifts, gray
from edge.models.tracker import Tracker


def _moved(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image with its content moved by whole pixels (edges wrap)."""
    return np.roll(image, (dy, dx), axis=(0, 1))


def test_boxes_on_real_footage_move_as_the_pixels_did(vtest_frames: list[np.ndarray]) -> None:
    before = gray(vtest_frames[0])
    boxes = np.array([[300, 200, 360, 330], [500, 150, 560, 280]], np.float32)
    for dx, dy in [(3, 0), (-4, 2), (0, -5)]:
        shifts = box_shifts(before, _moved(before, dx, dy), boxes)
        assert shifts == pytest.approx(np.array([[dx, dy], [dx, dy]]), abs=0.3)


def test_a_box_on_featureless_pixels_does_not_move() -> None:
    flat = np.full((240, 320), 128, np.uint8)
    shifts = box_shifts(flat, flat, np.array([[100, 50, 140, 150]], np.float32))
    assert np.isnan(shifts).all()
    assert box_shifts(flat, flat, np.zeros((0, 4), np.float32)).shape == (0, 2)


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


def test_flow_is_skipped_when_the_resolution_changes() -> None:
    tracker = Tracker(n_init=1)
    for frame in range(3):
        tracker.update(_box(100 + 4 * frame), _scene(100 + 4 * frame))
    update = tracker.coast(np.zeros((480, 640), np.uint8))  # another camera mode
    (track,) = update.tracks
    assert track.xyxy[0] == pytest.approx(112, abs=6)  # the prediction, not a flow jump
