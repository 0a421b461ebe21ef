"""Per-frame tracks in MOTChallenge format."""

from __future__ import annotations

from edge.outputs.base import LineFile
from edge.types import Packet


class MotSink(LineFile):
    """Writes tracks as `frame,id,left,top,width,height,conf,-1,-1,-1`, frames counted from 1.

    A MOT file is one sequence: it is written from the start each run (the default name holds
    the run id, so no run overwrites another's).
    """

    def write(self, packet: Packet, fps: float) -> None:
        """Append the tracks of the frame."""
        if packet.update is None:
            return
        frame = packet.update.frame + 1
        self.write_lines(
            [
                f"{frame},{t.track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                f"{t.confidence:.4f},-1,-1,-1"
                for t in packet.update.tracks
                for x1, y1, x2, y2 in [t.xyxy]
            ]
        )
