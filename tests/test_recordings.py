"""Recordings that survive kills, restarts, reboots and a full disk; their index and export.

The first tests drive the sinks directly with synthetic frames (real GStreamer, real files, no
models: seconds each). The acceptance tests run `python -m edge run` as a process on the sample
video or `test://` and measure what a kill, a restart, a size bound and a full disk leave behind.
Tests that fill a disk mount a small tmpfs, which needs root (CAP_SYS_ADMIN); without it they
are skipped, saying so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from benchmarks.processes import fd_count, free_port, rss_kib
from edge.__main__ import COMMANDS
from edge.cli import main
from edge.config import load
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.outputs.base import Sink
from edge.outputs.events import EventSink, read_events
from edge.outputs.records import EventRecords
from edge.outputs.run import Run, TrackIdLedger
from edge.recordings import (
    MATROSKA_CLUSTER,
    export,
    has_frames,
    list_segments,
    segment_path,
    snapshot_name,
)
from edge.retention import DiskBudget, Retention
from edge.runtime import DeviceOutputs, open_sinks
from edge.types import Frame, Packet, Track, TrackEvent, TrackUpdate
from edge.utc import parse_time
from edge.video.encoders import SegmentRecorder, segment_pipeline
from export.data import data_file
from tests.recorded import decode, decoded_frames, record_syncs, segments

ROOT = Path(__file__).resolve().parent.parent


# --- helpers -------------------------------------------------------------------------------


def sinks_for(folder: Path, *overrides: str) -> tuple[list[Sink], Metrics]:
    """The runtime's sinks for an output folder (class names of the offline model)."""
    metrics = Metrics()
    config = load(None, [f"output.dir='{folder}'", "output.bitrate_kbps=300", *overrides])
    return open_sinks(config, ("Normal", "Fall"), metrics, DeviceOutputs(config)), metrics


def walker(track_id: int, x: float) -> Track:
    return Track(track_id, 0, 0.9, (x, 20.0, x + 30.0, 90.0), age=5, hits=5, time_since_update=0)


def feed(sinks: list[Sink], first: int, count: int, fps: float = 10.0, live_s: float = 0.0) -> None:
    """Frames `first`..`first+count-1` of a 120×160 scene with one walker (track `first + 1`,
    started at the first frame), `live_s` apart in wall time."""
    track_id = first + 1
    for index in range(first, first + count):
        image = np.full((120, 160, 3), 40, np.uint8)
        x = 5.0 + 3 * (index - first)
        image[20:90, int(x) : int(x) + 30] = (40, 180, 250)
        track = walker(track_id, x)
        events = [TrackEvent(index, "started", track)] if index == first else []
        update = TrackUpdate(index, [track], events)
        packet = Packet(Frame(index, image, time.monotonic(), index / fps, fps), update=update)
        for sink in sinks:
            sink.write(packet, fps)
        time.sleep(live_s)


def close(sinks: list[Sink]) -> None:
    for sink in sinks:
        sink.close([])


def edge_process(args: list[str], log: Path) -> subprocess.Popen[str]:
    """`python -m edge run ARGS` with its log in a file."""
    with log.open("w") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", "edge", "run", *args],
            cwd=ROOT,
            stdout=stream,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def wait_for(
    condition: Callable[[], bool], process: subprocess.Popen[str], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, "edge run exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def metric(port: int, name: str) -> float:
    """One value from the runtime's /metrics (its one camera's, or the device's)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith((f"{name} ", f"{name}{{")):
                return float(line.split()[-1])
    return 0.0


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mounts a tmpfs of a given size (e.g. "4m") under tmp_path; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip()}): run as root to test disks")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full; return it."""
    filler = folder / "filler"
    # Unbuffered: a buffered file would try its unwritten bytes again on close and raise there.
    with filler.open("wb", buffering=0) as stream:
        try:
            while True:
                stream.write(b"\0" * (1 << 16))
        except OSError:
            pass
    return filler


# --- segments, events, index, export ------------------------------------------------------


def test_segments_are_named_by_camera_and_utc_and_each_plays_alone(tmp_path: Path) -> None:
    before = time.time()
    sinks, metrics = sinks_for(tmp_path, "source.name='door'", "output.segment_s=1")
    feed(sinks, 0, 35)  # 3.5 s of stream at 10 FPS
    close(sinks)
    found = list_segments(tmp_path / "recordings", "door")
    assert [s.path.parent.name for s in found] == ["door"] * 4
    assert all(s.path.name.startswith("door_") for s in found)
    starts = [s.start for s in found]
    assert before - 0.05 <= starts[0]  # wall time from monotonic: a few ms of jitter
    assert starts == sorted(starts)
    assert starts[-1] <= time.time()
    assert [decoded_frames(s.path) for s in found] == [(10, (120, 160))] * 3 + [(5, (120, 160))]
    assert metrics.snapshot().counters["segments_recorded"] == 4


def test_export_joins_a_time_range_without_reencoding(tmp_path: Path) -> None:
    sinks, _ = sinks_for(tmp_path, "output.segment_s=1")
    feed(sinks, 0, 30, live_s=0.02)
    close(sinks)
    parts = list_segments(tmp_path / "recordings")
    joined = export(tmp_path / "recordings", parts[0].start, time.time(), tmp_path / "all.mp4")
    assert joined == parts
    assert decoded_frames(tmp_path / "all.mp4") == (30, (120, 160))
    # The H.264 data is copied: the file is the segments' size, give or take the containers.
    size = sum(p.size for p in parts)
    assert 0.8 * size < (tmp_path / "all.mp4").stat().st_size < 1.2 * size
    middle = parts[1]
    one = export(
        tmp_path / "recordings", middle.start + 0.001, middle.end - 0.001, tmp_path / "1.mkv"
    )
    assert one == [middle]
    assert decoded_frames(tmp_path / "1.mkv")[0] == 10
    with pytest.raises(EdgeError, match="no recording of cam0 between"):
        export(tmp_path / "recordings", 0.0, 1.0, tmp_path / "none.mp4")
    with pytest.raises(EdgeError, match=r"name a \.mp4 or \.mkv"):
        export(tmp_path / "recordings", 0.0, time.time(), tmp_path / "x.avi")
    assert not (tmp_path / "none.mp4").exists()


def test_export_refuses_to_join_segments_of_different_sizes(tmp_path: Path) -> None:
    sinks, _ = sinks_for(tmp_path, "output.segment_s=1")
    feed(sinks, 0, 10)
    close(sinks)
    wide, _ = sinks_for(tmp_path, "output.segment_s=1")
    image = np.zeros((240, 320, 3), np.uint8)
    for index in range(10):
        packet = Packet(Frame(index, image, time.monotonic(), index / 10, 10.0))
        for sink in wide:
            sink.write(packet, 10.0)
    close(wide)
    with pytest.raises(EdgeError, match="recorded at another size or encoding"):
        export(tmp_path / "recordings", 0.0, time.time(), tmp_path / "both.mp4")
    assert not list(tmp_path.glob("*.mp4"))


def test_listing_shows_each_segment_with_the_events_inside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sinks, _ = sinks_for(tmp_path, "output.segment_s=1")
    feed(sinks, 0, 10, live_s=0.03)  # track 1 starts in the first segment ...
    feed(sinks, 10, 10, live_s=0.03)  # ... track 11 in the second
    close(sinks)
    assert main("edge", "", COMMANDS, ["recordings", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.startswith("cam0 ") for line in lines] == [True, False, True, False]
    assert "1 events" in lines[0]
    assert "started  track 1 " in lines[1]
    assert "1 events" in lines[2]
    assert "started  track 11 " in lines[3]
    second = segments(tmp_path)[1].stem.split("_")[1]  # its start, as a stamp
    assert (
        main("edge", "", COMMANDS, ["recordings", "--dir", str(tmp_path), "--since", second]) == 0
    )
    assert capsys.readouterr().out.splitlines() == lines[2:]


def test_a_torn_last_line_is_skipped_by_the_reader_and_ended_by_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event": "started", "track_id": 1}\n{"event": "ended", "tra')  # power cut
    with caplog.at_level(logging.WARNING):
        assert [e["track_id"] for e in read_events(events)] == [1]
    assert "last line 2 is not a complete event" in caplog.text
    run = Run("20250601T120305Z-3fa1", "cam0", tmp_path)
    sink = EventSink(events, EventRecords(run, ["Normal"]))
    feed([sink], 0, 1)
    sink.close([])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert [e["track_id"] for e in read_events(events)] == [1, 1]
    assert "line 2 is not a complete event" in caplog.text  # the torn line stays, on its own
    assert events.read_text().endswith("}\n")


def test_retention_deletes_the_oldest_segments_and_their_snapshots(tmp_path: Path) -> None:
    folder, shots = tmp_path / "recordings" / "cam0", tmp_path / "snapshots" / "cam0"
    folder.mkdir(parents=True)
    shots.mkdir(parents=True)
    now = time.time()
    paths = []
    for seq, age_days in enumerate((10, 9, 3, 2, 1), 1):  # five segments of 1000 bytes, a day apart
        start = now - age_days * 86400
        path = segment_path(folder, "cam0", start, seq)
        path.write_bytes(b"\0" * 1000)
        os.utime(path, (start + 60, start + 60))
        (shots / snapshot_name("cam0", start + 30, "run", age_days)).write_bytes(b"jpg")
        paths.append(path)
    metrics = Metrics()
    by_age = Retention(folder, "cam0", shots, 5 * 86400, metrics, DiskBudget())
    by_age.enforce()
    assert [p.exists() for p in paths] == [False, False, True, True, True]
    assert sorted(int(p.stem.split("track")[-1]) for p in shots.glob("*.jpg")) == [1, 2, 3]
    by_size = Retention(folder, "cam0", shots, 0, metrics, DiskBudget(keep_bytes=2500))
    by_size.enforce()
    assert [p.exists() for p in paths] == [False, False, False, True, True]
    counters = metrics.snapshot().counters
    assert counters["segments_deleted"] == 3
    assert counters["recording_bytes_deleted"] == 3000
    assert counters["snapshots_deleted"] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-01T12:03:05Z", 1748779385.0),
        ("2025-06-01 12:03:05", 1748779385.0),
        ("2025-06-01T14:03:05+02:00", 1748779385.0),
        ("20250601T120305.512Z", 1748779385.512),
        ("15m", 1_000_000.0 - 900),
        ("2h", 1_000_000.0 - 7200),
        ("now", 1_000_000.0),
    ],
)
def test_times_a_person_types(text: str, expected: float) -> None:
    assert parse_time(text, now=1_000_000.0) == pytest.approx(expected)


def test_a_time_that_is_not_one_is_refused() -> None:
    with pytest.raises(EdgeError, match="'yesterday' is not a time: use ISO 8601"):
        parse_time("yesterday")


@pytest.mark.parametrize(
    ("jetson", "encoder"),
    [
        (True, "nvv4l2h264enc bitrate=4000000 iframeinterval=30 idrinterval=30 insert-sps-pps"),
        (False, "x264enc bitrate=4000 speed-preset=ultrafast key-int-max=30 ! h264parse"),
    ],
)
def test_segments_get_a_keyframe_every_second_on_every_platform(jetson: bool, encoder: str) -> None:
    text = segment_pipeline(640, 480, 30.0, 4000, 60.0, lambda _element: jetson)
    assert encoder in text
    assert text.endswith(
        "splitmuxsink name=rec muxer=matroskamux max-size-time=60000000000 "
        "send-keyframe-requests=true"
    )


def test_segments_last_their_time_when_the_pipeline_passes_fewer_frames(tmp_path: Path) -> None:
    """A 30 FPS camera of which the pipeline keeps 4 frames a second: keyframes still come every
    second of stream time, so segments still end on time (and a kill still loses ~1 s)."""
    recorder = SegmentRecorder(160, 120, 30.0, 300, 3.0, lambda utc: tmp_path / f"{utc:.2f}.mkv")
    for index in range(60):  # 15 s
        image = np.random.default_rng(index).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        recorder.write(image, index * 0.25, 1000 + index * 0.25)
        recorder.poll()
    recorder.close()
    files = sorted(tmp_path.glob("*.mkv"))
    starts = [float(f.stem) for f in files]
    # A keyframe request reaches the encoder a frame or two late on a busy machine: a segment
    # may end one keyframe (1 s) after its 3 s are up, never sooner, never later.
    assert starts[0] == 1000.0
    assert all(3.0 <= b - a <= 4.0 for a, b in pairwise(starts))
    assert 4 <= len(files) <= 5
    assert sum(decoded_frames(f)[0] for f in files) == 60


# --- full and read-only disks, at the sinks -----------------------------------------------


def test_a_read_only_disk_pauses_every_file_output_and_writing_resumes(
    small_disk: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    # A file system with files open for writing cannot be remounted read-only, so this one is
    # read-only from the start (as after an ext4 error with errors=remount-ro and a restart).
    folder = small_disk("8m")
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    with caplog.at_level(logging.INFO):
        # A tiny disk is below any free-space floor: that would delete every segment (tested apart).
        sinks, metrics = sinks_for(folder, "output.segment_s=1", "output.min_free_gb=0")
        sinks[0].sink.disk.retry_s = 0.2  # type: ignore[attr-defined]  # the guarded ledger's
        feed(sinks, 0, 15)  # a track and 1.5 s of video, while nothing can be written
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True)
        time.sleep(0.3)
        feed(sinks, 15, 15, live_s=0.02)
    close(sinks)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "Read-only file system" in errors[0]
    assert "writing resumed" in caplog.text
    counters = metrics.snapshot().counters
    assert counters["disk_errors"] == 1
    assert counters["frames_not_recorded"] == 15
    assert [e["track_id"] for e in read_events(folder / "events.jsonl")] == [16]
    assert [decoded_frames(path)[0] for path in segments(folder)] == [10, 5]
    assert (folder / "next_track_id").read_text() == "17\n"


def test_a_full_disk_at_start_does_not_stop_the_run(
    small_disk: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    folder = small_disk("2m")
    filler = fill(folder)
    with caplog.at_level(logging.INFO):
        sinks, metrics = sinks_for(folder / "out", "output.segment_s=1", "output.min_free_gb=0")
        sinks[0].sink.disk.retry_s = 0.1  # type: ignore[attr-defined]  # the guarded ledger's
        feed(sinks, 0, 10)
        filler.unlink()
        time.sleep(0.2)
        feed(sinks, 10, 20, live_s=0.01)
    close(sinks)
    assert metrics.snapshot().counters["disk_errors"] == 1
    assert "No space left on device" in caplog.text
    assert sum(decoded_frames(path)[0] for path in segments(folder / "out")) >= 15


# --- acceptance: the runtime as a process ---------------------------------------------------


def test_sigkill_loses_at_most_two_seconds_and_no_event_line(
    model_overrides: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL at a random moment: every closed segment decodes completely, the open one up to
    within 2 s (stream time) of the last frame written, and every event line parses."""
    seed = random.randrange(1 << 16)
    extra_s = random.Random(seed).uniform(0.0, 4.0)
    process = edge_process(
        ["--source", str(data_file("vtest.avi")), "output.segment_s=2",
         f"output.dir='{tmp_path}'", *model_overrides],
        tmp_path / "edge.log",
    )  # fmt: skip
    try:
        wait_for(lambda: len(segments(tmp_path)) >= 3, process, 300)  # two closed, one open
        time.sleep(extra_s)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    (mot,) = tmp_path.glob("runs/*/tracks.mot.txt")
    written = max(int(line.split(",")[0]) for line in mot.read_text().splitlines())
    *closed, last = segments(tmp_path)
    for path in closed:  # 2 s at 10 FPS each, read to the end without error
        assert decoded_frames(path) == (20, (576, 768)), path.name
    in_last, _, error = decode(last)
    recorded = 20 * len(closed) + in_last
    lost_frames = written - recorded
    print(  # the numbers docs/recording.md quotes
        f"\nSIGKILL {extra_s:.2f} s after the third segment opened (seed {seed}): "
        f"{written} frames written, {recorded} decodable, lost {lost_frames} frames = "
        f"{lost_frames / 10:.1f} s of video; open segment: {in_last} frames, error: {error}"
    )
    assert 0 <= lost_frames <= 20
    raw = (tmp_path / "events.jsonl").read_text()
    assert raw.endswith("\n")
    assert all(json.loads(line) for line in raw.splitlines())  # every line parses
    with caplog.at_level(logging.WARNING):
        assert len(list(read_events(tmp_path / "events.jsonl"))) == len(raw.splitlines())
    assert "not a complete event" not in caplog.text


def test_a_second_run_keeps_the_first_runs_outputs_and_never_reuses_an_id(
    model_overrides: list[str], tmp_path: Path
) -> None:
    args = ["--source", str(data_file("vtest.avi")), "source.max_frames=40",
            "output.segment_s=2", f"output.dir='{tmp_path}'", *model_overrides]  # fmt: skip
    first = edge_process(args, tmp_path / "first.log")
    assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-2000:]
    before = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file() and "log" not in p.name}
    first_events = (tmp_path / "events.jsonl").read_bytes()
    second = edge_process(args, tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-2000:]
    for path, sha in before.items():  # every file of the first run is still there, unchanged
        if path.name not in ("events.jsonl", "next_track_id"):
            assert digest(path) == sha, path
    assert (tmp_path / "events.jsonl").read_bytes().startswith(first_events)  # appended
    events = list(read_events(tmp_path / "events.jsonl"))
    runs = sorted({e["run"] for e in events})
    assert len(runs) == 2
    assert len(list(tmp_path.glob("runs/*/summary.json"))) == 2
    assert len({e["id"] for e in events}) == len(events)  # event ids unique across runs
    ids = {run: {e["track_id"] for e in events if e["run"] == run} for run in runs}
    assert ids[runs[0]]
    assert ids[runs[1]]
    assert max(ids[runs[0]]) < min(ids[runs[1]])  # track ids continue, never collide
    assert len(segments(tmp_path)) >= 4  # each run: 4 s of video in 2 s segments
    for path in segments(tmp_path):
        decoded_frames(path)
    snapshots = [p.name for p in (tmp_path / "snapshots" / "cam0").glob("*.jpg")]
    assert {run for run in runs if any(run in name for name in snapshots)} == set(runs)


def test_keep_gb_deletes_the_oldest_segments_while_the_run_goes_on(
    model_overrides: list[str], tmp_path: Path
) -> None:
    keep = 600_000  # bytes: about five 1-second segments of snow at 1000 kbit/s
    process = edge_process(
        ["--source", "test://", "source.pattern='snow'", "source.width=320",
         "source.height=240", "output.segment_s=1", "output.bitrate_kbps=1000",
         f"output.keep_gb={keep / 1e9}", f"output.dir='{tmp_path}'", *model_overrides],
        tmp_path / "edge.log",
    )  # fmt: skip
    totals, deleted_names = [], set()
    try:
        first: Path | None = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(deleted_names) < 4:
            assert process.poll() is None, (tmp_path / "edge.log").read_text()[-2000:]
            found = segments(tmp_path)
            first = first or (found[0] if found else None)
            totals.append(sum(p.stat().st_size for p in found if p.exists()))
            log = (tmp_path / "edge.log").read_text()
            deleted_names = {line.split("deleted ")[1].split()[0] for line in log.splitlines()
                             if "output.keep_gb reached" in line}  # fmt: skip
            time.sleep(0.05)
        assert first is not None
        assert not first.exists()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert len(deleted_names) >= 4
    print(
        f"\nkeep_gb: {len(totals)} samples of the folder, largest {max(totals)} B, bound {keep} B"
    )
    assert max(totals) <= keep
    remaining = segments(tmp_path)
    assert sum(p.stat().st_size for p in remaining) <= keep
    for path in remaining:
        decoded_frames(path)


def test_each_closed_segment_and_its_folder_entry_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = record_syncs(monkeypatch)
    sinks, _ = sinks_for(tmp_path, "output.segment_s=1", "output.events=''")
    feed(sinks, 0, 25)
    close(sinks)
    found = segments(tmp_path)
    assert len(found) == 3
    folder = found[0].parent.resolve()
    assert [p for p in synced if p.suffix == ".mkv"] == [p.resolve() for p in found]
    assert synced.count(folder) == len(found)


def test_the_track_id_ledger_comes_first_and_is_fsynced_before_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = record_syncs(monkeypatch)
    sinks, _ = sinks_for(tmp_path, "output.video=''", "output.snapshots=false")
    assert type(sinks[0].sink) is TrackIdLedger  # type: ignore[attr-defined]  # guarded
    feed(sinks[:1], 0, 1)  # only the ledger: a new id is durable before any output shows it
    close(sinks)
    assert (tmp_path / "next_track_id").read_text() == "2\n"
    folder = tmp_path.resolve()
    assert synced == [folder / ".next_track_id.partial", folder]  # data, then the new name


def test_a_disk_filled_while_paused_is_freed_by_min_free_gb_and_recording_resumes(
    tmp_path: Path, small_disk: Callable[[str], Path]
) -> None:
    folder = small_disk("4m")
    earlier = folder / "recordings" / "cam0"
    earlier.mkdir(parents=True)
    old = [segment_path(earlier, "cam0", time.time() - 3600 + i, i + 1) for i in range(4)]
    source, _ = sinks_for(tmp_path / "playable", "output.segment_s=1")  # earlier runs' segments
    feed(source, 0, 10)
    close(source)
    playable = segments(tmp_path / "playable")[0].read_bytes()
    for path in old:
        path.write_bytes(playable.ljust(400_000, b"\0"))
    # Writing resumes with 1 MiB free (10 s of video at least): the floor lies above it.
    sinks, metrics = sinks_for(folder, "output.segment_s=1", "output.min_free_gb=0.0011")
    feed(sinks, 0, 10, live_s=0.02)
    filler = fill(folder)  # someone else's file: never ours to delete
    before = set(segments(folder))
    feed(sinks, 10, 70, live_s=0.1)  # 7 s: paused, freed by retention, probed again after 5 s
    close(sinks)
    assert filler.exists()
    assert [p.exists() for p in old] == [False, False, False, True]
    snap = metrics.snapshot()
    assert snap.counters["segments_deleted"] == 3
    assert snap.counters["disk_errors"] == 1
    assert snap.gauges["output_paused"] == 0
    assert set(segments(folder)) - before  # recording resumed


def test_a_full_disk_pauses_recording_not_the_pipeline(
    model_overrides: list[str], tmp_path: Path, small_disk: Callable[[str], Path]
) -> None:
    folder, port = small_disk("6m"), free_port()
    process = edge_process(
        ["--source", "test://", "source.width=160", "source.height=120", "output.segment_s=2",
         "output.bitrate_kbps=300", f"health.metrics_port={port}", f"output.dir='{folder}'",
         "pipeline.log_every_s=1", "output.min_free_gb=0", *model_overrides],
        tmp_path / "edge.log",
    )  # fmt: skip
    try:
        wait_for(lambda: len(segments(folder)) >= 2, process, 300)
        filler = fill(folder)
        wait_for(lambda: metric(port, "edge_output_paused") == 1, process, 60)
        frames = metric(port, "edge_frames_total")
        time.sleep(3)
        assert metric(port, "edge_frames_total") > frames + 5  # detection and tracking go on
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            assert reply.status == 200
        assert metric(port, "edge_disk_errors_total") == 1
        assert metric(port, "edge_frames_not_recorded_total") > 0
        paused_with = len(segments(folder))
        filler.unlink()
        wait_for(lambda: metric(port, "edge_output_paused") == 0, process, 30)
        wait_for(lambda: len(segments(folder)) >= paused_with + 2, process, 60)
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=60)
    log = (tmp_path / "edge.log").read_text()
    assert status == 0, log[-2000:]
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "No space left" in errors[0]
    print(f"\nfull disk: {errors[0]}")
    assert "writing resumed" in log
    for path in segments(folder):  # the one the disk cut short decodes up to where it stopped
        count, _, _ = decode(path)
        assert count > 0, path.name


@pytest.mark.slow
def test_twenty_minutes_of_ten_second_segments(model_overrides: list[str], tmp_path: Path) -> None:
    """20 minutes on test:// with segment_s=10: file descriptors and RSS flat, every segment
    playable."""
    process = edge_process(
        ["--source", "test://", "source.width=320", "source.height=240", "output.segment_s=10",
         f"output.dir='{tmp_path}'", *model_overrides],
        tmp_path / "edge.log",
    )  # fmt: skip
    samples: list[tuple[float, int, int]] = []
    try:
        wait_for(lambda: len(segments(tmp_path)) >= 2, process, 300)  # warmed up
        started = time.monotonic()
        while time.monotonic() - started < 20 * 60:
            assert process.poll() is None
            samples.append(
                (time.monotonic() - started, fd_count(process.pid), rss_kib(process.pid))
            )
            time.sleep(10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    fds, rss = [s[1] for s in samples], [s[2] for s in samples]
    print(f"\nsoak: {len(segments(tmp_path))} segments, fds {min(fds)}..{max(fds)}, "
          f"RSS {rss[0]} -> {rss[-1]} KiB (max {max(rss)})")  # fmt: skip
    assert max(fds) - min(fds) <= 2
    assert max(rss[len(rss) // 4 :]) < rss[len(rss) // 4] * 1.05
    for path in segments(tmp_path):
        count, _, error = decode(path)
        assert count > 0, path.name
        assert error is None, path.name


def test_recording_and_export_in_a_folder_with_quotes_and_bangs(tmp_path: Path) -> None:
    """Paths reach GStreamer as element properties: no name breaks (or extends) a pipeline."""
    folder = tmp_path / 'it\'s a "cam" ! folder'
    sinks, _ = sinks_for(folder, f"output.dir={json.dumps(str(folder))}", "output.segment_s=1")
    feed(sinks, 0, 20)
    close(sinks)
    output = folder / 'all "of it" !.mkv'
    joined = export(folder / "recordings", 0.0, time.time(), output)
    assert len(joined) == 2
    assert decoded_frames(output) == (20, (120, 160))


def test_a_segment_cut_before_its_first_frame_is_not_kept(tmp_path: Path) -> None:
    """A full disk or a kill can leave a segment with its header and the start of its first
    cluster but no whole frame (seen in the fault run: FFmpeg decodes nothing). `has_frames`
    says so, and the next start deletes such a newest segment, never a playable one."""
    sinks, _ = sinks_for(tmp_path, "output.segment_s=1")
    feed(sinks, 0, 25)
    close(sinks)
    first, *_, last = segments(tmp_path)
    data = last.read_bytes()
    cut = data.index(MATROSKA_CLUSTER) + 40  # the cluster begins, its first frame does not end
    last.write_bytes(data[:cut])
    assert has_frames(first)
    assert not has_frames(last)
    sinks, _ = sinks_for(tmp_path, "output.segment_s=1")  # the next start
    close(sinks)
    assert not last.exists()
    assert first.exists()
    assert decoded_frames(first)[0] == 10
