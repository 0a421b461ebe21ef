"""Joining recorded H.264 segments into one file without re-encoding.

Each part is read on its own (`filesrc ! matroskademux ! h264parse ! appsink`) and its access
units are pushed, shifted to follow the previous part, into one writer (`appsrc ! h264parse !
mp4mux|matroskamux ! filesink`). One part is open at a time, so a day of segments costs no more
file descriptors than one; a part cut short by a kill or a full disk contributes what it has.
File names are set as element properties, so any name works (quotes, `!`, spaces); the writer's
appsrc holds at most WRITER_QUEUE_BYTES, its push waiting for room.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.files import replaced_on_success, writable_dir
from edge.video import gst
from edge.video.encoders import WRITER_QUEUE_BYTES

log = logging.getLogger(__name__)
MUXERS = {".mp4": "mp4mux", ".mkv": "matroskamux"}
READ_TIMEOUT_S = 10.0
EOS_TIMEOUT_S = 60.0
# A segment file (its filesrc named gst.FILE) -> H.264 access units (avc) at an appsink `sink`.
READER = (
    f"filesrc name={gst.FILE} ! matroskademux ! h264parse ! "
    "video/x-h264,stream-format=avc,alignment=au ! appsink name=sink sync=false"
)


def writer_pipeline(muxer: str) -> str:
    """H.264 access units from an appsrc named `src` -> a filesink named `gst.FILE`."""
    return (
        f"appsrc name=src format=time block=true max-bytes={WRITER_QUEUE_BYTES} ! h264parse ! "
        f"{muxer} ! filesink name={gst.FILE}"
    )


def _bytes(buffer: Any) -> bytes:
    Gst = gst.init()
    ok, info = buffer.map(Gst.MapFlags.READ)
    if not ok:
        return b""
    try:
        return bytes(info.data)
    finally:
        buffer.unmap(info)


def _same_stream(first: Any, caps: Any) -> bool:
    """Whether two H.264 caps describe the same stream: size and parameter sets (codec_data)."""
    a, b = first.get_structure(0), caps.get_structure(0)
    if any(a.get_value(key) != b.get_value(key) for key in ("width", "height")):
        return False
    if a.has_field("codec_data") and b.has_field("codec_data"):
        return _bytes(a.get_value("codec_data")) == _bytes(b.get_value("codec_data"))
    return True


def remux(parts: Sequence[Path], output: Path) -> int:
    """Write the parts, in order, as one `.mp4` or `.mkv` file; return the frames written.

    The file appears only once complete (a failed export leaves no partial file).

    Raises:
        EdgeError: an unknown output suffix, an unwritable folder, parts of different size or
            encoding (e.g. the camera changed between runs), or a GStreamer failure.
    """
    muxer = MUXERS.get(output.suffix.lower())
    if muxer is None:
        raise EdgeError(f"cannot export to {output}: name a .mp4 or .mkv file")
    writable_dir(output.parent)
    Gst = gst.init()
    with replaced_on_success(output) as partial:
        writer = Gst.parse_launch(writer_pipeline(muxer))
        gst.set_location(writer, partial)
        src = writer.get_by_name("src")
        writer.set_state(Gst.State.PLAYING)
        frames, offset, caps = 0, 0, None
        try:
            for part in parts:
                count, offset, caps = _copy_part(part, src, offset, caps)
                frames += count
            src.emit("end-of-stream")
            message = writer.get_bus().timed_pop_filtered(
                int(EOS_TIMEOUT_S * 1e9), Gst.MessageType.EOS | Gst.MessageType.ERROR
            )
        finally:
            writer.set_state(Gst.State.NULL)
        if message is None or message.type == Gst.MessageType.ERROR:
            detail = message.parse_error()[0].message if message is not None else "EOS timeout"
            raise EdgeError(f"cannot write {output}: {detail}")
    return frames


def _copy_part(part: Path, src: Any, offset: int, caps: Any) -> tuple[int, int, Any]:
    """Push one part's access units into `src`, shifted by `offset` ns.

    Returns:
        Frames pushed, the offset for the next part, the stream's caps.
    """
    Gst = gst.init()
    reader = Gst.parse_launch(READER)
    gst.set_location(reader, part)
    sink = reader.get_by_name("sink")
    reader.set_state(Gst.State.PLAYING)
    count, end = 0, offset
    try:
        while (sample := sink.emit("try-pull-sample", int(READ_TIMEOUT_S * 1e9))) is not None:
            if caps is None:
                caps = sample.get_caps()
                src.set_property("caps", caps)
            elif count == 0 and not _same_stream(caps, sample.get_caps()):
                raise EdgeError(
                    f"{part.name} was recorded at another size or encoding than the segments "
                    "before it: export the time before and after it apart"
                )
            buffer = sample.get_buffer().copy()
            duration = buffer.duration if buffer.duration != Gst.CLOCK_TIME_NONE else 0
            if buffer.pts != Gst.CLOCK_TIME_NONE:
                buffer.pts += offset
                end = max(end, buffer.pts + duration)
            if buffer.dts != Gst.CLOCK_TIME_NONE:
                buffer.dts += offset
            if src.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
                raise EdgeError(f"the export writer refused {part.name}'s data")
            count += 1
        problem = gst.bus_error(reader.get_bus())
        if problem:  # e.g. the tail of a segment cut by a kill: keep what was read
            log.warning("%s: read %d frames, then %s", part.name, count, problem)
    finally:
        reader.set_state(Gst.State.NULL)
    return count, end, caps
