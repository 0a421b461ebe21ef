"""A real RTSP server on loopback for tests and benchmarks:
`python benchmarks/rtsp_server.py PORT [VIDEO] [WIDTHxHEIGHT]`.

Serves an H.264 test pattern (320×240), or a video file in real time (scaled to 384×288), at
rtsp://127.0.0.1:PORT/cam with gst-rtsp-server until killed; `start_rtsp_server(port)` runs it
in a subprocess, which a test kills to simulate an outage (and may restart at another size, as a
camera reconfigured by its owner does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ENCODE = (
    "videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
    "! rtph264pay name=pay0 pt=96 config-interval=1"
)
PATTERN = "videotestsrc is-live=true pattern=ball ! video/x-raw,width={},height={},framerate=15/1"
VIDEO = "filesrc location={} ! decodebin ! videoscale ! video/x-raw,width={},height={}"
SIZES = {"pattern": (320, 240), "video": (384, 288)}


def start_rtsp_server(
    port: int, video: Path | None = None, size: tuple[int, int] | None = None
) -> subprocess.Popen[str]:
    """The loopback RTSP server of this module (serving `video`, else a test pattern, at `size`,
    default `SIZES`), once it listens."""
    args = [str(port), str(video) if video else "", *([f"{size[0]}x{size[1]}"] if size else [])]
    server = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    if server.stdout is None or server.stdout.readline().strip() != "ready":
        server.kill()
        raise RuntimeError("RTSP test server did not start")
    return server


def main(port: int, video: str | None, size: str | None = None) -> None:
    """Serve until the process is killed."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    width, height = SIZES["video" if video else "pattern"]
    if size:
        width, height = (int(v) for v in size.split("x"))
    source = VIDEO.format(video, width, height) if video else PATTERN.format(width, height)
    factory.set_launch(f"( {source} ! {ENCODE} )")
    # One media per client, as a camera streams to each client on its own: a shared media that
    # reached the end of the video stays ended for every client that joins it later, while any
    # earlier session (one a client left behind) still holds it.
    factory.set_shared(False)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on port {port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(int(sys.argv[1]), *(arg or None for arg in sys.argv[2:4]))
