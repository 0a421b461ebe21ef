"""Source URIs and the GStreamer pipeline strings for Jetson and for other machines (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import SourceConfig
from edge.errors import EdgeError
from edge.video.sources import SourceSpec, capture_pipeline, parse_uri

JETSON = {"nvvidconv", "nvv4l2decoder", "nvarguscamerasrc"}


def jetson(name: str) -> bool:
    return name in JETSON


def desktop(name: str) -> bool:
    return name not in JETSON


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("csi://0", SourceSpec("csi", "0", True)),
        ("csi://1", SourceSpec("csi", "1", True)),
        ("/dev/video0", SourceSpec("v4l2", "/dev/video0", True)),
        ("v4l2:///dev/video2", SourceSpec("v4l2", "/dev/video2", True)),
        ("rtsp://10.0.0.2:8554/cam", SourceSpec("rtsp", "rtsp://10.0.0.2:8554/cam", True)),
        ("test://", SourceSpec("test", "", True)),
    ],
)
def test_parse_uri(uri: str, expected: SourceSpec) -> None:
    assert parse_uri(uri) == expected


def test_files_by_path_and_file_uri(tmp_path: Path) -> None:
    video = tmp_path / "a b.avi"
    video.write_bytes(b"x")
    expected = SourceSpec("file", str(video), False)
    assert parse_uri(str(video)) == expected
    assert parse_uri("file://" + str(video).replace(" ", "%20")) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("csi://left", r"csi:// takes a sensor number"),
        ("http://cam/stream", r"is not one of csi://N, /dev/videoN"),
        ("/no/such/file.mp4", r"source file not found: /no/such/file.mp4"),
        ("rtsp://", r"^source 'rtsp://' has no host: .* e\.g\. rtsp://192\.168\.1\.20:554/"),
        ("rtsps://user:secret@/cam", r"^source 'rtsps://\*\*\*@/cam' has no host"),
        ("rtsp://cam:port/1", r"the port must be a number 1-65535"),
        ("rtsp://cam:70000/1", r"the port must be a number 1-65535"),
    ],
)
def test_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(EdgeError, match=message):
        parse_uri(uri)


@pytest.mark.parametrize(
    ("spec", "has", "config", "expected"),
    [
        (
            SourceSpec("csi", "0", True), jetson, SourceConfig(width=1280, height=720, fps=60),
            "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,"
            "framerate=60/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
            "video/x-raw,format=BGR,width=1280,height=720 ! appsink name=frames sync=false "
            "max-buffers=1 drop=true emit-signals=false",
        ),
        (
            SourceSpec("rtsp", "rtsp://cam/1", True), jetson, SourceConfig(),
            'rtspsrc location="rtsp://cam/1" latency=200 protocols=tcp ! decodebin ! '
            "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
            "videoscale ! video/x-raw,format=BGR ! appsink name=frames sync=false max-buffers=1 "
            "drop=true emit-signals=false",
        ),
        (
            SourceSpec("rtsp", "rtsp://cam/1", True), desktop, SourceConfig(fps=10),
            'rtspsrc location="rtsp://cam/1" latency=200 protocols=tcp ! decodebin ! '
            "videoconvert ! videoscale ! videorate ! video/x-raw,format=BGR,framerate=10/1 ! "
            "appsink name=frames sync=false max-buffers=1 drop=true emit-signals=false",
        ),
        (
            SourceSpec("file", "/v.mp4", False), desktop, SourceConfig(format="GRAY8"),
            'filesrc location="/v.mp4" ! decodebin ! videoconvert ! videoscale ! '
            "video/x-raw,format=GRAY8 ! appsink name=frames sync=false max-buffers=4 drop=false "
            "emit-signals=false",
        ),
        (
            SourceSpec("file", "/v.mp4", False), jetson, SourceConfig(width=640, height=360),
            'filesrc location="/v.mp4" ! decodebin ! nvvidconv ! video/x-raw,format=BGRx ! '
            "videoconvert ! videoscale ! video/x-raw,format=BGR,width=640,height=360 ! appsink "
            "name=frames sync=false max-buffers=4 drop=false emit-signals=false",
        ),
        (
            SourceSpec("v4l2", "/dev/video1", True), desktop, SourceConfig(),
            'v4l2src device="/dev/video1" ! decodebin ! videoconvert ! videoscale ! '
            "video/x-raw,format=BGR ! appsink name=frames sync=false max-buffers=1 drop=true "
            "emit-signals=false",
        ),
        (
            SourceSpec("test", "", True), desktop, SourceConfig(pattern="smpte", fps=5),
            "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=640,height=480,"
            "framerate=5/1 ! videoconvert ! video/x-raw,format=BGR ! appsink name=frames "
            "sync=false max-buffers=1 drop=true emit-signals=false",
        ),
    ],
)  # fmt: skip
def test_capture_pipelines(
    spec: SourceSpec, has: object, config: SourceConfig, expected: str
) -> None:
    assert capture_pipeline(spec, config, has) == expected  # type: ignore[arg-type]


def test_csi_without_argus_says_so() -> None:
    with pytest.raises(EdgeError, match=r"csi:// needs nvarguscamerasrc \(a Jetson"):
        capture_pipeline(SourceSpec("csi", "0", True), SourceConfig(), desktop)
