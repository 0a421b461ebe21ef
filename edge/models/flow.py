"""Optical flow that carries boxes across the frames the detector skips (`detector.interval`).

What DeepStream's KLT and NvDCF trackers do between inference intervals, in its simplest form:
a grid of points inside each box is followed from one gray frame to the next with pyramidal
Lucas-Kanade (OpenCV), each point checked by following it back, and the box moves by the median
shift of the points that come back to where they started and scales by the median change of the
distances between them (MedianFlow's estimate). A box whose points do not track (too few
survive, e.g. the person is hidden) gets no estimate, and the tracker keeps its Kalman
prediction for it.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

GRID = (4, 6)  # points across and down each box
INSET = (0.25, 0.15)  # share of width and height left out at each side: the body, not background
WINDOW = (15, 15)  # Lucas-Kanade window, pixels
LEVELS = 2  # pyramid levels above the full image
MAX_RETURN_ERROR = 1.0  # pixels between a point and where following it back lands
MIN_POINTS = 5  # points that must survive for a box to move
MAX_SCALE_STEP = 1.25  # a box growing or shrinking more than this in one frame is a bad estimate


def gray(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A BGR or GRAY8 frame as one gray channel."""
    if image.ndim == 2:
        return image
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), np.uint8)


def box_motions(
    before: npt.NDArray[np.uint8], after: npt.NDArray[np.uint8], xyxy: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """How each (x1, y1, x2, y2) box moved from gray frame `before` to `after`: (n, 3) dx, dy and
    scale per box, NaN where too few of its points tracked there and back or the scale is beyond
    `MAX_SCALE_STEP`."""
    motions = np.full((len(xyxy), 3), np.nan)
    if not len(xyxy):
        return motions
    start = np.concatenate([_grid(box) for box in xyxy]).reshape(-1, 1, 2)
    ahead, found, _ = cv2.calcOpticalFlowPyrLK(
        before, after, start, None, winSize=WINDOW, maxLevel=LEVELS
    )
    back, returned, _ = cv2.calcOpticalFlowPyrLK(
        after, before, ahead, None, winSize=WINDOW, maxLevel=LEVELS
    )
    error = np.linalg.norm(back - start, axis=2)[:, 0]
    good = (found[:, 0] == 1) & (returned[:, 0] == 1) & (error < MAX_RETURN_ERROR)
    moved = (ahead - start)[:, 0]
    per_box = GRID[0] * GRID[1]
    for index in range(len(xyxy)):
        rows = slice(index * per_box, (index + 1) * per_box)
        kept = good[rows]
        if kept.sum() >= MIN_POINTS:
            scale = _scale(start[rows][kept, 0], ahead[rows][kept, 0])
            if 1 / MAX_SCALE_STEP <= scale <= MAX_SCALE_STEP:
                motions[index] = (*np.median(moved[rows][kept], axis=0), scale)
    return motions


def _scale(start: npt.NDArray[np.float32], end: npt.NDArray[np.float32]) -> float:
    """The median ratio of the distances between every two points after and before."""
    pairs = np.triu_indices(len(start), k=1)
    apart = np.linalg.norm(start[pairs[0]] - start[pairs[1]], axis=1)
    moved_apart = np.linalg.norm(end[pairs[0]] - end[pairs[1]], axis=1)
    usable = apart > 1.0
    return float(np.median(moved_apart[usable] / apart[usable])) if usable.any() else 1.0


def _grid(box: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """The points followed inside one box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    inset_x, inset_y = INSET[0] * (x2 - x1), INSET[1] * (y2 - y1)
    xs = np.linspace(x1 + inset_x, x2 - inset_x, GRID[0])
    ys = np.linspace(y1 + inset_y, y2 - inset_y, GRID[1])
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
