"""Motion gating, as Frigate does it: a cheap difference on a small gray image decides whether a
frame needs the detector.

Each frame is shrunk to `height` rows, grayed and blurred, and compared with a running average
of the frames before it; the frame moves when more than `min_area` of its pixels differ from
that average by more than `threshold` grey levels. While nothing moves the detector is not run
(the tracker holds its tracks where they are); the first frame that moves is detected at once.
The average follows the scene (weight `alpha` for the newest frame), so a light that changes
slowly or a thing that stops moving stops counting after a few frames.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from edge.config import DetectorConfig
from edge.models import flow

DEFAULTS = DetectorConfig()


class MotionGate:
    """Whether each frame of one camera moves, against the running average of the frames before.

    Args:
        threshold: grey-level change (0-255) that makes a pixel moving.
        min_area: share of the small image's pixels that must move (0-1).
        height: rows of the small image the difference is taken on.
        alpha: weight of the newest frame in the running average (0-1].

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(
        self,
        threshold: int = DEFAULTS.motion_threshold,
        min_area: float = DEFAULTS.motion_min_area,
        height: int = DEFAULTS.motion_height,
        alpha: float = DEFAULTS.motion_alpha,
    ) -> None:
        if not 1 <= threshold <= 255:
            raise ValueError(f"threshold must be within [1, 255], got {threshold}")
        if not 0.0 <= min_area <= 1.0:
            raise ValueError(f"min_area must be within [0, 1], got {min_area}")
        if height < 8:
            raise ValueError(f"height must be at least 8 rows, got {height}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be within (0, 1], got {alpha}")
        self.threshold, self.min_area, self.height, self.alpha = threshold, min_area, height, alpha
        self._average: npt.NDArray[np.float32] | None = None

    def moving(self, image: npt.NDArray[np.uint8]) -> bool:
        """Whether this frame (BGR or GRAY8) moves; the first frame of a stream always does."""
        gray = flow.gray(image)
        width = max(round(gray.shape[1] * self.height / gray.shape[0]), 1)
        small = cv2.resize(gray, (width, self.height), interpolation=cv2.INTER_AREA)
        blurred: npt.NDArray[np.float32] = cv2.GaussianBlur(small, (3, 3), 0).astype(np.float32)
        if self._average is None or self._average.shape != blurred.shape:
            self._average = blurred
            return True
        changed = np.abs(blurred - self._average) > self.threshold
        cv2.accumulateWeighted(blurred, self._average, self.alpha)
        return bool(changed.mean() > self.min_area)
