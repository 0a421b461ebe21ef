"""MOT metrics (MOTA, IDF1, ID switches, ...) with motmetrics' accumulator and metrics.

motmetrics 1.4.0 computes its IoU distance with `np.asfarray`, which numpy 2 removed, so the
distance matrix is computed here and handed to its accumulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import motmetrics as mm
import numpy as np

# A frame's boxes: object ids (n,) and boxes (n, 4) as left, top, width, height.
FrameBoxes = tuple[np.ndarray, np.ndarray]
METRICS = ["mota", "motp", "idf1", "num_switches", "num_fragmentations", "num_false_positives",
           "num_misses", "recall", "precision", "mostly_tracked", "num_unique_objects"]  # fmt: skip


def iou_distance(
    objects: np.ndarray, hypotheses: np.ndarray, max_distance: float = 0.5
) -> np.ndarray:
    """1 - IoU between (n, 4) and (k, 4) ltwh boxes; NaN (do not pair) above `max_distance`."""
    if objects.size == 0 or hypotheses.size == 0:
        return np.empty((len(objects), len(hypotheses)))
    a = objects.astype(np.float64)[:, None]
    b = hypotheses.astype(np.float64)[None]
    overlap = np.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:]) - np.maximum(
        a[..., :2], b[..., :2]
    )
    intersection = np.prod(np.clip(overlap, 0, None), axis=-1)
    union = np.prod(a[..., 2:], axis=-1) + np.prod(b[..., 2:], axis=-1) - intersection
    distance = 1 - np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)
    return np.where(distance > max_distance, np.nan, distance)


def load_mot(path: Path) -> dict[int, FrameBoxes]:
    """Boxes per frame from a MOTChallenge text file (`frame,id,left,top,width,height,...`)."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    return {
        int(frame): (rows[rows[:, 0] == frame, 1].astype(int), rows[rows[:, 0] == frame, 2:6])
        for frame in np.unique(rows[:, 0])
    }


def accumulate(
    truth: Mapping[int, FrameBoxes], hypotheses: Mapping[int, FrameBoxes], max_distance: float = 0.5
) -> mm.MOTAccumulator:
    """Match ground truth and tracker output frame by frame (IoU >= 1 - max_distance)."""
    accumulator = mm.MOTAccumulator(auto_id=False)
    none: FrameBoxes = (np.zeros(0, int), np.zeros((0, 4)))
    for frame in sorted(set(truth) | set(hypotheses)):
        (gt_ids, gt_boxes), (hyp_ids, hyp_boxes) = (
            truth.get(frame, none),
            hypotheses.get(frame, none),
        )
        distances = iou_distance(gt_boxes, hyp_boxes, max_distance)
        accumulator.update(list(gt_ids), list(hyp_ids), distances, frameid=frame)
    return accumulator


def summarize(accumulators: Mapping[str, mm.MOTAccumulator]) -> dict[str, dict[str, float]]:
    """Metrics per named sequence, plus `OVERALL` when there are several."""
    host = mm.metrics.create()
    summary = host.compute_many(
        list(accumulators.values()),
        metrics=METRICS,
        names=list(accumulators),
        generate_overall=len(accumulators) > 1,
    )
    return {name: {m: float(summary.loc[name, m]) for m in METRICS} for name in summary.index}
