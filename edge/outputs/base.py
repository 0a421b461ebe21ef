"""The sink interface, and the line-buffered text file the event and MOT sinks write."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Protocol

from edge.errors import EdgeError
from edge.types import Packet, TrackEvent


class Sink(Protocol):
    """Where finished frames go."""

    def write(self, packet: Packet, fps: float) -> None:
        """Consume one finished frame (`fps`: the rate frames are completing at)."""

    def close(self, final_events: list[TrackEvent]) -> None:
        """Write the tracker's last events and finalize (called once, after the last frame)."""


class LineFile:
    """A text file opened for writing, with a message that names the path when it cannot be."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Line-buffered: a crash or a kill loses no complete line.
            self._stream: IO[str] = path.open("w", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise EdgeError(f"cannot write {path}: {exc.strerror} (choose another path)") from exc
        self.path = path

    def close(self, final_events: list[TrackEvent]) -> None:
        """Flush and close the file."""
        self._stream.close()
