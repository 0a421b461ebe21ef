"""The encoders' bounded input queues and file names passed as properties (real GStreamer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import SourceConfig, load
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.video import encoders, gst
from edge.video.capture import FrameSource
from edge.video.encoders import SPLITTER, Mp4Recorder, SegmentRecorder
from tests.recorded import decoded_frames

SIZE = (160, 120)
# A folder name that a pipeline string would break at: spaces, both quotes, a `!`, a backslash.
AWKWARD = 'it\'s a "cam" ! folder\\x'


def test_a_stalled_recorder_holds_a_bounded_queue_and_records_what_it_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk (here the muxer's input) stops taking data: frames past the bound are dropped
    and counted, the queue never grows past it, and once it moves every frame kept is in the
    file."""
    frame_bytes = SIZE[0] * SIZE[1] * 3
    monkeypatch.setattr(encoders, "RECORDER_QUEUE_BYTES", 10 * frame_bytes)
    Gst = gst.init()
    metrics = Metrics()
    recorder = SegmentRecorder(*SIZE, 10.0, 300, 60.0, lambda _: tmp_path / "a.mkv", metrics)
    pipeline = recorder._pipeline  # stall its muxer's input, as a hung disk does
    pad = pipeline.get_by_name(SPLITTER).sinkpads[0]
    probe = pad.add_probe(
        Gst.PadProbeType.BLOCK | Gst.PadProbeType.BUFFER, lambda *_: Gst.PadProbeReturn.OK
    )
    src = pipeline.get_by_name("src")
    image = np.full((SIZE[1], SIZE[0], 3), 70, np.uint8)
    for index in range(200):
        recorder.write(image, index / 10, 1e9 + index / 10)
        assert src.get_property("current-level-bytes") <= 10 * frame_bytes
    dropped = metrics.snapshot().counters["recording_frames_dropped"]
    assert 200 - 10 - 40 <= dropped < 200  # the queue and the few inside the encoder are kept
    pad.remove_probe(probe)
    recorder.close()
    assert recorder.error is None
    assert decoded_frames(tmp_path / "a.mkv") == (200 - dropped, (SIZE[1], SIZE[0]))


def test_a_video_in_a_folder_with_quotes_and_bangs_is_written_and_read(tmp_path: Path) -> None:
    folder = tmp_path / AWKWARD
    folder.mkdir()
    video = folder / 'clip "1" !.mp4'
    recorder = Mp4Recorder(video, *SIZE, 10.0, 300)
    for value in range(12):
        recorder.write(np.full((SIZE[1], SIZE[0], 3), value * 20, np.uint8))
    recorder.close()
    assert decoded_frames(video) == (12, (SIZE[1], SIZE[0]))
    frames = list(FrameSource(SourceConfig(uri=str(video)), Metrics()).frames())
    assert len(frames) == 12


def test_a_test_pattern_is_one_of_videotestsrc_s_and_nothing_more() -> None:
    with pytest.raises(EdgeError, match=r"^config key 'source.pattern': expected one of smpte"):
        load(None, ["source.pattern='ball ! fakesink'"])
    config = load(None, ["source.pattern='smpte'", "source.max_frames=2"])
    assert len(list(FrameSource(config.source, Metrics()).frames())) == 2
