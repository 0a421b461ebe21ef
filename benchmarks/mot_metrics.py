"""MOT metrics (MOTA, IDF1, ID switches, ...) with motmetrics' accumulator and metrics, and
TrackEval's HOTA, DetA and AssA (`trackers.eval`, Roboflow's port of TrackEval's code).

motmetrics 1.4.0 computes its IoU distance with `np.asfarray`, which numpy 2 removed, so the
distance matrix is computed here and handed to its accumulator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment
from trackers.eval import compute_hota_metrics

# A frame's boxes: object ids (n,) and boxes (n, 4) as left, top, width, height.
FrameBoxes = tuple[np.ndarray, np.ndarray]
METRICS = ["mota", "motp", "idf1", "num_switches", "num_fragmentations", "num_false_positives",
           "num_misses", "recall", "precision", "mostly_tracked", "num_unique_objects"]  # fmt: skip
_UNPAIRED = 1e6  # the assignment's cost of a pair too far apart to match


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


def load_mot(path: Path, ignored: bool | None = None) -> dict[int, FrameBoxes]:
    """Boxes per frame from a MOTChallenge text file (`frame,id,left,top,width,height,...`).

    Args:
        path: the file.
        ignored: ground truth only: None keeps every row; False the scored ones; True only the
            rows marked 0 in column 7 ("ignore": people partly out of view).
    """
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    if ignored is not None and rows.shape[1] > 6:
        rows = rows[(rows[:, 6] == 0) == ignored]
    return {
        int(frame): (rows[rows[:, 0] == frame, 1].astype(int), rows[rows[:, 0] == frame, 2:6])
        for frame in np.unique(rows[:, 0])
    }


NONE: FrameBoxes = (np.zeros(0, int), np.zeros((0, 4)))


def drop_ignored(
    truth: FrameBoxes, ignored: FrameBoxes, hypotheses: FrameBoxes, max_distance: float = 0.5
) -> FrameBoxes:
    """The hypotheses less those that one-to-one matching with all ground truth (scored and
    ignored boxes) pairs with an ignored box: they are neither hits nor false positives, as
    MOTChallenge's and TrackEval's preprocessing has it."""
    if not len(ignored[0]) or not len(hypotheses[0]):
        return hypotheses
    distances = iou_distance(np.concatenate([truth[1], ignored[1]]), hypotheses[1], max_distance)
    rows, cols = linear_sum_assignment(np.nan_to_num(distances, nan=_UNPAIRED))
    paired = distances[rows, cols] <= max_distance  # NaN (too far apart) compares False
    dropped = cols[paired & (rows >= len(truth[0]))]
    keep = np.setdiff1d(np.arange(len(hypotheses[0])), dropped)
    return hypotheses[0][keep], hypotheses[1][keep]


def accumulate(
    truth: Mapping[int, FrameBoxes],
    hypotheses: Mapping[int, FrameBoxes],
    max_distance: float = 0.5,
    ignored: Mapping[int, FrameBoxes] | None = None,
) -> mm.MOTAccumulator:
    """Match ground truth and tracker output frame by frame (IoU >= 1 - max_distance); tracker
    boxes on `ignored` ground truth (`drop_ignored`) are not scored."""
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame, (gt_ids, gt_boxes), (hyp_ids, hyp_boxes) in scored_frames(
        truth, hypotheses, max_distance, ignored
    ):
        distances = iou_distance(gt_boxes, hyp_boxes, max_distance)
        accumulator.update(list(gt_ids), list(hyp_ids), distances, frameid=frame)
    return accumulator


def scored_frames(
    truth: Mapping[int, FrameBoxes],
    hypotheses: Mapping[int, FrameBoxes],
    max_distance: float = 0.5,
    ignored: Mapping[int, FrameBoxes] | None = None,
) -> Iterator[tuple[int, FrameBoxes, FrameBoxes]]:
    """Each frame with ground truth or tracker boxes: its number, ground truth, and tracker
    boxes less those on `ignored` ground truth (`drop_ignored`)."""
    for frame in sorted(set(truth) | set(hypotheses)):
        hypothesis = drop_ignored(
            truth.get(frame, NONE),
            (ignored or {}).get(frame, NONE),
            hypotheses.get(frame, NONE),
            max_distance,
        )
        yield frame, truth.get(frame, NONE), hypothesis


def hota(
    truth: Mapping[int, FrameBoxes],
    hypotheses: Mapping[int, FrameBoxes],
    ignored: Mapping[int, FrameBoxes] | None = None,
) -> dict[str, float]:
    """HOTA, DetA and AssA (TrackEval's, averaged over IoU thresholds 0.05-0.95) on the frames
    and tracker boxes `accumulate` scores: those on `ignored` ground truth are dropped first."""
    frames = [(t, h) for _, t, h in scored_frames(truth, hypotheses, ignored=ignored)]
    result = compute_hota_metrics(
        [t[0] for t, _ in frames],
        [h[0] for _, h in frames],
        [1 - iou_distance(t[1], h[1], max_distance=1.0) for t, h in frames],
    )
    return {"hota": result["HOTA"], "deta": result["DetA"], "assa": result["AssA"]}


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
