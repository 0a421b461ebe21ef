"""Daytime footage for scene adaptation (`python -m export adapt --video FOLDER`): one color frame
every `every_s` seconds of stream time, while the source delivers color, bounded in count and
disk; the oldest frames go first. File names (`footage_<UTC time>_<frame index>.jpg`) sort in
time order. Only files with such names are counted or deleted: the folder may hold the user's own
photos (a photo folder chosen as `collect_dir`), which stay untouched.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import cv2

from edge.models.colorizer import carries_color
from edge.types import Packet, TrackEvent

log = logging.getLogger(__name__)
PREFIX, SUFFIX = "footage_", ".jpg"
NAME = re.compile(rf"{PREFIX}\d{{8}}T\d{{6}}\.\d{{6}}Z_\d{{8,}}\{SUFFIX}")


def collected(folder: Path) -> list[Path]:
    """The frames the collector wrote in `folder`, oldest first (nothing else there)."""
    return sorted(p for p in folder.glob(f"{PREFIX}*{SUFFIX}") if NAME.fullmatch(p.name))


class FootageSink:
    """Keeps sampled color frames of the source (not the output: no overlay, no colorization)."""

    def __init__(self, folder: Path, every_s: float, max_frames: int, max_mb: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.every_s = folder, every_s
        self.max_frames, self.max_bytes = max_frames, int(max_mb * 1e6)
        self._kept = deque((p, p.stat().st_size) for p in collected(folder))
        self._bytes = sum(size for _, size in self._kept)
        self._next_s: float | None = None

    def write(self, packet: Packet, fps: float) -> None:
        """Keep the frame if its time has come and it carries color."""
        frame = packet.frame
        stream_s = frame.stream_s
        if self._next_s is not None and stream_s < self._next_s:
            return
        if not carries_color(frame.image):
            return  # a night or IR frame: nothing to learn colors from; try the next one
        self._next_s = stream_s + self.every_s
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.folder / f"{PREFIX}{stamp}_{frame.index:08d}{SUFFIX}"
        if not cv2.imwrite(str(path), frame.image):
            log.warning("cannot write %s: footage collection skipped this frame", path)
            return
        size = path.stat().st_size
        self._kept.append((path, size))
        self._bytes += size
        while len(self._kept) > self.max_frames or self._bytes > self.max_bytes:
            oldest, oldest_size = self._kept.popleft()
            oldest.unlink(missing_ok=True)
            self._bytes -= oldest_size

    def close(self, final_events: list[TrackEvent]) -> None:
        """Nothing is held open."""
