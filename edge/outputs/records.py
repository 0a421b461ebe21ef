"""Track events as records: what the events file and MQTT both publish, made in one place.

A record, e.g. `{"id": "20250601T120305Z-3fa1/7", "run": "20250601T120305Z-3fa1",
"camera": "cam0", "utc": "2025-06-01T12:03:07.512Z", "frame": 12, "time_s": 0.48,
"event": "started", "track_id": 3, "class": "Normal", "class_id": 0, "confidence": 0.87,
"box": [x1, y1, x2, y2], "age": 3, "hits": 3}`. `id` (run id / count) is unique across restarts;
`utc` is the frame's capture time; `time_s` counts from the stream's start at its frame rate.

Each packet's records are made once, by whichever sink asks first, and kept on the packet, so
every sink sees the same records with the same ids in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.outputs.run import Run
from edge.types import Packet, TrackEvent
from edge.utc import iso

Record = dict[str, Any]


class EventRecords:
    """Numbers the run's track events and turns them into records."""

    def __init__(self, run: Run, class_names: Sequence[str]) -> None:
        self.run, self.class_names = run, class_names
        self._count = 0
        self._stream_fps, self._utc = 0.0, 0.0
        self._final: list[Record] | None = None

    def of(self, packet: Packet) -> list[Record]:
        """The records of the packet's track events."""
        if packet.records is None:
            self._stream_fps = packet.frame.fps
            self._utc = packet.frame.utc
            events = packet.update.events if packet.update is not None else []
            packet.records = [self._record(event) for event in events]
        return packet.records

    def final(self, events: Sequence[TrackEvent]) -> list[Record]:
        """The records of the tracks ended when the stream stopped (made once)."""
        if self._final is None:
            self._final = [self._record(event) for event in events]
        return self._final

    def _record(self, event: TrackEvent) -> Record:
        track = event.track
        self._count += 1
        fps = self._stream_fps
        return {
            "id": f"{self.run.id}/{self._count}",
            "run": self.run.id,
            "camera": self.run.camera,
            "utc": iso(self._utc),
            "frame": event.frame,
            "time_s": round(event.frame / fps, 3) if fps else None,
            "event": event.kind,
            "track_id": track.track_id,
            "class": self.class_names[track.class_id],
            "class_id": track.class_id,
            "confidence": round(track.confidence, 4),
            "box": [round(v, 1) for v in track.xyxy],
            "age": track.age,
            "hits": track.hits,
        }
