"""The web page's events index (SQLite over real events files) and the choice of what to play
for an event."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from edge.outputs.base import rotated_path
from edge.recordings import Segment
from edge.utc import iso
from edge.web import events as events_module
from edge.web.events import EventIndex, Query
from edge.web.recordings import PRE_ROLL_S, clip_at

T0 = 1_750_000_000.0


def _event(camera: str, n: int, kind: str = "started", cls: str = "Normal") -> str:
    record = {"id": f"run1/{n}", "run": "run1", "camera": camera, "utc": iso(T0 + n),
              "event": kind, "track_id": n, "class": cls}  # fmt: skip
    return json.dumps(record) + "\n"


def _ids(found: list[dict[str, object]]) -> list[str]:
    return [str(e["id"]) for e in found]


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(_event("cam0", n) for n in range(1, 4)))
    return path


def test_query_newest_first_with_filters(tmp_path: Path, events: Path) -> None:
    with events.open("a") as stream:
        stream.write(_event("cam1", 4, cls="Fall") + _event("cam0", 5, kind="ended"))
    index = EventIndex(tmp_path / "index.sqlite")
    index.update([events])
    assert _ids(index.query(Query())) == ["run1/5", "run1/4", "run1/3", "run1/2", "run1/1"]
    assert _ids(index.query(Query(camera="cam1"))) == ["run1/4"]
    assert _ids(index.query(Query(kind="started", cls="Normal"))) == ["run1/3", "run1/2", "run1/1"]
    assert _ids(index.query(Query(since=T0 + 2, until=T0 + 4))) == ["run1/4", "run1/3", "run1/2"]
    assert _ids(index.query(Query(limit=2))) == ["run1/5", "run1/4"]
    assert index.classes() == ["Fall", "Normal"]


def test_appended_lines_are_read_once_and_a_torn_last_line_waits(
    tmp_path: Path, events: Path
) -> None:
    index = EventIndex(tmp_path / "index.sqlite")
    index.update([events])
    torn = _event("cam0", 4)
    with events.open("a") as stream:
        stream.write(torn[:20])  # a line still being written
    index.update([events])
    assert len(index.query(Query())) == 3
    with events.open("a") as stream:
        stream.write(torn[20:] + _event("cam0", 5))
    index.update([events])
    index.update([events])
    assert _ids(index.query(Query())) == ["run1/5", "run1/4", "run1/3", "run1/2", "run1/1"]


def test_rotation_replacement_and_deletion_keep_the_index_true(
    tmp_path: Path, events: Path
) -> None:
    index = EventIndex(tmp_path / "index.sqlite")
    index.update([events])
    piece = rotated_path(events, 1)
    events.rename(piece)  # as LineFile rotates: the full piece keeps its inode
    events.write_text(_event("cam0", 4))
    index.update([piece, events])
    assert _ids(index.query(Query())) == ["run1/4", "run1/3", "run1/2", "run1/1"]
    piece.unlink()  # retention deleted the oldest piece
    index.update([events])
    assert _ids(index.query(Query())) == ["run1/4"]
    events.write_text(_event("cam0", 7).replace("run1", "r"))  # cut shorter: read again
    index.update([events])
    assert _ids(index.query(Query())) == ["r/7"]


def test_a_limit_below_one_is_refused_and_none_returns_more_than_the_most(
    tmp_path: Path, events: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reads `LIMIT -1` as no limit: `?limit=-1` must not list every event."""
    with pytest.raises(ValueError, match="limit must be at least 1, not -1"):
        Query(limit=-1)
    monkeypatch.setattr(events_module, "MAX_RESULTS", 2)
    index = EventIndex(tmp_path / "index.sqlite")
    index.update([events])
    assert _ids(index.query(Query(limit=10**9))) == ["run1/3", "run1/2"]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_index_is_rebuilt(tmp_path: Path, events: Path, damage: str) -> None:
    path = tmp_path / "index.sqlite"
    first = EventIndex(path)
    first.update([events])
    first.close()
    if damage == "missing":
        os.unlink(path)
    else:
        path.write_bytes(b"this is not a database" * 100)
    index = EventIndex(path)
    index.update([events])
    assert _ids(index.query(Query())) == ["run1/3", "run1/2", "run1/1"]


def test_indexing_a_file_takes_memory_by_line_not_by_file(tmp_path: Path) -> None:
    """An events piece is up to 64 MiB: read whole, with its rows, it took ~6x that beside the
    pipeline."""
    path = tmp_path / "events.jsonl"
    path.write_text("".join(_event("cam0", n) for n in range(5_000)))  # about 0.7 MB
    index = EventIndex(tmp_path / "index.sqlite")
    tracemalloc.start()
    try:
        index.update([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(index.query(Query(limit=10**6))) == events_module.MAX_RESULTS
    assert peak < path.stat().st_size / 4, peak


def test_an_index_damaged_while_open_is_rebuilt(tmp_path: Path, events: Path) -> None:
    path = tmp_path / "index.sqlite"
    index = EventIndex(path)
    index.update([events])
    with path.open("r+b") as stream:  # the same file, its pages overwritten
        stream.write(b"this is not a database" * 400)
    index.update([events])
    assert _ids(index.query(Query())) == ["run1/3", "run1/2", "run1/1"]
    assert index.classes() == ["Normal"]


def _segment(start: float, end: float) -> Segment:
    return Segment("cam0", Path(f"cam0_{start}.mkv"), start, end, 1000)


def test_an_event_plays_from_before_it_in_the_segment_recording_then() -> None:
    segments = [_segment(T0, T0 + 60), _segment(T0 + 60, T0 + 120)]
    assert clip_at(segments, T0 + 90) == (segments[1], 30 - PRE_ROLL_S)
    # Just after a segment began: from the previous one, a few seconds before.
    assert clip_at(segments, T0 + 62) == (segments[0], 62 - PRE_ROLL_S)
    # The first seconds of the recording: from its start.
    assert clip_at(segments, T0 + 2) == (segments[0], 0.0)
    assert clip_at(segments, T0 + 500) is None
