"""A JPEG of each newly started track's crop of the output frame (colorized where asked)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2

from edge.detections import pixel_box
from edge.outputs.disk import OutputDisk
from edge.outputs.run import Run
from edge.recordings import snapshot_name
from edge.types import Packet, TrackEvent


class SnapshotSink:
    """Writes `CAMERA_<utc>_<run>_track<id>.jpg` into a folder when a track starts: names that
    no later run repeats, and that retention matches to the segment recorded at the time."""

    def __init__(self, folder: Path, run: Run, disk: OutputDisk) -> None:
        self.folder, self.run, self.disk = folder, run, disk

    def write(self, packet: Packet, fps: float) -> None:
        """Save the crops of the tracks that started in this frame."""
        image = packet.image if packet.image is not None else packet.bgr
        utc = packet.frame.utc
        for event in packet.update.events if packet.update else []:
            if event.kind != "started":
                continue
            left, top, right, bottom = pixel_box(event.track.xyxy, image.shape[:2])
            if right > left and bottom > top:
                ok, jpeg = cv2.imencode(".jpg", image[top:bottom, left:right])
                path = self.folder / snapshot_name(
                    self.run.camera, utc, self.run.id, event.track.track_id
                )
                if ok:
                    self.disk.attempt(str(path), partial(self._save, path, jpeg.tobytes()))

    def _save(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.write_bytes(data)
        except OSError:
            path.unlink(missing_ok=True)  # no half picture left behind by a full disk
            raise

    def close(self, final_events: list[TrackEvent]) -> None:
        """Nothing is held open."""
