"""Reading back what `edge run` wrote: segments decoded with GStreamer, per-run files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.recordings import list_segments
from edge.video import gst


def decode(video: Path) -> tuple[int, tuple[int, ...], str | None]:
    """Frames decoded from a video file, their (height, width), and the error that stopped the
    decoder early (None when it read to the end)."""
    Gst = gst.init()
    pipeline = Gst.parse_launch(
        f"filesrc name={gst.FILE} ! decodebin ! videoconvert ! video/x-raw,format=BGR "
        "! appsink name=sink sync=false"
    )
    gst.set_location(pipeline, video)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    count, shape = 0, ()
    while (sample := sink.emit("try-pull-sample", 10 * Gst.SECOND)) is not None:
        image, _, _ = gst.sample_to_array(sample)
        count, shape = count + 1, image.shape[:2]
    error = gst.bus_error(pipeline.get_bus())
    pipeline.set_state(Gst.State.NULL)
    return count, shape, error


def decoded_frames(video: Path) -> tuple[int, tuple[int, ...]]:
    """Frame count and (height, width) of a video that must decode to its end."""
    count, shape, error = decode(video)
    assert error is None, f"{video.name}: {error}"
    return count, shape


def segments(folder: Path, camera: str = "cam0") -> list[Path]:
    """A run folder's video segments of one camera, oldest first."""
    return [s.path for s in list_segments(folder / "recordings", camera)]


def recorded_frames(folder: Path) -> tuple[int, tuple[int, ...]]:
    """Frames in all segments of a run folder, and their (height, width)."""
    total, shapes = 0, set()
    for path in segments(folder):
        count, shape = decoded_frames(path)
        total, shapes = total + count, shapes | {shape}
    assert len(shapes) <= 1, shapes
    return total, next(iter(shapes), ())


def run_file(folder: Path, name: str) -> Path:
    """The one run's file `runs/<run>/name` (a folder with a single run)."""
    (path,) = sorted(folder.glob(f"runs/*/{name}"))
    return path


def summary(folder: Path) -> dict[str, Any]:
    """The summary of the one run in a folder."""
    return dict(json.loads(run_file(folder, "summary.json").read_text()))


def record_syncs(monkeypatch: Any, call: str = "fsync") -> list[Path]:
    """The files `os.<call>` (fsync or fdatasync) is made for from now on, in order; the real
    call still runs."""
    import os

    synced: list[Path] = []
    real = getattr(os, call)

    def noted(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, call, noted)
    return synced
