"""Source URIs (as jetson-utils' videoSource) and the GStreamer pipelines that read them.

Pure functions: `parse_uri` and `capture_pipeline` build strings only, so every platform's
pipeline is unit-tested here; `edge.video.capture` opens them. Hardware elements (nvarguscamerasrc,
nvv4l2decoder, nvvidconv) are used when the GStreamer registry has them, i.e. on a Jetson.

URIs: `csi://0` (Argus camera), `/dev/video0` or `v4l2:///dev/video0`, `rtsp://host/path`,
a file path or `file:///path`, `test://` (videotestsrc; pattern from the config).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from edge.config import SourceConfig
from edge.errors import EdgeError

SINK_NAME = "frames"
# Jetson elements; their presence in the registry is what "on a Jetson" means here.
JETSON_CONVERTER = "nvvidconv"
ARGUS_CAMERA = "nvarguscamerasrc"
TEST_SIZE = (640, 480)
TEST_FPS = 30
# Credentials in a URI: its user-info (`user:password@`, up to the host's last `@`) and query
# values such as `?password=...`, which some cameras take instead.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@")
_SECRET_QUERY = re.compile(r"([?&](?:password|passwd|pwd|pass|token|key|auth)=)[^&\s]*", re.I)


def redact(text: str) -> str:
    """The text with the credentials of every URI in it replaced by `***`.

    Camera URIs carry passwords (`rtsp://user:password@host/stream`); every log line and error
    that may show one, GStreamer's own messages included, goes through here.
    """
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source URI."""

    kind: str  # csi, v4l2, rtsp, file, test
    location: str  # sensor id, device path, URL, file path; "" for test
    live: bool  # a camera or stream: drop old frames, reconnect on failure

    def describe(self) -> str:
        """Short human form without credentials, e.g. `rtsp rtsp://***@cam/stream`."""
        return f"{self.kind} {redact(self.location)}".strip()


def _check_rtsp_address(uri: str) -> None:
    """Refuse an RTSP URI without a host or with a port that is not a number: rtspsrc would
    retry it forever instead of failing."""
    parsed = urlparse(uri)
    example = f"e.g. {parsed.scheme}://192.168.1.20:554/stream1"
    if not parsed.hostname:
        raise EdgeError(
            f"source '{redact(uri)}' has no host: write the camera's address, {example}"
        )
    try:
        port = parsed.port  # None when the URI names none: RTSP's default, 554
    except ValueError:  # not a number, or beyond 65535
        port = 0
    if port == 0:
        raise EdgeError(f"source '{redact(uri)}': the port must be a number 1-65535, {example}")


def parse_uri(uri: str) -> SourceSpec:
    """Parse a source URI; raises EdgeError naming the accepted forms when it is not one."""
    parsed = urlparse(uri)
    if parsed.scheme == "csi":
        sensor = parsed.netloc or "0"
        if not sensor.isdigit():
            raise EdgeError(f"source '{redact(uri)}': csi:// takes a sensor number, e.g. csi://0")
        return SourceSpec("csi", sensor, live=True)
    if parsed.scheme == "v4l2" or (not parsed.scheme and uri.startswith("/dev/video")):
        return SourceSpec("v4l2", parsed.path if parsed.scheme else uri, live=True)
    if parsed.scheme in ("rtsp", "rtsps"):
        _check_rtsp_address(uri)
        return SourceSpec("rtsp", uri, live=True)
    if parsed.scheme == "test":
        return SourceSpec("test", "", live=True)
    if parsed.scheme == "file" or not parsed.scheme:
        path = Path(unquote(parsed.path) if parsed.scheme else uri)
        if not path.is_file():
            raise EdgeError(f"source file not found: {path}")
        return SourceSpec("file", str(path.resolve()), live=False)
    raise EdgeError(
        f"source '{redact(uri)}' is not one of csi://N, /dev/videoN, v4l2:///dev/videoN, "
        "rtsp://..., file path, file://..., test://"
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _raw_caps(config: SourceConfig, size: tuple[int, int] | None = None) -> str:
    """Caps for the frames the appsink hands to Python."""
    caps = [f"video/x-raw,format={config.format}"]
    width, height = size or (config.width, config.height)
    if width and height:
        caps.append(f"width={width},height={height}")
    return ",".join(caps)


def _to_system_memory(has: Callable[[str], bool]) -> str:
    """After a hardware decoder or camera: NVMM -> system memory (Jetson) or plain convert."""
    if has(JETSON_CONVERTER):
        return f"{JETSON_CONVERTER} ! video/x-raw,format=BGRx ! videoconvert"
    return "videoconvert"


def capture_pipeline(spec: SourceSpec, config: SourceConfig, has: Callable[[str], bool]) -> str:
    """The GStreamer pipeline description that delivers frames to an appsink named SINK_NAME.

    Args:
        spec: the parsed source.
        config: size, frame rate, pixel format (BGR or GRAY8), test pattern.
        has: whether the GStreamer registry has an element factory of that name.

    Raises:
        EdgeError: the source needs an element this machine does not have.
    """
    rate = f",framerate={config.fps}/1" if config.fps else ""
    if spec.kind == "csi":
        if not has(ARGUS_CAMERA):
            raise EdgeError(f"csi:// needs {ARGUS_CAMERA} (a Jetson with JetPack); use test://")
        width, height = config.width or 1920, config.height or 1080
        head = (
            f"{ARGUS_CAMERA} sensor-id={spec.location} ! video/x-raw(memory:NVMM),"
            f"width={width},height={height},framerate={config.fps or 30}/1 ! "
            + _to_system_memory(has)
        )
    elif spec.kind == "v4l2":
        head = f"v4l2src device={_quote(spec.location)} ! decodebin ! videoconvert ! videoscale"
    elif spec.kind == "rtsp":
        # decodebin picks the depayloader and decoder for H.264 or H.265 (nvv4l2decoder on a
        # Jetson); nvvidconv then leaves NVMM memory.
        head = f"rtspsrc location={_quote(spec.location)} latency=200 protocols=tcp ! decodebin ! "
        head += _to_system_memory(has) + " ! videoscale"
    elif spec.kind == "file":
        # decodebin picks nvv4l2decoder itself on a Jetson; nvvidconv then leaves NVMM memory.
        head = f"filesrc location={_quote(spec.location)} ! decodebin ! " + _to_system_memory(has)
        head += " ! videoscale"
    else:
        width, height = config.width or TEST_SIZE[0], config.height or TEST_SIZE[1]
        head = (
            f"videotestsrc is-live=true pattern={config.pattern} ! "
            f"video/x-raw,width={width},height={height},framerate={config.fps or TEST_FPS}/1 ! "
            "videoconvert"
        )
    if spec.kind in ("v4l2", "rtsp") and rate:
        head += " ! videorate"
    caps = _raw_caps(config) + (rate if spec.kind in ("v4l2", "rtsp") else "")
    # Live: keep one frame, drop the rest (latency stays bounded; the pipeline counts drops).
    # File: block upstream, so every frame is processed and results are reproducible.
    sink = "max-buffers=1 drop=true" if spec.live else "max-buffers=4 drop=false"
    return f"{head} ! {caps} ! appsink name={SINK_NAME} sync=false {sink} emit-signals=false"
