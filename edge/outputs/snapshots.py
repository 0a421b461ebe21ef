"""A JPEG of each newly started track's crop of the output frame (colorized where asked)."""

from __future__ import annotations

from pathlib import Path

import cv2

from edge.detections import pixel_box
from edge.types import Packet, TrackEvent


class SnapshotSink:
    """Writes `track_NNNNN.jpg` into a folder when a track starts."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def write(self, packet: Packet, fps: float) -> None:
        """Save the crops of the tracks that started in this frame."""
        image = packet.image if packet.image is not None else packet.bgr
        for event in packet.update.events if packet.update else []:
            if event.kind != "started":
                continue
            left, top, right, bottom = pixel_box(event.track.xyxy, image.shape[:2])
            if right > left and bottom > top:
                name = f"track_{event.track.track_id:05d}.jpg"
                cv2.imwrite(str(self.folder / name), image[top:bottom, left:right])

    def close(self, final_events: list[TrackEvent]) -> None:
        """Nothing is held open."""
