"""Our MOT metric code (own IoU distance, motmetrics' accumulator) on motmetrics' TUD files."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.mot_metrics import accumulate, iou_distance, load_mot, summarize
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
