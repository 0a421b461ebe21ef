"""The recordings on disk: how segments and snapshots are named, which ones there are, how they
are bounded (retention), which events fall in each (the index) and how a time range becomes one
file (export).

Layout under `output.dir`: `VIDEO/CAMERA/CAMERA_20250601T120305.512Z_000042.mkv` (a segment,
named by camera, the UTC capture time of its first frame and its sequence number; it ends at its
file's last write) and `snapshots/CAMERA/CAMERA_<utc>_<run>_track<id>.jpg`. The file system is the
index: nothing else has to survive a kill for the listing to be right.

The sequence number counts a camera's segments, continuing from the largest on disk, so it orders
them even when the clock that stamped them was wrong (a Jetson without an RTC battery boots in
the past until NTP steps its clock). Names without one (written before it existed) come first.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from edge.errors import EdgeError
from edge.outputs.base import rotated_files
from edge.outputs.events import read_events
from edge.utc import STAMP, iso, parse_time, stamp, stamp_time
from edge.video.remux import remux

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".mkv"
MATROSKA_CLUSTER = bytes.fromhex("1f43b675")  # the element that holds frames
SEGMENT_NAME = re.compile(rf"(?P<camera>.+)_(?P<stamp>{STAMP})(?:_(?P<seq>\d+))?\{SEGMENT_SUFFIX}")
SNAPSHOT_NAME = re.compile(rf"(?P<camera>.+?)_(?P<stamp>{STAMP})_.*\.jpg")


def segment_path(folder: Path, camera: str, start_utc_s: float, seq: int) -> Path:
    """A new segment's file: camera, UTC start and sequence number (unique per camera)."""
    return folder / f"{camera}_{stamp(start_utc_s)}_{seq:06d}{SEGMENT_SUFFIX}"


def has_frames(path: Path) -> bool:
    """Whether a segment holds a frame a player can decode, not just its header or the start of
    its first cluster: a segment that a full disk or a kill cut before its first complete frame
    is of no use and is deleted. Only called for a segment cut short, never per frame."""
    try:
        with path.open("rb") as stream:
            if MATROSKA_CLUSTER not in stream.read(1 << 16):
                return False
    except OSError:
        return False
    capture = cv2.VideoCapture(str(path))  # FFmpeg, as the players users open segments with
    try:
        return bool(capture.read()[0])
    finally:
        capture.release()


def discard_unplayable_last(folder: Path, camera: str) -> Path | None:
    """Delete the camera's newest segment if a kill or a power cut ended it before its first
    frame (at start, before recording); return it if so."""
    found = camera_segments(folder, camera) if folder.is_dir() else []  # recording order
    if not found or has_frames(found[-1].path):
        return None
    found[-1].path.unlink(missing_ok=True)
    log.warning("deleted %s: the previous run ended before its first frame", found[-1].path.name)
    return found[-1].path


def snapshot_name(camera: str, utc_s: float, run: str, track_id: int) -> str:
    """A snapshot's file name: camera, UTC capture time, run and track."""
    return f"{camera}_{stamp(utc_s)}_{run}_track{track_id}.jpg"


@dataclass(frozen=True)
class Segment:
    """One recorded segment: its camera, file, UTC start and end (its last write, or the next
    segment's start if that is sooner), size in bytes, sequence number (None in a name written
    before there was one) and the file's modification time."""

    camera: str
    path: Path
    start: float
    end: float
    size: int
    seq: int | None = None
    mtime: float = 0.0

    @property
    def order(self) -> tuple[int, int, float]:
        """The camera's recording order: names without a sequence first, by stamp."""
        return (0, 0, self.start) if self.seq is None else (1, self.seq, 0.0)


def parse_segment(path: Path, camera: str | None = None) -> Segment | None:
    """The segment a file holds, or None: not this camera's, gone, or a bad name (warned)."""
    match = SEGMENT_NAME.fullmatch(path.name)
    try:
        if match is None:
            raise ValueError("not CAMERA_STAMP_SEQ.mkv")
        start = stamp_time(match["stamp"])
    except ValueError as exc:
        log.warning("%s: not a segment name (%s): skipped, never deleted", path, exc)
        return None
    if camera is not None and match["camera"] != camera:
        return None
    try:
        status = path.stat()
    except FileNotFoundError:  # deleted meanwhile (retention)
        return None
    seq = int(match["seq"]) if match["seq"] else None
    mtime = status.st_mtime
    return Segment(match["camera"], path, start, max(start, mtime), status.st_size, seq, mtime)


def camera_segments(folder: Path, camera: str | None = None) -> list[Segment]:
    """The segments in one camera's folder, in recording order (`Segment.order`)."""
    found = [s for p in folder.glob(f"*{SEGMENT_SUFFIX}") if (s := parse_segment(p, camera))]
    return sorted(found, key=lambda s: s.order)


def list_segments(root: Path, camera: str | None = None) -> list[Segment]:
    """The segments under `root` (one folder per camera), by UTC start."""
    folders = [root / camera] if camera else sorted(p for p in root.glob("*") if p.is_dir())
    found = []
    for folder in folders:
        mine = camera_segments(folder, camera)
        # A segment's last frames reach its file a little after the next one began (the muxer
        # gets whole keyframe intervals): it ends where the next begins, if that is sooner (and
        # not before its own start, which a clock stepped back between the two would give).
        for segment, after in itertools.pairwise(mine):
            end = max(segment.start, min(segment.end, after.start))
            found.append(dataclasses.replace(segment, end=end))
        found += mine[-1:]
    return sorted(found, key=lambda s: (s.start, s.camera))


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
    """The events files that `output.events` names in `folder` (one per run if it has `{run}`),
    each after its full pieces (`events-000001.jsonl`, ...), oldest first."""
    if not name:
        return []
    pattern = folder / name.replace("{run}", "*").replace("{camera}", "*")
    found = {p for p in pattern.parent.glob(pattern.name) if p.is_file()}
    pieces = {path: rotated_files(path) for path in found}
    current = sorted(found - {piece for listed in pieces.values() for piece in listed})
    return [piece for path in current for piece in [*pieces[path], path]]


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


def overlapping(segments: Iterable[Segment], start: float, end: float) -> list[Segment]:
    """The segments that overlap [start, end]: what an export of that range joins."""
    return [s for s in segments if s.end >= start and s.start <= end]


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
    chosen = overlapping(list_segments(root, name), start, end)
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
