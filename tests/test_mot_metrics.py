"""Our MOT metric code (own IoU distance, motmetrics' accumulator) on motmetrics' TUD files, and
HOTA (TrackEval's, from `trackers.eval`) on hand-made tracks, and the library trackers'
replay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from trackers.core.base import BaseTracker

from benchmarks.library_trackers import LIBRARY, replay_library
from benchmarks.mot_metrics import (
    accumulate,
    drop_ignored,
    hota,
    iou_distance,
    load_mot,
    summarize,
)
from benchmarks.replay import CachedFrames, every_nth
from benchmarks.tracking import appearance_auc, box_agreement, narrowed, scores
from edge.detections import Detections
from export.data import data_file

# motmetrics' own expected values for these files (its tests/test_metrics.py).
EXPECTED = {
    "TUD-Campus": {"idf1": 0.557659, "recall": 0.582173, "precision": 0.941441,
                   "num_false_positives": 13, "num_misses": 150, "num_switches": 7,
                   "mota": 0.526462, "motp": 0.277201},
    "TUD-Stadtmitte": {"idf1": 0.644619, "recall": 0.608997, "precision": 0.939920,
                       "num_false_positives": 45, "num_misses": 452, "num_switches": 7,
                       "mota": 0.564014, "motp": 0.345904},
}  # fmt: skip


def test_metrics_match_motmetrics_reference_on_tud_sequences() -> None:
    accumulators = {}
    for name in EXPECTED:
        truth = load_mot(data_file(f"{name}/gt.txt"))
        accumulators[name] = accumulate(truth, load_mot(data_file(f"{name}/test.txt")))
    summary = summarize(accumulators)
    for name, expected in EXPECTED.items():
        for metric, value in expected.items():
            assert summary[name][metric] == pytest.approx(value, abs=1e-3), (name, metric)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 0.0),
        ([0, 0, 10, 10], [2, 0, 10, 10], 1 - 80 / 120),
        ([0, 0, 10, 10], [0, 0, 10, 5], 0.5),
        ([0, 0, 10, 10], [20, 20, 5, 5], np.nan),  # no overlap: do not pair
        ([0, 0, 10, 10], [6, 0, 10, 10], np.nan),  # IoU 0.25 < 0.5
    ],
)
def test_iou_distance(a: list[float], b: list[float], distance: float) -> None:
    got = iou_distance(np.array([a], float), np.array([b], float))[0, 0]
    assert got == pytest.approx(distance, nan_ok=True)


def test_iou_distance_of_empty_frames_has_the_right_shape() -> None:
    assert iou_distance(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)


def test_tracks_on_ignored_ground_truth_are_neither_hits_nor_false_positives() -> None:
    truth = (np.array([1]), np.array([[0, 0, 10, 20]], float))
    ignored = (np.array([2]), np.array([[100, 0, 10, 20]], float))
    hypotheses = (
        np.array([7, 8, 9]),
        np.array([[1, 0, 10, 20], [101, 1, 10, 20], [300, 0, 10, 20]], float),
    )
    ids, _ = drop_ignored(truth, ignored, hypotheses)
    assert ids.tolist() == [7, 9]  # the one on the ignored person goes; a false positive stays
    scored = summarize({"run": accumulate({1: truth}, {1: hypotheses}, ignored={1: ignored})})
    assert scored["run"]["num_false_positives"] == 1
    assert scored["run"]["num_misses"] == 0


def test_a_track_on_both_a_person_and_an_ignored_one_counts_for_the_person() -> None:
    truth = (np.array([1]), np.array([[0, 0, 10, 20]], float))
    ignored = (np.array([2]), np.array([[1, 0, 10, 20]], float))  # overlapping the person
    hypotheses = (np.array([7]), np.array([[0, 0, 10, 20]], float))
    assert drop_ignored(truth, ignored, hypotheses)[0].tolist() == [7]


def test_load_mot_splits_scored_and_ignored_rows(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,0,0,10,20,1,-1,-1,-1\n1,2,50,0,10,20,0,-1,-1,-1\n2,1,1,0,10,20,1,-1,-1,-1\n")
    assert {f: ids.tolist() for f, (ids, _) in load_mot(gt, ignored=False).items()} == {
        1: [1],
        2: [1],
    }
    assert {f: ids.tolist() for f, (ids, _) in load_mot(gt, ignored=True).items()} == {1: [2]}
    assert len(load_mot(gt)[1][0]) == 2


def test_tracks_beyond_the_scored_frames_are_not_false_positives(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,40,1\n2,1,12,10,20,40,1\n")
    box = np.array([[10.0, 10.0, 20.0, 40.0]])
    tracks = {f: (np.array([5]), box) for f in (1, 2, 3)}  # frame 3: past the ground truth
    assert scores(gt, tracks, 2)["num_false_positives"] == 0
    assert scores(gt, tracks)["num_false_positives"] == 1


def _cached(xyxy: list[list[float]], confidence: list[float], class_id: list[int]) -> CachedFrames:
    embeddings = np.eye(len(xyxy), 4, dtype=np.float32)
    found = Detections(np.array(xyxy, np.float32), np.array(confidence, np.float32),
                       np.array(class_id, np.int64), {"embedding": embeddings})  # fmt: skip
    return CachedFrames([found], ("Normal", "Fall"))


def test_replayed_nms_lower_iou_and_merged_classes() -> None:
    # Two boxes of different classes with IoU 0.6; a third of the first's class, IoU 0.7 with it.
    cache = _cached([[0, 0, 10, 10], [0, 0, 10, 6], [0, 0, 10, 7]], [0.9, 0.8, 0.7], [0, 1, 0])
    assert len(cache.select(0.5, None)[0]) == 3  # as the cached (IoU 0.7, per class) NMS left them
    assert cache.select(0.5, None, iou=0.65)[0].confidence.tolist() == pytest.approx([0.9, 0.8])
    merged = cache.select(0.5, None, iou=0.5, merge_classes=True)[0]
    assert merged.confidence.tolist() == pytest.approx([0.9])
    assert merged.class_id.tolist() == [0]
    with pytest.raises(ValueError, match="above the cache's"):
        cache.select(0.5, None, iou=0.8)


def test_box_agreement_scores_each_box_as_its_own_track(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,40,1\n2,1,10,10,20,40,1\n")
    wide = [[8.0, 10.0, 32.0, 50.0]]  # 1.2 times as wide as the ground truth, IoU 0.83
    elsewhere = [[200.0, 10.0, 220.0, 50.0]]
    frames = [_cached(boxes, [0.9], [0]).frames[0] for boxes in (wide, elsewhere)]
    agreement = box_agreement(gt, frames)
    assert (agreement["tp"], agreement["fp"], agreement["fn"]) == (1, 1, 1)
    assert agreement["f1"] == pytest.approx(0.5)
    assert agreement["width_ratio"] == pytest.approx(1.2)
    assert agreement["height_ratio"] == pytest.approx(1.0)
    assert np.isnan(agreement["appearance_auc"])  # one pair: nothing to compare


def test_appearance_auc_ranks_same_person_pairs_against_other_people() -> None:
    people = np.array([1, 2, 1, 2])
    frames = np.array([1, 1, 21, 21])  # each person seen again 20 frames later
    apart = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert appearance_auc(apart, people, frames) == pytest.approx(1.0)
    swapped = apart[[0, 1, 3, 2]]  # 20 frames later each looks like the other did
    assert appearance_auc(swapped, people, frames) < 0.5
    alike = np.ones((4, 2))
    assert appearance_auc(alike, people, frames) == pytest.approx(0.5)


def test_narrowed_scales_widths_about_the_centre() -> None:
    tracks = {1: (np.array([7]), np.array([[10.0, 5.0, 30.0, 40.0]]))}
    ((ids, boxes),) = narrowed(tracks, 0.5).values()
    assert ids.tolist() == [7]
    assert boxes.tolist() == [[17.5, 5.0, 15.0, 40.0]]
    assert tracks[1][1].tolist() == [[10.0, 5.0, 30.0, 40.0]]  # the input is left as it was


def _walk(ids: list[int], shift: float = 0.0) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """One person walking right over len(ids) frames, tracked as `ids` frame by frame; the
    tracker's box `shift` pixels to the right of the person's."""
    return {
        f: (np.array([i]), np.array([[10.0 * f + shift, 0.0, 10.0, 20.0]]))
        for f, i in enumerate(ids, start=1)
    }


def test_hota_of_perfect_tracks_is_one() -> None:
    truth = _walk([1] * 10)
    assert hota(truth, _walk([7] * 10)) == pytest.approx({"hota": 1.0, "deta": 1.0, "assa": 1.0})


def test_hota_of_a_track_split_halfway_keeps_detection_and_halves_association() -> None:
    # Each of the two ids covers half the person's frames: every pair's association score is
    # 5 / (10 + 5 - 5) = 0.5, so AssA 0.5 and HOTA sqrt(DetA * AssA).
    got = hota(_walk([1] * 10), _walk([7] * 5 + [8] * 5))
    assert got == pytest.approx({"hota": 0.5**0.5, "deta": 1.0, "assa": 0.5})


def test_hota_falls_as_boxes_drift() -> None:
    truth = _walk([1] * 10)
    near, far = (hota(truth, _walk([7] * 10, shift))["hota"] for shift in (1.0, 3.0))
    assert far < near < 1.0
    # IoU 0.82 (shift 1) pairs at 16 of the 19 thresholds 0.05-0.95, IoU 0.54 at 10 of them.
    assert near == pytest.approx(16 / 19)
    assert far == pytest.approx(10 / 19)


def test_hota_drops_tracks_on_ignored_ground_truth_as_motmetrics_scoring_does(
    tmp_path: Path,
) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,40,1\n1,2,100,10,20,40,0\n2,1,10,10,20,40,1\n")
    tracks = {1: (np.array([5, 6]), np.array([[10.0, 10, 20, 40], [101.0, 10, 20, 40]])),
              2: (np.array([5]), np.array([[10.0, 10, 20, 40]]))}  # fmt: skip
    got = scores(gt, tracks)
    assert (got["hota"], got["deta"], got["assa"]) == pytest.approx((1.0, 1.0, 1.0))
    assert got["num_false_positives"] == 0
    scored = load_mot(gt, ignored=False)
    assert hota(scored, tracks)["deta"] == pytest.approx(2 / 3)  # 2 TP, 1 FP without the rule


def test_scores_keep_motmetrics_numbers_beside_hota(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("".join(f"{f},1,{10 * f},0,10,20,1\n" for f in range(1, 11)))
    tracks = _walk([7] * 5 + [8] * 5)
    got = scores(gt, tracks)
    expected = summarize({"run": accumulate(load_mot(gt), tracks)})["run"]
    assert {k: got[k] for k in expected} == expected
    assert (got["mota"], got["num_switches"], got["hota"]) == pytest.approx((0.9, 1, 0.5**0.5))


def _walking_detections(count: int) -> list[Detections]:
    """One person walking right 2 pixels a frame, detected at confidence 0.9 on every frame."""
    return [
        Detections(np.array([[2.0 * f, 0, 2.0 * f + 10, 20]], np.float32),
                   np.array([0.9], np.float32), np.array([0], np.int64))
        for f in range(1, count + 1)
    ]  # fmt: skip


@pytest.mark.parametrize(("name", "factory", "confidence"), LIBRARY, ids=lambda v: str(v)[:30])
def test_library_trackers_keep_one_id_and_report_the_detections_boxes(
    name: str, factory: Callable[[], BaseTracker], confidence: float
) -> None:
    frames = _walking_detections(8)
    tracks = replay_library(frames, factory())
    assert 4 in tracks  # confirmed within a few frames
    assert {int(i) for ids, _ in tracks.values() for i in ids} == {0}
    for f, (_, boxes) in tracks.items():
        assert boxes.tolist() == [[2.0 * f, 0, 10, 20]]  # the frame's own detection, ltwh


def test_library_trackers_hold_their_last_output_on_skipped_frames() -> None:
    _, factory, _ = LIBRARY[0]
    tracks = replay_library(every_nth(_walking_detections(9), 1), factory())
    for skipped in (4, 6, 8):
        assert tracks[skipped][0].tolist() == tracks[skipped - 1][0].tolist()
        assert tracks[skipped][1].tolist() == tracks[skipped - 1][1].tolist()
    assert tracks[5][1].tolist() != tracks[4][1].tolist()  # the next detected frame moves on
