"""One camera's video recording, in segments: opened at the first frame, paused while the disk
refuses data and reopened when it takes data again, bounded by retention (`edge.retention`, which
goes on while recording is paused, so a full disk frees itself). Each finished segment is
fsynced with its folder entry: a power cut loses only the segment being written."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edge.config import OutputConfig
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.outputs.disk import OutputDisk
from edge.outputs.durable import sync_file
from edge.outputs.run import Run
from edge.recordings import has_frames
from edge.retention import Retention
from edge.types import Frame
from edge.video.encoders import SegmentRecorder

log = logging.getLogger(__name__)
RETENTION_EVERY_S = 1.0  # how often the bounds are checked while a segment grows


class Recording:
    """Writes annotated frames into `folder` as segments of `config.segment_s` seconds.

    Args:
        folder: the camera's segment folder (`output.dir/output.video/CAMERA`).
        run: the run (its camera names the files).
        config: segment length, bitrate, bounds.
        disk: the output disk; a disk error pauses recording, `disk.writable()` resumes it.
        retention: deletes the oldest segments beyond the bounds.
        metrics: counts `segments_recorded` and `frames_not_recorded`.
    """

    def __init__(
        self,
        folder: Path,
        run: Run,
        config: OutputConfig,
        disk: OutputDisk,
        retention: Retention,
        metrics: Metrics,
    ) -> None:
        self.folder, self.run, self.config = folder, run, config
        self.disk, self.retention, self.metrics = disk, retention, metrics
        self.recorder: SegmentRecorder | None = None
        self._next_check = 0.0
        retention.enforce()

    def write(self, image: np.ndarray, frame: Frame) -> None:
        """Record one BGR frame (or count it as not recorded while the disk is paused). A frame
        of another size (a camera back at another resolution) ends the segment and starts a new
        one at its size; after a recorder failure (raised once) the next frame starts afresh."""
        if self.recorder is not None and (self.disk.paused or self.recorder.error is not None):
            self._stop()  # another output met the disk's trouble first, or the recorder failed
        height, width = image.shape[:2]
        if self.recorder is not None and self.recorder.size != (width, height):
            log.info("%s: frames now %dx%d: starting a new segment", self.run.camera, width, height)
            self.close()
        recorder = self.recorder or self._start(image, frame)
        if recorder is None:
            self.metrics.increment("frames_not_recorded")
        else:
            recorder.write(image, frame.stream_s, frame.utc)
            self._handle(recorder.poll())
        # Also while paused: deleting the oldest segments is what frees a full disk.
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + RETENTION_EVERY_S
            self.retention.enforce(self.recorder.current if self.recorder else None)

    def close(self) -> None:
        """Finish the open segment so it is complete, and apply the bounds once more."""
        if self.recorder is not None:
            self._handle(self.recorder.close(), closing=True)
            self.recorder = None
        self.retention.enforce()

    def _start(self, image: np.ndarray, frame: Frame) -> SegmentRecorder | None:
        if not self.disk.writable():
            return None
        if self.disk.attempt(str(self.folder), self._make_folder) is None:
            return None
        height, width = image.shape[:2]
        self.recorder = SegmentRecorder(
            width,
            height,
            frame.fps,
            self.config.bitrate_kbps,
            self.config.segment_s,
            self.retention.next_path,
            self.metrics,
        )
        return self.recorder

    def _make_folder(self) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        return True

    def _handle(self, events: list[tuple[str, Path]], closing: bool = False) -> None:
        for kind, path in events:
            if kind == "closed":
                self._finished(path)
                self.metrics.increment("segments_recorded")
                self._next_check = 0.0  # apply the bounds at once
                log.debug("segment %s closed", path.name)
        recorder = self.recorder
        if recorder is None or recorder.error is None:
            return
        where = str(recorder.current or self.folder)
        if recorder.disk_error:
            self.disk.failed(where, recorder.error)
        elif closing:  # the frames are in the file; only its index may be missing
            log.error("recording %s may lack its end: %s", where, recorder.error)
        else:
            raise EdgeError(f"recording {where} failed: {recorder.error}")
        if not closing:
            self._stop()

    def _stop(self) -> None:
        """Drop the recorder at once; its open segment stays readable up to its last frame."""
        if self.recorder is None:
            return
        self.recorder.abort()
        current = self.recorder.current
        if current is not None and has_frames(current):
            self._finished(current)
        elif current is not None:
            current.unlink(missing_ok=True)
        self.recorder = None

    def _finished(self, path: Path) -> None:
        """A closed segment: made durable, then counted by retention."""
        try:
            sync_file(path)
        except OSError as exc:  # its frames are in the page cache; a power cut may cost them
            log.warning("cannot fsync segment %s: %s", path, exc.strerror)
        self.retention.closed(path)
