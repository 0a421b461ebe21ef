"""The recordings on disk: how segments and snapshots are named, which ones there are, how they
are bounded (retention), which events fall in each (the index) and how a time range becomes one
file (export).

Layout under `output.dir`: `VIDEO/CAMERA/CAMERA_20250601T120305.512Z.mkv` (a segment, named by
camera and the UTC capture time of its first frame; it ends at its file's last write) and
`snapshots/CAMERA/CAMERA_<utc>_<run>_track<id>.jpg`. The file system is the index: nothing else
has to survive a kill for the listing to be right.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.outputs.events import read_events
from edge.utc import STAMP, iso, parse_time, stamp, stamp_time
from edge.video.remux import remux

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".mkv"
MATROSKA_CLUSTER = bytes.fromhex("1f43b675")  # the element that holds frames
SEGMENT_NAME = re.compile(rf"(?P<camera>.+)_(?P<stamp>{STAMP})\{SEGMENT_SUFFIX}")
SNAPSHOT_NAME = re.compile(rf"(?P<camera>.+?)_(?P<stamp>{STAMP})_.*\.jpg")


def segment_path(folder: Path, camera: str, start_utc_s: float) -> Path:
    """A new segment's file: camera and UTC start; never the name of an existing file."""
    while True:
        path = folder / f"{camera}_{stamp(start_utc_s)}{SEGMENT_SUFFIX}"
        if not path.exists():
            return path
        start_utc_s += 0.001


def has_frames(path: Path) -> bool:
    """Whether a segment holds any frame (a Matroska Cluster), not just its header: a segment
    the disk filled up at its very start holds none and is deleted."""
    try:
        with path.open("rb") as stream:
            return MATROSKA_CLUSTER in stream.read(1 << 16)
    except OSError:
        return False


def snapshot_name(camera: str, utc_s: float, run: str, track_id: int) -> str:
    """A snapshot's file name: camera, UTC capture time, run and track."""
    return f"{camera}_{stamp(utc_s)}_{run}_track{track_id}.jpg"


@dataclass(frozen=True)
class Segment:
    """One recorded segment: its camera, file, UTC start and end (its last write, or the next
    segment's start if that is sooner), size in bytes."""

    camera: str
    path: Path
    start: float
    end: float
    size: int


def _segment(path: Path, camera: str | None = None) -> Segment | None:
    match = SEGMENT_NAME.fullmatch(path.name)
    if match is None or (camera is not None and match["camera"] != camera):
        return None
    try:
        status = path.stat()
    except FileNotFoundError:  # deleted meanwhile (retention)
        return None
    start = stamp_time(match["stamp"])
    return Segment(match["camera"], path, start, max(start, status.st_mtime), status.st_size)


def list_segments(root: Path, camera: str | None = None) -> list[Segment]:
    """The segments under `root` (one folder per camera), oldest first."""
    folders = [root / camera] if camera else sorted(p for p in root.glob("*") if p.is_dir())
    found = []
    for folder in folders:
        mine = [s for p in sorted(folder.glob(f"*{SEGMENT_SUFFIX}")) if (s := _segment(p, camera))]
        # A segment's last frames reach its file a little after the next one began (the muxer
        # gets whole keyframe intervals): it ends where the next begins, if that is sooner.
        for segment, after in itertools.pairwise(mine):
            found.append(dataclasses.replace(segment, end=min(segment.end, after.start)))
        found += mine[-1:]
    return sorted(found, key=lambda s: (s.start, s.camera))


class Retention:
    """Bounds one camera's segments in bytes and age; the oldest go first, with the snapshots
    taken before the oldest segment that is kept. Every deletion is logged and counted.

    The open segment (being written) is never deleted, but its size counts.

    Args:
        folder: the camera's segment folder.
        camera: the camera's name.
        snapshots: the camera's snapshot folder, or None.
        keep_bytes: bound on the segments' total size; 0: none.
        keep_s: bound on a segment's age (from its end); 0: none.
        metrics: counts `segments_deleted` and `recording_bytes_deleted`, sets `recording_bytes`.
        margin_bytes: room kept for the open segment's growth at least (e.g. 2 s of video).
    """

    def __init__(
        self,
        folder: Path,
        camera: str,
        snapshots: Path | None,
        keep_bytes: int,
        keep_s: float,
        metrics: Metrics,
        margin_bytes: int = 0,
    ) -> None:
        self.folder, self.camera, self.snapshots = folder, camera, snapshots
        self.margin_bytes = margin_bytes
        self.keep_bytes, self.keep_s, self.metrics = keep_bytes, keep_s, metrics
        self._closed = deque(list_segments(folder.parent, camera) if folder.is_dir() else [])
        self._closed_bytes = sum(s.size for s in self._closed)
        self._open: tuple[Path, int] | None = None  # the open segment and its size
        self._growth: deque[int] = deque(maxlen=30)  # its growth between recent calls

    def closed(self, path: Path) -> None:
        """Count a segment that was just finished."""
        segment = _segment(path, self.camera)
        if segment is not None and all(s.path != path for s in self._closed):
            self._closed.append(segment)
            self._closed_bytes += segment.size

    def enforce(self, open_segment: Path | None = None) -> None:
        """Delete the oldest finished segments beyond the bounds (and their snapshots).

        Args:
            open_segment: the segment being written; room for twice its largest recent growth
                between calls is kept, so the total stays under the bound until the next call.
        """
        open_bytes, margin = 0, 0
        if open_segment is not None:
            try:
                open_bytes = open_segment.stat().st_size
            except FileNotFoundError:
                open_bytes = 0
            before = self._open[1] if self._open and self._open[0] == open_segment else 0
            self._growth.append(max(open_bytes - before, 0))
            self._open = (open_segment, open_bytes)
            # The file grows a keyframe interval at a time: room for the largest recent steps.
            margin = max(self.margin_bytes, 2 * max(self._growth))
        oldest_kept = time.time() - self.keep_s
        last_deleted: Segment | None = None
        while self._closed:
            oldest = self._closed[0]
            too_big = self.keep_bytes and (
                self._closed_bytes + open_bytes + margin > self.keep_bytes
            )
            too_old = self.keep_s and oldest.end < oldest_kept
            if not (too_big or too_old):
                break
            self._closed.popleft()
            self._closed_bytes -= oldest.size
            self._delete(oldest, "keep_gb" if too_big else "keep_days")
            last_deleted = oldest
        if last_deleted is not None and self.snapshots is not None:
            kept_from = self._closed[0].start if self._closed else last_deleted.end
            self._delete_snapshots_before(self.snapshots, kept_from)
        self.metrics.set("recording_bytes", self._closed_bytes + open_bytes)

    def _delete(self, segment: Segment, bound: str) -> None:
        try:
            segment.path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot delete old segment %s: %s", segment.path, exc.strerror)
            return
        self.metrics.increment("segments_deleted")
        self.metrics.increment("recording_bytes_deleted", segment.size)
        log.info(
            "deleted %s (%.1f MB, ended %s): output.%s reached",
            segment.path.name,
            segment.size / 1e6,
            iso(segment.end),
            bound,
        )

    def _delete_snapshots_before(self, folder: Path, utc_s: float) -> None:
        count = 0
        for path in folder.glob(f"{self.camera}_*.jpg"):
            match = SNAPSHOT_NAME.fullmatch(path.name)
            if match and match["camera"] == self.camera and stamp_time(match["stamp"]) < utc_s:
                path.unlink(missing_ok=True)
                count += 1
        if count:
            self.metrics.increment("snapshots_deleted", count)
            log.info("deleted %d snapshots of %s taken before %s", count, self.camera, iso(utc_s))


@dataclass
class IndexEntry:
    """A segment and the events recorded while it was written."""

    segment: Segment
    events: list[dict[str, Any]] = field(default_factory=list)


def event_time(event: dict[str, Any]) -> float | None:
    """An event's UTC time (its `utc` field) in epoch seconds, or None when it has none."""
    utc = event.get("utc")
    if not isinstance(utc, str):
        return None
    try:
        return parse_time(utc)
    except EdgeError:
        return None


def event_files(folder: Path, name: str) -> list[Path]:
    """The events files that `output.events` names in `folder` (one per run if it has `{run}`)."""
    if not name:
        return []
    pattern = folder / name.replace("{run}", "*").replace("{camera}", "*")
    return sorted(p for p in pattern.parent.glob(pattern.name) if p.is_file())


def index(
    root: Path,
    events: Sequence[Path] = (),
    camera: str | None = None,
    since: float | None = None,
) -> list[IndexEntry]:
    """The segments (of one camera, ending after `since`) with the events inside each.

    Events are read with `read_events`, which skips (and reports) a line a power cut tore.
    An event belongs to the segment of its camera that was being written at its UTC time.
    """
    segments = [s for s in list_segments(root, camera) if since is None or s.end > since]
    entries = [IndexEntry(s) for s in segments]
    if not entries:
        return entries
    by_camera: dict[str, list[IndexEntry]] = {}
    for entry in entries:
        by_camera.setdefault(entry.segment.camera, []).append(entry)
    starts = {camera: [e.segment.start for e in found] for camera, found in by_camera.items()}
    for event in (e for path in events for e in read_events(path)):
        moment, camera = event_time(event), str(event.get("camera"))
        if moment is None or camera not in by_camera:
            continue
        # The segment being written then: the last one to start before it, if not yet ended.
        at = bisect.bisect_right(starts[camera], moment) - 1
        if at >= 0 and moment <= by_camera[camera][at].segment.end:
            by_camera[camera][at].events.append(event)
    return entries


def _one_camera(root: Path, camera: str | None) -> str:
    if camera:
        return camera
    cameras = sorted({s.camera for s in list_segments(root)})
    if len(cameras) > 1:
        raise EdgeError(
            f"recordings of several cameras ({', '.join(cameras)}) in {root}: choose with --camera"
        )
    if not cameras:
        raise EdgeError(f"no recordings in {root}: check output.dir / output.video (or --dir)")
    return cameras[0]


def export(
    root: Path, start: float, end: float, output: Path, camera: str | None = None
) -> list[Segment]:
    """Join the segments of one camera that overlap [start, end] into one file, without
    re-encoding; whole segments, so the file may begin and end up to a segment early/late.

    Returns:
        The segments joined, oldest first.

    Raises:
        EdgeError: no segment in the range, several cameras and none chosen, or a part the
            remuxer cannot join.
    """
    if end <= start:
        raise EdgeError(f"export: the end ({iso(end)}) must come after the start ({iso(start)})")
    name = _one_camera(root, camera)
    chosen = [s for s in list_segments(root, name) if s.end >= start and s.start <= end]
    if not chosen:
        raise EdgeError(
            f"no recording of {name} between {iso(start)} and {iso(end)}: "
            "list what there is with `python -m edge recordings`"
        )
    frames = remux([s.path for s in chosen], output)
    log.info("exported %d segments (%d frames) of %s to %s", len(chosen), frames, name, output)
    return chosen


def describe(entries: Iterable[IndexEntry]) -> list[str]:
    """The index as text lines: a line per segment, an indented line per event."""
    lines = []
    for entry in entries:
        segment = entry.segment
        lines.append(
            f"{segment.camera}  {iso(segment.start)}  {iso(segment.end)}  "
            f"{segment.end - segment.start:7.1f} s  {segment.size / 1e6:8.2f} MB  "
            f"{len(entry.events):3d} events  {segment.path}"
        )
        for event in entry.events:
            lines.append(
                f"    {event.get('utc')}  {event.get('event', '?'):7s}  "
                f"track {event.get('track_id')}  {event.get('class', '')}  "
                f"{event.get('confidence', '')}  run {event.get('run')}"
            )
    return lines
