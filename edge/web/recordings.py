"""What the web page serves of the recordings: each camera's folders, its segments by day, the
segment to play for a moment, and MP4 copies (segments remuxed without re-encoding, time-range
exports) made on demand in a bounded cache folder.

Only names that match a segment's or snapshot's pattern and exist in the camera's own folder are
served: a name with a path in it (`../`) is no file of ours, and the page answers 404.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge import recordings
from edge.config import Config
from edge.errors import EdgeError
from edge.recordings import SEGMENT_NAME, SNAPSHOT_NAME, Segment
from edge.utc import STAMP, iso, stamp
from edge.video.remux import remux

PRE_ROLL_S = 5.0  # an event plays from this long before it
CACHE_FILES = 16  # MP4 copies kept; the oldest go beyond this
# The copies' bytes kept (the newest copy always): they lie on the device's disk, often the
# recordings' own, where retention would otherwise delete recordings to make room for them.
CACHE_BYTES = 2 << 30
# The recordings one export may join: about 35 min at the default 4000 kbps. A range a click
# can ask for (a day: tens of GB) would fill the disk and hold the remuxer for many minutes.
MAX_EXPORT_BYTES = 1 << 30
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
TRACK_SNAPSHOT = re.compile(rf"(?P<camera>.+?)_{STAMP}_(?P<run>.+)_track(?P<track>\d+)\.jpg")


class TooLong(EdgeError):
    """A time range that holds more recordings than the page exports at once."""


@dataclass(frozen=True)
class CameraFiles:
    """Where one camera's outputs are (its config's `output`)."""

    name: str
    dir: Path
    video: str
    events: str
    snapshots: bool

    @classmethod
    def of(cls, config: Config) -> CameraFiles:
        """The folders of a one-camera config (see `edge.config.camera_configs`)."""
        output = config.output
        return cls(config.source.name, Path(output.dir), output.video, output.events,
                   output.snapshots)  # fmt: skip

    @property
    def root(self) -> Path:
        """The recordings' root (a folder per camera inside)."""
        return self.dir / (self.video or "recordings")

    def segments(self) -> list[Segment]:
        """This camera's segments, by start."""
        return recordings.list_segments(self.root, self.name)

    def segment(self, name: str) -> Segment | None:
        """The segment file `name` of this camera, or None: not a segment name, not here."""
        if not SAFE_NAME.fullmatch(name) or not SEGMENT_NAME.fullmatch(name):
            return None
        return next((s for s in self.segments() if s.path.name == name), None)

    def snapshot(self, name: str) -> Path | None:
        """This camera's snapshot file `name`, or None."""
        if not self.snapshots or not SAFE_NAME.fullmatch(name):
            return None
        if not SNAPSHOT_NAME.fullmatch(name) or not name.startswith(f"{self.name}_"):
            return None
        path = self.dir / "snapshots" / self.name / name
        return path if path.is_file() else None

    def track_snapshots(self) -> dict[tuple[str, int], str]:
        """Each snapshot's name by its run and track id (one listing of the folder)."""
        folder = self.dir / "snapshots" / self.name
        if not self.snapshots or not folder.is_dir():
            return {}
        found = {}
        for path in folder.iterdir():
            match = TRACK_SNAPSHOT.fullmatch(path.name)
            if match is not None and match["camera"] == self.name:
                found[(match["run"], int(match["track"]))] = path.name
        return found

    def events_files(self) -> list[Path]:
        """The events files of this camera (all runs, rotated pieces first)."""
        return recordings.event_files(self.dir, self.events)


def day_of(utc_s: float) -> str:
    """The UTC day of a time, `YYYY-MM-DD`."""
    return datetime.fromtimestamp(utc_s, timezone.utc).strftime("%Y-%m-%d")


def clip_at(segments: list[Segment], utc_s: float) -> tuple[Segment, float] | None:
    """The segment to play for a moment, and where in it: `PRE_ROLL_S` before the moment, in the
    segment that was recording then (else the one recording at the moment itself)."""
    for moment in (utc_s - PRE_ROLL_S, utc_s):
        for segment in reversed(segments):
            if segment.start <= moment <= segment.end + 1:
                return segment, max(0.0, utc_s - PRE_ROLL_S - segment.start)
    return None


class Media:
    """MP4 copies of segments and of time ranges, made one at a time into `folder`, the newest
    `CACHE_FILES` kept."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def segment(self, segment: Segment, size: int | None = None) -> Path:
        """The segment as MP4, the copy of it when it held `size` bytes (default: now).

        A player asks for byte ranges of one URL many times: while the segment is still being
        written, each must get the same copy, not a longer one remuxed anew whose bytes lie
        elsewhere (the MP4's index comes last). The first request for a size makes the copy,
        of what is written by then.

        Raises:
            EdgeError: the remuxer cannot read or write it.
        """
        path = self.folder / f"{segment.path.stem}_{segment.size if size is None else size}.mp4"
        with self._lock:
            if not path.is_file():
                remux([segment.path], path)
                self._prune()
            return path

    def export(self, camera: CameraFiles, start: float, end: float) -> Path:
        """The camera's recording from `start` to `end` as one MP4 (as `edge recordings
        --export`: whole segments); made once for the same segments (a player asks for byte
        ranges of it many times).

        Raises:
            TooLong: the range holds more than `MAX_EXPORT_BYTES` of recordings.
            EdgeError: no recording then, or the remuxer failed.
        """
        chosen = recordings.overlapping(camera.segments(), start, end)
        if not chosen:
            raise EdgeError(f"no recording of {camera.name} between {iso(start)} and {iso(end)}")
        size = sum(s.size for s in chosen)
        if size > MAX_EXPORT_BYTES:
            raise TooLong(
                f"{iso(start)} to {iso(end)} holds {size / 1e9:.2f} GB of {camera.name}'s "
                f"recordings, more than the page exports at once ({MAX_EXPORT_BYTES / 1e9:.2f} "
                "GB): choose a shorter range, or run `python -m edge recordings --export` on "
                "the device"
            )
        # Named by what it joins: a segment still growing, or one more, makes a new copy.
        joined = hashlib.sha1(repr([(s.path.name, s.size) for s in chosen]).encode())
        name = f"{camera.name}_{stamp(chosen[0].start)}_{stamp(chosen[-1].end)}"
        path = self.folder / f"{name}_{joined.hexdigest()[:8]}.mp4"
        with self._lock:
            if not path.is_file():
                recordings.export(camera.root, start, end, path, camera.name)
                self._prune()
            return path

    def _prune(self) -> None:
        """Keep the newest copies within `CACHE_FILES` and `CACHE_BYTES` (the newest always)."""
        made = []
        for path in self.folder.glob("*.mp4"):
            with contextlib.suppress(FileNotFoundError):
                made.append((path.stat(), path))
        made.sort(key=lambda item: item[0].st_mtime, reverse=True)
        kept = 0
        for count, (status, path) in enumerate(made):
            kept += status.st_size
            if count > 0 and (count >= CACHE_FILES or kept > CACHE_BYTES):
                path.unlink(missing_ok=True)
