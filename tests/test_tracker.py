"""Tracker: quality on a scene with known ground truth, life-cycle events, and argument checks.

The scene is built from real image content: people cut out of the sample video walk across the
video's own background (the median of its frames), two pairs of them cross, and one passes
behind a pillar. The tracker gets the ground-truth boxes with jitter, missed detections and a few
false positives, embeds them from the rendered frames with the real ReID model, and is scored
with motmetrics. The bounds are checked to fail for broken trackers too.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from benchmarks.mot_metrics import FrameBoxes, accumulate, summarize
from edge.detections import Detections
from edge.engines import open_engine
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.models.tracker import Tracker, TrackUpdate
from edge.video.files import read_frames
from export.data import data_file

FRAMES = 80
PILLAR = (380, 150, 430, 420)  # x1, y1, x2, y2 of a static occluder
MIN_MOTA, MIN_IDF1, MAX_SWITCHES = 0.75, 0.8, 2


@dataclass(frozen=True)
class Walker:
    """A person crop moving in a straight line from `start` to `end` (top-left corners)."""

    sprite: np.ndarray
    start: tuple[float, float]
    end: tuple[float, float]

    def box(self, frame: int) -> np.ndarray:
        t = frame / (FRAMES - 1)
        x = self.start[0] + t * (self.end[0] - self.start[0])
        y = self.start[1] + t * (self.end[1] - self.start[1])
        h, w = self.sprite.shape[:2]
        return np.array([x, y, x + w, y + h])


@dataclass(frozen=True)
class Scene:
    frames: list[np.ndarray]
    truth: dict[int, FrameBoxes]  # visible objects per frame
    detections: list[Detections]  # noisy detector output, before embedding


def _visible(box: np.ndarray) -> bool:
    """False while more than half of the box is behind the pillar."""
    x1, _, x2, _ = box
    hidden = max(0.0, min(x2, PILLAR[2]) - max(x1, PILLAR[0]))
    return hidden < 0.5 * (x2 - x1)


def _ltwh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


@pytest.fixture(scope="module")
def scene(detector_onnx: Path) -> Scene:
    video = list(islice(read_frames(data_file("vtest.avi")), 0, 800, 20))
    background = np.median(np.stack(video), axis=0).astype(np.uint8)
    sprites = []
    with open_engine(detector_onnx) as engine:
        detector = Detector(engine, conf=0.5, classes=["Normal"])
        for frame in video:  # the tallest person of a frame, from frames 20 apart: 4 people
            boxes = detector(frame).xyxy.astype(int)
            heights = boxes[:, 3] - boxes[:, 1]
            if len(boxes) and heights.max() >= 80:
                x1, y1, x2, y2 = boxes[heights.argmax()]
                sprites.append(frame[y1:y2, x1:x2])
    assert len(sprites) >= 4, "the sample video shows people taller than 80 pixels"
    walkers = [
        Walker(sprites[0], (40, 200), (640, 215)),  # left to right ...
        Walker(sprites[1], (660, 230), (60, 205)),  # ... crossing this one, right to left
        Walker(sprites[2], (100, 330), (560, 400)),  # crosses the next one low in the frame
        Walker(sprites[3], (600, 330), (150, 300)),  # and walks behind the pillar
    ]
    rng = np.random.default_rng(7)
    frames, truth, detections = [], {}, []
    for f in range(FRAMES):
        frame = background.copy()
        boxes = np.stack([w.box(f) for w in walkers])
        for walker, (x1, y1, _, _) in zip(walkers, boxes.astype(int), strict=True):
            h, w = walker.sprite.shape[:2]
            frame[y1 : y1 + h, x1 : x1 + w] = walker.sprite
        px1, py1, px2, py2 = PILLAR
        frame[py1:py2, px1:px2] = (90, 90, 110)
        frames.append(frame)
        ids = np.array([i for i, b in enumerate(boxes) if _visible(b)])
        truth[f + 1] = (ids, _ltwh(boxes[ids]))
        detected = ids[rng.random(len(ids)) > 0.1]  # 10% missed
        sizes = boxes[detected, 2:] - boxes[detected, :2]
        noisy = boxes[detected] + rng.normal(0, 0.03, (len(detected), 4)) * np.tile(sizes, 2)
        if rng.random() < 0.1:  # a false positive now and then
            x, y = rng.uniform(0, 700), rng.uniform(0, 450)
            noisy = np.vstack([noisy, [x, y, x + 40, y + 90]])
        count = len(noisy)
        detections.append(
            Detections(
                noisy.astype(np.float32),
                rng.uniform(0.4, 0.95, count).astype(np.float32),
                np.zeros(count, np.int64),
            )
        )
    return Scene(frames, truth, detections)


@pytest.fixture(scope="module")
def updates(scene: Scene, reid_onnx: Path) -> list[TrackUpdate]:
    tracker = Tracker()
    with open_engine(reid_onnx) as engine:
        embedder = Embedder(engine)
        return [
            tracker.update(d.with_data(embedding=embedder(frame, d.xyxy)))
            for frame, d in zip(scene.frames, scene.detections, strict=True)
        ]


def _hypotheses(updates: list[TrackUpdate]) -> dict[int, FrameBoxes]:
    return {
        u.frame + 1: (
            np.array([t.track_id for t in u.tracks], int),
            _ltwh(np.array([t.xyxy for t in u.tracks]).reshape(-1, 4)),
        )
        for u in updates
    }


def _passes(truth: dict[int, FrameBoxes], hypotheses: dict[int, FrameBoxes]) -> bool:
    metrics = summarize({"scene": accumulate(truth, hypotheses)})["scene"]
    return (
        metrics["mota"] >= MIN_MOTA
        and metrics["idf1"] >= MIN_IDF1
        and metrics["num_switches"] <= MAX_SWITCHES
    )


def test_tracks_walkers_through_crossings_and_occlusion(
    scene: Scene, updates: list[TrackUpdate]
) -> None:
    metrics = summarize({"scene": accumulate(scene.truth, _hypotheses(updates))})["scene"]
    assert metrics["mota"] >= MIN_MOTA, metrics
    assert metrics["idf1"] >= MIN_IDF1, metrics
    assert metrics["num_switches"] <= MAX_SWITCHES, metrics


def _new_id_every_frame(h: dict[int, FrameBoxes]) -> dict[int, FrameBoxes]:
    return {f: (ids * 1000 + f, boxes) for f, (ids, boxes) in h.items()}


def _ids_swap_at_crossings(h: dict[int, FrameBoxes]) -> dict[int, FrameBoxes]:
    """Each track takes another's id half way, as a tracker that follows the wrong person does."""
    ids = sorted({int(i) for i, _ in ((i, 0) for frame_ids, _ in h.values() for i in frame_ids)})
    rotate = dict(zip(ids, ids[1:] + ids[:1], strict=True))
    return {
        f: (np.array([rotate[int(i)] for i in frame_ids], int) if f > FRAMES // 2 else frame_ids, b)
        for f, (frame_ids, b) in h.items()
    }


def _boxes_lag(h: dict[int, FrameBoxes]) -> dict[int, FrameBoxes]:
    """Boxes reported 15 frames late, as a tracker stuck on stale predictions would."""
    frames = sorted(h)
    return {f: h[frames[max(0, i - 15)]] for i, f in enumerate(frames)}


@pytest.mark.parametrize("break_it", [_new_id_every_frame, _ids_swap_at_crossings, _boxes_lag])
def test_bounds_fail_a_broken_tracker(
    scene: Scene, updates: list[TrackUpdate], break_it: object
) -> None:
    hypotheses = _hypotheses(updates)
    assert _passes(scene.truth, hypotheses)
    assert not _passes(scene.truth, break_it(hypotheses))  # type: ignore[operator]


def test_life_cycle_events(updates: list[TrackUpdate]) -> None:
    events = [e for u in updates for e in u.events]
    started = [e.track.track_id for e in events if e.kind == "started"]
    assert len(started) == len(set(started)) >= 4
    lost = {e.track.track_id for e in events if e.kind == "lost"}
    assert lost
    assert lost <= set(started)  # misses and the pillar make tracks lost, never new ones
    for u in updates:
        for track in u.tracks:
            assert track.time_since_update == 0
            assert track.hits <= track.age
            assert 0.4 <= track.confidence <= 0.95


def test_track_that_leaves_ends_after_max_age(reid_onnx: Path) -> None:
    tracker = Tracker(max_age=5, n_init=2)
    box = np.array([[100, 100, 150, 220]], np.float32)
    seen = Detections(box, np.array([0.9], np.float32), np.array([0], np.int64))
    seen = seen.with_data(embedding=np.ones((1, 8), np.float32) / np.sqrt(8))
    gone = Detections.empty().with_data(embedding=np.zeros((0, 8), np.float32))
    kinds = [[e.kind for e in tracker.update(d).events] for d in [seen] * 3 + [gone] * 8]
    assert kinds[:2] == [[], ["started"]]
    assert kinds[3] == ["lost"]
    ended_at = next(i for i, k in enumerate(kinds) if "ended" in k)
    assert ended_at == 3 + 5  # the sixth miss in a row exceeds max_age
    assert tracker.finish() == []


def test_finish_ends_live_tracks() -> None:
    tracker = Tracker(n_init=1)  # deep-sort confirms at the first match after the creating one
    box = Detections(
        np.array([[10, 10, 50, 90]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int64)
    )
    for _ in range(2):
        tracker.update(box.with_data(embedding=np.ones((1, 4), np.float32) / 2))
    assert [e.kind for e in tracker.finish()] == ["ended"]


def test_detections_without_embeddings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"data\['embedding'\]"):
        Tracker().update(Detections.empty())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_age": 0}, "max_age must be at least 1"),
        ({"n_init": 0}, "n_init"),
        ({"max_cosine_distance": 0.0}, "max_cosine_distance must be within"),
        ({"max_iou_distance": 3.0}, "max_iou_distance"),
        ({"high_confidence": 1.5}, "high_confidence must be within"),
        ({"birth_confidence": -0.1}, "birth_confidence"),
        ({"ema_alpha": 1.0}, "ema_alpha must be within"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tracker(**kwargs)  # type: ignore[arg-type]


def _person(x: float, confidence: float, look: int = 0) -> Detections:
    """One person box at `x` with a fixed appearance (unit vector `look`)."""
    embedding = np.zeros((1, 8), np.float32)
    embedding[0, look] = 1.0
    return Detections(
        np.array([[x, 100, x + 40, 200]], np.float32),
        np.array([confidence], np.float32),
        np.array([0], np.int64),
        {"embedding": embedding},
    )


@pytest.mark.parametrize("high", [0.0, 0.5])
def test_a_fading_person_keeps_its_track(high: float) -> None:
    tracker = Tracker(n_init=2, high_confidence=high)
    for frame in range(3):
        tracker.update(_person(100 + 3 * frame, 0.9))
    # At 0.3 the person is below high_confidence 0.5: matched in the second association.
    update = tracker.update(_person(109, 0.3))
    assert [t.track_id for t in update.tracks] == [1]
    assert update.tracks[0].confidence == pytest.approx(0.3)


def test_a_low_confidence_detection_never_starts_a_track() -> None:
    tracker = Tracker(n_init=1, high_confidence=0.5, birth_confidence=0.5)
    updates = [tracker.update(_person(100 + 3 * f, 0.3)) for f in range(5)]
    assert all(not u.tracks and not u.events for u in updates)
    born = Tracker(n_init=1, high_confidence=0.2, birth_confidence=0.6)
    assert not any(born.update(_person(100 + 3 * f, 0.4)).tracks for f in range(5))


def test_ema_appearance_is_a_running_average() -> None:
    tracker = Tracker(n_init=1, ema_alpha=0.75)
    tracker.update(_person(100, 0.9, look=0))
    tracker.update(_person(103, 0.9, look=1))
    (track,) = tracker._tracker.tracks
    expected = np.array([0.75, 0.25]) / np.hypot(0.75, 0.25)
    assert track.features[-1][:2] == pytest.approx(expected)


def test_hold_repeats_the_last_tracks_without_events() -> None:
    tracker = Tracker(n_init=2)
    for frame in range(3):
        last = tracker.update(_person(100 + 4 * frame, 0.9))
    held = [tracker.hold() for _ in range(50)]  # longer than max_age: nothing moved meanwhile
    assert [u.frame for u in held] == list(range(3, 53))
    assert all(u.tracks == last.tracks and not u.events for u in held)
    after = tracker.update(_person(112, 0.9))
    assert [t.track_id for t in after.tracks] == [1]
    assert after.events == []


def test_tracker_from_config_takes_every_tracker_setting() -> None:
    from edge.config import TrackerConfig

    config = TrackerConfig(max_age=7, high_confidence=0.6, ema_alpha=0.5)
    tracker = Tracker.from_config(config, first_id=40)
    assert tracker._tracker.max_age == 7
    assert tracker._tracker.high_confidence == 0.6
    tracker.update(_person(100, 0.9))
    assert tracker._tracker.tracks[0].track_id == "40"
