"""Thin helpers over GStreamer's Python bindings (PyGObject), imported lazily.

The bindings come from the system (python3-gi / PyGObject over GStreamer 1.20+), not from pip
wheels of OpenCV, which carry no GStreamer.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError

CHANNELS = {"BGR": 3, "BGRx": 4, "GRAY8": 1}
FILE = "file"  # the name of a pipeline's filesrc or filesink, for `set_location`


_INIT_LOCK = threading.Lock()


def init() -> Any:
    """The initialized `Gst` module; raises EdgeError with the install command if missing.

    Thread-safe: the first call imports the bindings (Gst, GstVideo) and makes the classes the
    capture threads use, under a lock, before any of those threads can.
    """
    with _INIT_LOCK:
        return _load()


@functools.cache
def _load() -> Any:
    # GStreamer links libunwind, which GModule loads into the global symbol scope: its _Unwind_*
    # then served C++ exceptions raised later (ONNX Runtime's, for a model it cannot load) and
    # the process aborted instead of raising. libgcc_s first keeps them with libgcc's unwinder.
    ctypes.CDLL("libgcc_s.so.1", mode=os.RTLD_GLOBAL)
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstVideo", "1.0")
        from gi.repository import Gst, GstVideo
    except (ImportError, ValueError) as exc:
        raise EdgeError(
            f"GStreamer's Python bindings are missing ({exc}): install python3-gi and "
            "gir1.2-gstreamer-1.0 (or `pip install 'PyGObject<3.50'` in a virtualenv)"
        ) from exc
    Gst.init(None)
    # Resolve, here in one thread, the wrapper classes the capture threads use: PyGObject makes
    # them at first use, and two threads that both do make two classes for one type, after which
    # one thread's objects are refused by the other's (`Expected Gst.MapInfo, but got
    # gi.repository.Gst.MapInfo`; seen with three cameras started at once).
    buffer = Gst.Buffer.new_wrapped(b"\0")
    ok, mapped = buffer.map(Gst.MapFlags.READ)
    if ok:
        bytes(mapped.data)
        buffer.unmap(mapped)
    caps = Gst.Caps.from_string("video/x-raw,format=GRAY8,width=1,height=1")
    GstVideo.VideoInfo.new_from_caps(caps)
    return Gst


def has_element(name: str) -> bool:
    """Whether the GStreamer registry has an element factory of this name."""
    return init().ElementFactory.find(name) is not None


def set_location(pipeline: Any, path: Path) -> None:
    """Give the pipeline's element named FILE its file as a property: any name works, where a
    pipeline string would break at a quote or let a `!` start a new element."""
    pipeline.get_by_name(FILE).set_property("location", str(path))


def bus_error(bus: Any) -> str | None:
    """The first pending error message on a pipeline's bus, as one line, or None."""
    Gst = init()
    message = bus.pop_filtered(Gst.MessageType.ERROR)
    if message is None:
        return None
    error, _debug = message.parse_error()
    source = message.src.get_name() if message.src is not None else "pipeline"
    return f"{source}: {error.message}"


def not_stopped(pipeline: Any) -> list[str]:
    """The pipeline's elements not yet in the NULL state, as `name (state)`, inner ones first.

    Asks without waiting, so it answers while another thread is stopping the pipeline.
    """
    Gst = init()
    found: list[str] = []
    elements = pipeline.iterate_recurse()
    while True:
        result, element = elements.next()
        if result != Gst.IteratorResult.OK:
            return found
        state = element.get_state(0)[1]
        if state != Gst.State.NULL:
            found.append(f"{element.get_name()} ({state.value_nick})")


def sample_to_array(sample: Any) -> tuple[np.ndarray, float | None, float]:
    """Copy an appsink sample (BGR, BGRx or GRAY8) into a (H, W[, C]) uint8 array.

    Rows of GStreamer video frames are padded to 4 bytes, so the stride is read from the caps.

    Returns:
        The frame, its presentation timestamp in seconds (None if the buffer has none), and the
        frame rate its caps state (0.0 when they state none, e.g. a variable-rate stream).
    """
    Gst = init()
    from gi.repository import GstVideo

    info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
    channels = CHANNELS.get(info.finfo.name)
    if channels is None:
        raise EdgeError(f"unsupported frame format {info.finfo.name}: use BGR or GRAY8")
    buffer = sample.get_buffer()
    ok, mapped = buffer.map(Gst.MapFlags.READ)
    if not ok:
        raise EdgeError("cannot map a GStreamer buffer for reading")
    try:
        stride = info.stride[0]
        rows = np.frombuffer(mapped.data, np.uint8, count=stride * info.height)
        rows = rows.reshape(info.height, stride)[:, : info.width * channels]
        shape = (info.height, info.width) if channels == 1 else (info.height, info.width, channels)
        image = rows.reshape(shape).copy()
    finally:
        buffer.unmap(mapped)
    pts = None if buffer.pts == Gst.CLOCK_TIME_NONE else buffer.pts / 1e9
    fps = info.fps_n / info.fps_d if info.fps_n > 0 and info.fps_d > 0 else 0.0
    return image, pts, fps
