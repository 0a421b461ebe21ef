"""Track life-cycle events as JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from edge.outputs.base import LineFile
from edge.types import Packet, TrackEvent


class EventSink(LineFile):
    """Writes one JSON object per track event, e.g.

    `{"frame": 12, "time_s": 0.48, "event": "started", "track_id": 3, "class": "Normal",
    "class_id": 0, "confidence": 0.87, "box": [x1, y1, x2, y2], "age": 3, "hits": 3}`

    `time_s` counts from the stream's start at the stream's frame rate.
    """

    def __init__(self, path: Path, class_names: Sequence[str]) -> None:
        super().__init__(path)
        self._names = class_names
        self._stream_fps = 0.0

    def write(self, packet: Packet, fps: float) -> None:
        """Append the frame's events."""
        self._stream_fps = packet.frame.fps
        if packet.update is not None:
            self._append(packet.update.events)

    def close(self, final_events: list[TrackEvent]) -> None:
        """Append the last events and close the file."""
        self._append(final_events)
        super().close(final_events)

    def _append(self, events: Iterable[TrackEvent]) -> None:
        for event in events:
            track = event.track
            record = {
                "frame": event.frame,
                "time_s": round(event.frame / self._stream_fps, 3) if self._stream_fps else None,
                "event": event.kind,
                "track_id": track.track_id,
                "class": self._names[track.class_id],
                "class_id": track.class_id,
                "confidence": round(track.confidence, 4),
                "box": [round(v, 1) for v in track.xyxy],
                "age": track.age,
                "hits": track.hits,
            }
            self._stream.write(json.dumps(record) + "\n")
