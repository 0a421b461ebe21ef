"""The live view: each camera's annotated frame as JPEG, encoded only while someone watches and
once for all its viewers.

The camera's `LiveSink` (after the video sink, which draws the overlay in place) hands its frame
to the `LiveFeed` by reference, and only when a viewer is connected: nothing is computed for a
view nobody watches. The feed's own thread encodes the newest frame it was handed (older ones are
skipped, so a slow encode never queues frames) and wakes the viewers; each viewer's WebSocket is
sent the newest JPEG once the previous send finished, so a slow client misses frames instead of
holding memory. A message is 8 bytes of the frame's capture time (UTC milliseconds, float64, big
endian) followed by the JPEG: the page shows how old the frame on screen is.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from edge.types import Packet, TrackEvent

log = logging.getLogger(__name__)

JPEG_QUALITY = 80
MAX_VIEWERS = 16  # per camera; one more is refused
HEADER = struct.Struct(">d")


@dataclass(frozen=True)
class LiveFrame:
    """One encoded frame: its number in this feed, capture time (UTC s) and JPEG bytes."""

    seq: int
    utc: float
    jpeg: bytes

    def message(self) -> bytes:
        """The WebSocket message: capture time in UTC milliseconds, then the JPEG."""
        return HEADER.pack(self.utc * 1000) + self.jpeg


class LiveFeed:
    """One camera's live JPEG stream, shared by all its viewers."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self.viewers = 0
        self.latest: LiveFrame | None = None
        self._cond = threading.Condition()
        self._pending: tuple[np.ndarray, float] | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def offer(self, image: np.ndarray, utc: float) -> None:
        """From the pipeline: the frame to show, kept by reference (no copy, no work) and only
        while someone watches."""
        if self.viewers == 0:
            return
        with self._cond:
            self._pending = (image, utc)
            self._cond.notify()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the viewers on `loop` (the web server's); start the encoding thread."""
        self._loop, self._new = loop, asyncio.Event()
        self._thread = threading.Thread(
            target=self._encode, name=f"live-{self.camera}", daemon=True
        )
        self._thread.start()

    async def next(self, after: int) -> LiveFrame:
        """The newest frame once there is one newer than number `after` (on the bound loop)."""
        if self._new is None:
            raise RuntimeError("LiveFeed.bind() was not called")
        while self.latest is None or self.latest.seq <= after:
            await self._new.wait()
        return self.latest

    def close(self) -> None:
        """Stop the encoding thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _encode(self) -> None:
        seq = 0
        while True:
            with self._cond:
                while self._pending is None:
                    if self._closed:
                        return
                    self._cond.wait()
                (image, utc), self._pending = self._pending, None
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                log.warning("live %s: a frame could not be encoded as JPEG", self.camera)
                continue
            seq += 1
            frame = LiveFrame(seq, utc, jpeg.tobytes())
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._publish, frame)

    def _publish(self, frame: LiveFrame) -> None:
        """On the loop: make `frame` the newest and wake everyone waiting."""
        self.latest = frame
        if self._new is not None:
            self._new.set()
            self._new = asyncio.Event()


class LiveSink:
    """A camera's output to its live feed; must come after the video sink, which draws the
    overlay on the frame in place."""

    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed

    def write(self, packet: Packet, fps: float) -> None:
        """Offer the finished frame to the feed (nothing happens without a viewer)."""
        image = packet.image if packet.image is not None else packet.bgr
        self.feed.offer(image, packet.frame.utc)

    def close(self, final_events: list[TrackEvent]) -> None:
        """Nothing is held open."""
