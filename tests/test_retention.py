"""Retention that a clock step cannot fool, one size budget for all cameras, and the event and MOT
files rotated and bounded with the segments.

Segments here are small files with real names (retention reads names, sizes and times, never
frames), so each test takes milliseconds; `test_recordings.py` records real ones.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge import retention
from edge.config import load
from edge.metrics import Metrics
from edge.outputs import base
from edge.outputs.base import Sink
from edge.outputs.disk import OutputDisk
from edge.outputs.events import EventSink, read_events
from edge.outputs.mot import MotSink
from edge.outputs.records import EventRecords
from edge.outputs.run import Run
from edge.recordings import discard_unplayable_last, event_files, list_segments, segment_path
from edge.retention import DiskBudget, Retention, SideFiles, line_file_patterns
from edge.runtime import DeviceOutputs, open_sinks
from edge.types import Frame, Packet, Track, TrackEvent, TrackUpdate
from edge.utc import Clock, stamp
from tests.recorded import record_syncs

DAY = 86400.0
NOW = time.time()
IN_2023 = 1_680_000_000.0  # 2023-03-28: where a Jetson without an RTC battery may boot


class SteppedClock(Clock):
    """The system's clocks, with the wall clock set `offset` seconds away (as NTP steps it) and
    the monotonic one advanced by `elapsed` (time passing without waiting for it)."""

    def __init__(self) -> None:
        self.offset, self.elapsed = 0.0, 0.0

    def time(self) -> float:
        return time.time() + self.offset + self.elapsed

    def monotonic(self) -> float:
        return time.monotonic() + self.elapsed


def fake_segment(path: Path, written_at: float, size: int = 1000) -> Path:
    """A segment file of `size` bytes last written at UTC `written_at`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    os.utime(path, (written_at, written_at))
    return path


def earlier_run(
    folder: Path, camera: str, ages_days: list[float], first_seq: int = 1
) -> list[Path]:
    """Segments an earlier run left, oldest first, each written `age` days ago by a right clock."""
    return [
        fake_segment(segment_path(folder, camera, NOW - age * DAY - 60, seq), NOW - age * DAY)
        for seq, age in enumerate(ages_days, start=first_seq)
    ]


def record(retention: Retention, clock: SteppedClock, count: int) -> list[Path]:
    """Segments recorded in this run while the wall clock says `clock.time()`, each closed."""
    made = []
    for _ in range(count):
        path = fake_segment(retention.next_path(clock.time()), clock.time())
        retention.closed(path)
        made.append(path)
    return made


def test_fresh_segments_stamped_in_the_past_survive_keep_gb_and_keep_days(tmp_path: Path) -> None:
    folder = tmp_path / "recordings" / "cam0"
    earlier = earlier_run(folder, "cam0", [3.0, 2.0, 1.0])  # before the reboot: right clock
    clock = SteppedClock()
    clock.offset = IN_2023 - time.time()  # booted without RTC: the clock says 2023
    budget = DiskBudget(keep_bytes=4000)
    retention = Retention(folder, "cam0", None, 5 * DAY, Metrics(), budget, clock=clock)
    fresh = record(retention, clock, 3)
    assert all("_2023" in p.name for p in fresh)
    retention.enforce()
    # Four fit: the two oldest of the earlier run go, not the newest stamped in 2023.
    assert [p.exists() for p in earlier + fresh] == [False, False, True, True, True, True]
    assert [p.name[-10:-4] for p in fresh] == ["000004", "000005", "000006"]
    clock.offset = 0.0  # NTP steps the clock to the right time: 2023 looks 2 years old
    retention.enforce()
    assert all(p.exists() for p in fresh)
    assert [s.path for s in list_segments(folder.parent, "cam0")][:3] == fresh  # by stamp


def test_a_clock_stepped_back_a_day_and_forward_again_deletes_nothing_fresh(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "recordings" / "cam0"
    clock = SteppedClock()
    retention = Retention(folder, "cam0", None, DAY / 2, Metrics(), DiskBudget(), clock=clock)
    first = record(retention, clock, 2)
    for offset in (-DAY, +DAY, 0.0):  # back a day, forward again (and past it), then right
        clock.offset = offset
        first += record(retention, clock, 1)
        retention.enforce()
        assert all(p.exists() for p in first)
    clock.elapsed = DAY / 2 + 60  # half a day really passes: now they are old
    retention.enforce()
    assert not any(p.exists() for p in first)


def test_a_segment_written_while_the_clock_was_wrong_is_not_aged_by_it_at_the_next_start(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "recordings" / "cam0"
    (before,) = earlier_run(folder, "cam0", [1.0])
    # The run after a reboot without RTC wrote it in "2023"; NTP has set the clock since.
    wrong = fake_segment(segment_path(folder, "cam0", IN_2023, 2), IN_2023)
    Retention(folder, "cam0", None, 5 * DAY, Metrics(), DiskBudget()).enforce()
    assert before.exists()
    assert wrong.exists()


def test_an_impossible_or_garbage_name_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "recordings" / "cam0"
    month_13 = fake_segment(folder / "cam0_20251301T120000.000Z_000001.mkv", NOW - 9 * DAY)
    garbage = fake_segment(folder / "cam0_garbage.mkv", NOW - 9 * DAY)
    (kept,) = earlier_run(folder, "cam0", [1.0], first_seq=2)
    with caplog.at_level(logging.WARNING):
        retention = Retention(folder, "cam0", None, 2 * DAY, Metrics(), DiskBudget(keep_bytes=1))
        retention.enforce()
    assert month_13.exists()
    assert garbage.exists()
    assert not kept.exists()  # the real one still bounded
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any(month_13.name in w for w in warnings)
    assert any(garbage.name in w for w in warnings)
    assert [s.path for s in list_segments(folder.parent)] == []


def test_names_without_a_sequence_are_listed_and_go_first(tmp_path: Path) -> None:
    folder = tmp_path / "recordings" / "cam0"
    # Written before names had a sequence, while the clock said 2026: still the oldest.
    old = fake_segment(folder / f"cam0_{stamp(NOW + 200 * DAY)}.mkv", NOW - DAY)
    (new,) = earlier_run(folder, "cam0", [0.5], first_seq=7)
    retention = Retention(folder, "cam0", None, 0, Metrics(), DiskBudget(keep_bytes=1500))
    assert retention.next_path(NOW).name.endswith("_000008.mkv")  # continues after the largest
    assert {s.path for s in list_segments(folder.parent)} == {old, new}
    retention.enforce()
    assert not old.exists()
    assert new.exists()


def test_keep_gb_bounds_all_cameras_together_oldest_first(tmp_path: Path) -> None:
    root, metrics = tmp_path / "recordings", Metrics()
    budget = DiskBudget(keep_bytes=3000)
    door = earlier_run(root / "door", "door", [5.0, 3.0])
    yard = earlier_run(root / "yard", "yard", [4.0, 1.0])
    for camera in ("door", "yard"):
        Retention(root / camera, camera, None, 0, metrics, budget)
    clock = SteppedClock()
    gate = Retention(root / "gate", "gate", None, 0, metrics, budget, clock=clock)
    fresh = record(gate, clock, 1)
    gate.enforce()
    # 5 x 1000 bytes on three cameras, 3000 allowed: the two oldest of all go.
    assert [p.exists() for p in door + yard + fresh] == [False, True, False, True, True]
    assert metrics.snapshot().counters["segments_deleted"] == 2


def events_at(sink: Sink, first_frame: int, count: int) -> None:
    """`count` frames, each starting one track (ids from `first_frame`)."""
    for index in range(first_frame, first_frame + count):
        track = Track(index, 0, 0.9, (1.0, 2.0, 3.0, 4.0), age=1, hits=1, time_since_update=0)
        frame = Frame(index, np.zeros((2, 2, 3), np.uint8), time.monotonic(), index / 10, 10.0)
        update = TrackUpdate(index, [track], [TrackEvent(index, "started", track)])
        sink.write(Packet(frame, update=update), 10.0)


def test_events_rotate_and_every_piece_is_read_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "ROTATE_BYTES", 2000)  # a piece every few events
    path = tmp_path / "events.jsonl"
    sinks = [
        EventSink(path, EventRecords(Run(f"run-{camera}", camera, tmp_path), ("Normal",)))
        for camera in ("door", "yard")
    ]  # two cameras appending to one file, as with the shared output.dir
    for block in range(10):
        for sink in sinks:
            events_at(sink, block * 3, 3)
    for sink in sinks:
        sink.close([])
    files = event_files(tmp_path, "events.jsonl")
    assert len(files) > 3
    assert files[-1] == path
    assert all(p.stat().st_size < 2000 + 1000 for p in files)
    events = [e for p in files for e in read_events(p)]
    for camera in ("door", "yard"):
        assert [e["track_id"] for e in events if e["camera"] == camera] == list(range(30))


def test_finished_event_and_mot_files_are_bounded_with_the_segments(tmp_path: Path) -> None:
    budget = DiskBudget(keep_bytes=3500)
    names = ("events.jsonl", "runs/{run}/tracks.mot.txt")
    earlier_mot = fake_segment(tmp_path / "runs" / "run-1" / "tracks.mot.txt", NOW - 4 * DAY)
    piece = fake_segment(tmp_path / "events-000001.jsonl", NOW - 2 * DAY)
    current = Run("run-2", "cam0", tmp_path)
    budget.writing.update(current.path(name) for name in names)
    open_mot = fake_segment(current.path(names[1]), NOW - 5 * DAY)  # open: never taken
    open_events = fake_segment(tmp_path / "events.jsonl", NOW - 5 * DAY)
    SideFiles(tmp_path, line_file_patterns(names), 0, Metrics(), budget)
    folder = tmp_path / "recordings" / "cam0"
    segments = earlier_run(folder, "cam0", [3.0, 1.0])
    Retention(folder, "cam0", None, 0, Metrics(), budget).enforce()
    # 4 finished files of 1000 bytes, 3500 allowed: the oldest, the earlier run's MOT, goes.
    assert [p.exists() for p in [earlier_mot, *segments, piece]] == [False, True, True, True]
    assert open_mot.exists()
    assert open_events.exists()
    budget.keep_bytes = 1500
    budget.enforce()  # oldest first, whatever the kind: 3 days, then the 2-day-old piece
    assert [p.exists() for p in [*segments, piece]] == [False, True, False]


def test_event_lines_are_fsynced_at_most_once_a_second_and_at_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = record_syncs(monkeypatch, "fdatasync")
    path = tmp_path / "events.jsonl"
    sink = EventSink(path, EventRecords(Run("run", "cam0", tmp_path), ("Normal",)))
    started = time.monotonic()
    for index in range(25):  # 2.5 s of frames with an event each
        events_at(sink, index, 1)
        time.sleep(0.1)
    seconds = time.monotonic() - started
    during = len(synced)
    sink.close([])
    assert 2 <= during <= seconds / base.SYNC_S + 1
    assert len(synced) == during + 1
    assert synced[-1] == path.resolve()
    assert [json.loads(line)["track_id"] for line in path.read_text().splitlines()] == list(
        range(25)
    )


def test_mot_rows_to_a_pipe_read_live_are_never_fsynced_and_never_pause_the_disk(
    tmp_path: Path,
) -> None:
    pipe = tmp_path / "tracks.mot.txt"
    os.mkfifo(pipe)
    rows: list[str] = []
    reader = threading.Thread(target=lambda: rows.extend(pipe.read_text().splitlines()))
    reader.start()
    metrics = Metrics()
    sink = MotSink(pipe, disk=OutputDisk(tmp_path, metrics, min_free_bytes=0))
    for index in range(12):  # 1.2 s: an fsync would have been due
        events_at(sink, index, 1)
        time.sleep(0.1)
    sink.close([])
    reader.join(timeout=10)
    assert [int(row.split(",")[1]) for row in rows] == list(range(12))
    assert metrics.snapshot().gauges["output_paused"] == 0


def test_event_and_mot_pieces_written_while_the_clock_was_wrong_are_not_aged_by_it(
    tmp_path: Path,
) -> None:
    names = ("events.jsonl", "runs/{run}/tracks.mot.txt")
    mot = tmp_path / "runs" / "run-1" / "tracks.mot.txt"
    # Pieces cut before a reboot (right clock), then after it while the clock said 2023.
    right = [fake_segment(tmp_path / "events-000001.jsonl", NOW - 3 * DAY),
             fake_segment(mot.with_name("tracks-000001.mot.txt"), NOW - DAY)]  # fmt: skip
    wrong = [fake_segment(tmp_path / "events-000002.jsonl", IN_2023),
             fake_segment(mot, IN_2023 + 60)]  # fmt: skip
    metrics = Metrics()
    SideFiles(tmp_path, line_file_patterns(names), 5 * DAY, metrics, DiskBudget()).expire()
    assert all(p.exists() for p in right + wrong)
    assert metrics.snapshot().counters.get("side_files_deleted", 0) == 0


def test_a_piece_written_while_the_clock_was_wrong_does_not_go_first_under_keep_gb(
    tmp_path: Path,
) -> None:
    budget = DiskBudget(keep_bytes=3000)
    first = fake_segment(tmp_path / "events-000001.jsonl", NOW - 4 * DAY)
    wrong = fake_segment(tmp_path / "events-000002.jsonl", IN_2023)  # cut after the first
    SideFiles(tmp_path, line_file_patterns(["events.jsonl"]), 0, Metrics(), budget)
    folder = tmp_path / "recordings" / "cam0"
    oldest, newest = earlier_run(folder, "cam0", [5.0, 3.0])
    Retention(folder, "cam0", None, 0, Metrics(), budget).enforce()
    # 4 files of 1000 bytes, 3000 allowed: the 5-day-old segment goes, not the "2023" piece.
    assert [p.exists() for p in [oldest, first, wrong, newest]] == [False, True, True, True]


def test_a_camera_without_video_still_bounds_its_event_and_mot_files(tmp_path: Path) -> None:
    """No segments grow to apply the bounds: the camera's output thread does, once a second."""
    earlier_mot = fake_segment(tmp_path / "runs" / "run-1" / "tracks.mot.txt", NOW - 40 * DAY)
    piece = fake_segment(tmp_path / "events-000001.jsonl", NOW - 1 * DAY)
    config = load(None, [f"output.dir='{tmp_path}'", "output.video=''", "output.keep_days=30",
                         "output.snapshots=false"])  # fmt: skip
    sinks = open_sinks(config, ("Normal", "Fall"), Metrics(), DeviceOutputs(config))
    packet = Packet(Frame(0, np.zeros((8, 8, 3), np.uint8), time.monotonic(), 0.0, 10.0))
    packet.update = TrackUpdate(0, [], [])
    for sink in sinks:
        sink.write(packet, 10.0)
    assert not earlier_mot.exists()  # older than keep_days
    assert piece.exists()
    for sink in sinks:
        sink.close([])


def test_the_free_space_floor_deletes_only_what_it_lacks_when_free_space_reads_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free space is read once per check and counted down by what is deleted: on a file system
    that reports deletions late (btrfs, ZFS), or a file still open elsewhere, reading it again
    would find it still low and delete every recording."""
    monkeypatch.setattr(retention, "free_bytes", lambda _folder: 1000)  # never moves
    budget = DiskBudget(min_free_bytes=3500)
    folder = tmp_path / "recordings" / "cam0"
    segments = earlier_run(folder, "cam0", [6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    Retention(folder, "cam0", None, 0, Metrics(), budget).enforce()
    # 2500 bytes lacking: three of the 1000-byte segments, the oldest.
    assert [p.exists() for p in segments] == [False, False, False, True, True, True]


def test_the_unplayable_stub_a_kill_left_goes_even_when_its_stamp_is_earlier(
    tmp_path: Path,
) -> None:
    """The newest segment is the one with the highest sequence number, whatever the clock
    stamped in its name (a boot without RTC, then NTP)."""
    folder = tmp_path / "recordings" / "cam0"
    stub = fake_segment(segment_path(folder, "cam0", NOW - 2 * DAY, 7), NOW)  # header only
    older = fake_segment(segment_path(folder, "cam0", NOW - 60, 6), NOW - 60)
    assert discard_unplayable_last(folder, "cam0") == stub
    assert older.exists()
