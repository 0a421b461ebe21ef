"""Track outputs: life-cycle events as JSON Lines, per-frame tracks in MOTChallenge format."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from edge.errors import EdgeError
from edge.tracker import Track, TrackEvent

Writer = TypeVar("Writer", bound="_LineWriter")


class _LineWriter:
    """A text file opened for writing, with a message that names the path when it cannot be."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Line-buffered: a crash or a kill loses no complete line.
            self._stream: IO[str] = path.open("w", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise EdgeError(f"cannot write {path}: {exc.strerror} (choose another path)") from exc
        self.path = path

    def close(self) -> None:
        """Flush and close the file."""
        self._stream.close()

    def __enter__(self: Writer) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventWriter(_LineWriter):
    """Writes one JSON object per track event, e.g.

    `{"frame": 12, "time_s": 0.48, "event": "started", "track_id": 3, "class": "Normal",
    "class_id": 0, "confidence": 0.87, "box": [x1, y1, x2, y2], "age": 3, "hits": 3}`
    """

    def __init__(self, path: Path, class_names: Sequence[str], fps: float) -> None:
        super().__init__(path)
        self._names, self._fps = class_names, fps

    def write(self, events: Iterable[TrackEvent]) -> None:
        """Append events, one line each."""
        for event in events:
            track = event.track
            record = {
                "frame": event.frame,
                "time_s": round(event.frame / self._fps, 3) if self._fps > 0 else None,
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


class MotWriter(_LineWriter):
    """Writes tracks in MOTChallenge format: `frame,id,left,top,width,height,conf,-1,-1,-1`,
    frames counted from 1."""

    def write(self, frame: int, tracks: Iterable[Track]) -> None:
        """Append the tracks of a frame (counted from 0, written from 1)."""
        for t in tracks:
            x1, y1, x2, y2 = t.xyxy
            self._stream.write(
                f"{frame + 1},{t.track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                f"{t.confidence:.4f},-1,-1,-1\n"
            )
