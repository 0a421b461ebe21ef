"""Drawing tracks and the frame rate onto frames (one method: `annotate`)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge.types import Track


def _color(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR color per track id (golden-ratio hues)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 220, 255]]], np.uint8)
    b, g, r = (int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])
    return b, g, r


class TrackAnnotator:
    """Draws each track's box, id and class, and an FPS line, onto a BGR frame (in place)."""

    def __init__(self, class_names: Sequence[str], thickness: int = 2, scale: float = 0.5) -> None:
        self.class_names = class_names
        self.thickness = thickness
        self.scale = scale

    def annotate(self, frame: np.ndarray, tracks: Sequence[Track], fps: float | None) -> np.ndarray:
        """Return `frame` with the overlay drawn on it."""
        font = cv2.FONT_HERSHEY_SIMPLEX
        for track in tracks:
            x1, y1, x2, y2 = (round(v) for v in track.xyxy)
            color = _color(track.track_id)
            cv2.rectangle(frame, (x1, y1), (x2, y2), color, self.thickness)
            name = (
                self.class_names[track.class_id] if track.class_id < len(self.class_names) else "?"
            )
            label = f"#{track.track_id} {name} {track.confidence:.2f}"
            (w, h), _ = cv2.getTextSize(label, font, self.scale, 1)
            top = max(y1 - h - 6, 0)
            cv2.rectangle(frame, (x1, top), (x1 + w + 4, top + h + 6), color, cv2.FILLED)
            cv2.putText(frame, label, (x1 + 2, top + h + 2), font, self.scale, (0, 0, 0), 1)
        if fps is not None:
            text = f"{fps:.1f} FPS  {len(tracks)} tracks"
            cv2.putText(frame, text, (10, 24), font, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.putText(frame, text, (10, 24), font, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
        return frame
