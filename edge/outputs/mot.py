"""Per-frame tracks in MOTChallenge format."""

from __future__ import annotations

from edge.outputs.base import LineFile
from edge.types import Packet


class MotSink(LineFile):
    """Writes tracks as `frame,id,left,top,width,height,conf,-1,-1,-1`, frames counted from 1."""

    def write(self, packet: Packet, fps: float) -> None:
        """Append the tracks of the frame."""
        if packet.update is None:
            return
        for t in packet.update.tracks:
            x1, y1, x2, y2 = t.xyxy
            self._stream.write(
                f"{packet.update.frame + 1},{t.track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},"
                f"{y2 - y1:.2f},{t.confidence:.4f},-1,-1,-1\n"
            )
