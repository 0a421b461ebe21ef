"""The runtime's one config file (TOML), every value validated at start.

Each section is a frozen dataclass; a field's metadata holds its allowed range or choices. Errors
name the key: `config key 'detector.confidence': expected a number in [0, 1], got 1.5`. The CLI
overrides any key with `section.key=value` (the value is read as TOML, else as a string).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from edge import paths
from edge.engines import BACKENDS
from edge.engines.onnxruntime import FOREIGN_ISA
from edge.engines.precision import PRECISIONS
from edge.errors import EdgeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 on JetPack 6
    import tomli as tomllib


def _range(low: float, high: float | None = None) -> dict[str, Any]:
    return {"range": (low, high)}


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _pattern(regex: str, what: str = "") -> dict[str, Any]:
    """`what` says in words what the regex allows, for the error (default: the regex)."""
    return {"pattern": regex, "what": what or f"a name matching {regex}"}


# One level of an MQTT topic: a device's name (no wildcard, no separator, no NUL).
TOPIC_LEVEL = r"[^/+#\x00]+"
# A whole topic: levels joined by '/', none empty.
TOPIC = f"{TOPIC_LEVEL}(?:/{TOPIC_LEVEL})*"


# videotestsrc's patterns (GStreamer 1.20, as on JetPack 6): `source.pattern` is one of these,
# so nothing else can reach the pipeline string.
TEST_PATTERNS = (
    "smpte", "snow", "black", "white", "red", "green", "blue", "checkers-1", "checkers-2",
    "checkers-4", "checkers-8", "circular", "blink", "smpte75", "zone-plate", "gamut",
    "chroma-zone-plate", "solid-color", "ball", "smpte100", "bar", "pinwheel", "spokes",
    "gradient", "colors",
)  # fmt: skip


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from (see `edge.video.sources` for the URI forms)."""

    # csi://N, /dev/videoN, rtsp://host:port/path, a video file or file://, test://
    uri: str = "test://"
    # The camera's name in recordings, snapshots and events (letters, digits, '-', '_')
    name: str = field(default="cam0", metadata=_pattern(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"))
    width: int = field(default=0, metadata=_range(0, 8192))  # 0: the source's own
    height: int = field(default=0, metadata=_range(0, 8192))  # 0: the source's own
    fps: int = field(default=0, metadata=_range(0, 240))
    format: str = field(default="BGR", metadata=_choices("BGR", "GRAY8"))
    pattern: str = field(default="ball", metadata=_choices(*TEST_PATTERNS))  # for test://
    max_frames: int = field(default=0, metadata=_range(0))  # 0: until the source ends
    timeout_s: float = field(default=5.0, metadata=_range(0.1, 600))
    reconnect_initial_s: float = field(default=0.5, metadata=_range(0.01, 600))
    reconnect_max_s: float = field(default=30.0, metadata=_range(0.01, 3600))
    # This camera's colorizer (e.g. adapted to its scene by `export adapt`); "": [colorizer] model
    colorizer_model: str = ""


@dataclass(frozen=True)
class DetectorConfig:
    """YOLOv8 detection."""

    model: str = f"artifacts/models/{paths.DETECTOR_FILE}"
    backend: str = field(default="auto", metadata=_choices(*BACKENDS))
    # Least box confidence; boxes below tracker.high_confidence only continue tracks
    confidence: float = field(default=0.2, metadata=_range(0, 1))
    iou: float = field(default=0.7, metadata=_range(0, 1))
    # []: every class. Default: the offline model's upright people; its `Fall` class fires
    # mostly on things lying on the grass.
    classes: list[str] = field(default_factory=lambda: ["Normal"])
    max_detections: int = field(default=100, metadata=_range(1, 10000))  # most boxes kept per frame
    # Detect on one frame in interval + 1; the tracker's prediction fills the frames between
    # (DeepStream's nvinfer `interval`). 0: every frame.
    interval: int = field(default=0, metadata=_range(0, 100))
    # Motion gating (edge.motion, as Frigate's): no detection while nothing moves on a small gray
    # image (height rows): fewer than motion_min_area of its pixels differ by motion_threshold
    # grey levels from the running average of earlier frames (newest weighted motion_alpha)
    motion: bool = False
    motion_threshold: int = field(default=25, metadata=_range(1, 255))  # grey levels
    motion_min_area: float = field(default=0.002, metadata=_range(0, 1))  # share of pixels
    motion_height: int = field(default=100, metadata=_range(8, 4096))  # rows of the motion image
    motion_alpha: float = field(default=0.2, metadata=_range(0.001, 1))  # newest frame's weight
    # Which file of `model` runs: fp32 (the file itself), fp16 (NAME_fp16.onnx) or int8
    # (NAME_int8.onnx from `export quantize`, refused unless it passed its accuracy gate). With
    # TensorRT, the engine beside that file (`make engines`, `--int8` for INT8).
    precision: str = field(default="fp32", metadata=_choices(*PRECISIONS))


@dataclass(frozen=True)
class TrackerConfig:
    """DeepSORT with our ReID embedder."""

    reid_model: str = f"artifacts/models/{paths.EMBEDDER_FILE}"  # .onnx, or a TensorRT .engine
    reid_precision: str = field(default="fp32", metadata=_choices(*PRECISIONS))  # as detector's
    max_age: int = field(default=30, metadata=_range(1, 100000))
    n_init: int = field(default=2, metadata=_range(1, 1000))
    # Association (see edge.models.tracker and docs/tracking.md for what each is measured to do)
    max_cosine_distance: float = field(default=0.2, metadata=_range(0.01, 2))
    max_iou_distance: float = field(default=0.7, metadata=_range(0.01, 2))  # most 1-IoU to match
    nn_budget: int = field(default=100, metadata=_range(1, 10000))  # features per track
    # Detections below high_confidence (down to detector.confidence) only continue tracks
    high_confidence: float = field(default=0.4, metadata=_range(0, 1))
    birth_confidence: float = field(default=0.5, metadata=_range(0, 1))  # least to start a track
    ema_alpha: float = field(default=0.0, metadata=_range(0, 0.999))  # 0: a gallery of nn_budget
    flow: bool = True  # follow tracks by optical flow on the frames detector.interval skips


@dataclass(frozen=True)
class ColorizerConfig:
    """Colorization: `frame` (whole frame), `tracks` (each track's crop), `off`, or `auto`
    (`frame` when the source is grayscale, else `off`)."""

    model: str = f"artifacts/models/{paths.COLORIZER_FILE}"  # the general colorizer
    mode: str = field(default="auto", metadata=_choices("auto", "frame", "tracks", "off"))
    # Daytime footage for `export adapt`: a color frame every collect_every_s seconds while the
    # source delivers color, the oldest deleted beyond collect_max_frames or collect_max_mb.
    collect_dir: str = ""  # "": off
    collect_every_s: float = field(default=60.0, metadata=_range(0.01, 86400))  # see collect_dir
    collect_max_frames: int = field(default=2000, metadata=_range(1, 10**7))  # see collect_dir
    collect_max_mb: float = field(default=500.0, metadata=_range(1, 10**7))  # see collect_dir


@dataclass(frozen=True)
class OutputConfig:
    """What the run writes; an empty name turns that output off."""

    dir: str = "artifacts/outputs/run"  # every file output's folder
    # Video segments (Matroska, H.264) in dir/video/CAMERA/, named by camera and UTC start
    video: str = "recordings"
    segment_s: float = field(default=60.0, metadata=_range(1, 3600))  # length of a video segment
    # The oldest segments (and their snapshots, rotated event files, earlier runs' MOT files) go
    # beyond keep_gb (all cameras together) or keep_days, or while the output file system has
    # less than min_free_gb free; 0: no bound
    keep_gb: float = field(default=20.0, metadata=_range(0))
    keep_days: float = field(default=30.0, metadata=_range(0))
    min_free_gb: float = field(default=1.0, metadata=_range(0))
    bitrate_kbps: int = field(default=4000, metadata=_range(100, 100000))  # H.264 bitrate
    overlay: bool = True  # boxes, track ids, classes and FPS on the video
    rtsp_port: int = field(default=0, metadata=_range(0, 65535))  # 0: no RTSP server
    rtsp_path: str = "/edge"  # the stream's path: rtsp://HOST:PORT/PATH
    rtsp_host: str = "127.0.0.1"  # address the RTSP server binds; "0.0.0.0": every interface
    # Clients must log in (RTSP digest) when rtsp_user is set; the password is never in this
    # file: it is read from rtsp_password_file
    rtsp_user: str = ""
    rtsp_password_file: str = ""
    # {run} in a name becomes the run id; events are appended across runs, a MOT file is one run
    events: str = "events.jsonl"
    mot: str = "runs/{run}/tracks.mot.txt"
    snapshots: bool = True  # a JPEG of each new track's colorized crop, in dir/snapshots/CAMERA/
    summary: str = "runs/{run}/summary.json"


@dataclass(frozen=True)
class PipelineConfig:
    """Threads and queues."""

    queue_size: int = field(default=4, metadata=_range(1, 1000))
    # Frames of several cameras detected in one inference call: up to batch_size (at most one
    # per camera; 0: the number of cameras), waiting at most batch_timeout_ms for a full batch
    batch_size: int = field(default=0, metadata=_range(0, 64))
    batch_timeout_ms: float = field(default=40.0, metadata=_range(0, 10000))
    # Detection threads, each serving a fixed share of the cameras (camera i: thread i mod N).
    # One batches every camera into one call (a GPU's way); on a CPU one per core with
    # batch_size 1 keeps every core busy (see docs/cameras.md)
    detect_workers: int = field(default=1, metadata=_range(1, 64))
    # CPU threads per model call; 0: ONNX Runtime's default with one detect worker, else the
    # cores shared out among the workers
    threads: int = field(default=0, metadata=_range(0, 256))
    # An INT8 model quantized for CPUs with VNNI, on an x86 CPU without it (its accuracy gate
    # does not hold there): "refuse" it, or "warn" and run it
    int8_foreign_isa: str = field(default="refuse", metadata=_choices(*FOREIGN_ISA))
    log_every_s: float = field(default=10.0, metadata=_range(0, 86400))  # 0: no progress logs
    # A live camera's failed stage, a failed side output, or a failed detection call is retried
    # after restart_initial_s, doubling up to restart_max_s (back to the start after it has
    # worked that long); detection failing 5 times in a row exits (systemd restarts the service)
    restart_initial_s: float = field(default=1.0, metadata=_range(0.01, 600))
    restart_max_s: float = field(default=60.0, metadata=_range(0.01, 3600))  # see restart_initial_s


@dataclass(frozen=True)
class HealthConfig:
    """systemd notification and the metrics endpoint."""

    watchdog: bool = True
    metrics_port: int = field(default=0, metadata=_range(0, 65535))  # 0: no HTTP endpoint
    metrics_host: str = "127.0.0.1"  # address the endpoint binds
    stall_s: float = field(default=10.0, metadata=_range(0.1, 3600))


@dataclass(frozen=True)
class MqttConfig:
    """Events, snapshots, stats, availability, occupancy and Home Assistant discovery published
    to an MQTT broker (off by default).

    The password is never in this file (it is world-readable on a device): it is read from
    `password_file` or from the environment variable named by `password_env`.
    """

    enabled: bool = False  # publish to the broker
    # the broker's host name or address
    host: str = field(default="localhost", metadata=_pattern(r"\S+", "a host name or address"))
    port: int = field(default=1883, metadata=_range(1, 65535))
    client_id: str = ""  # "": edge-vision-DEVICE
    # "": this machine's host name; a name is one topic level, its spool file's name too
    device: str = field(
        default="", metadata=_pattern(f"(?:{TOPIC_LEVEL})?", "a name without '/', '+', '#', NUL")
    )
    topic_prefix: str = field(
        default="edge", metadata=_pattern(r"[^+#\x00]+", "a topic without '+', '#', NUL")
    )
    keepalive_s: int = field(default=60, metadata=_range(5, 3600))  # MQTT keepalive
    qos: int = field(default=1, metadata=_range(0, 2))
    protocol: str = field(default="3.1.1", metadata=_choices("3.1.1", "5"))
    tls: bool = False  # connect over TLS
    ca_file: str = ""  # "": the system's certificate authorities
    cert_file: str = ""  # client certificate, with key_file
    key_file: str = ""  # the client certificate's key
    username: str = ""  # "": no login
    password_file: str = ""
    password_env: str = ""
    spool_dir: str = "artifacts/spool"  # events wait here while the broker is away
    spool_max_mb: float = field(default=100.0, metadata=_range(0.01, 10**6))
    update_interval_s: float = field(default=5.0, metadata=_range(0.1, 86400))
    stats_interval_s: float = field(default=60.0, metadata=_range(1, 86400))
    reconnect_initial_s: float = field(default=1.0, metadata=_range(0.01, 600))
    # longest wait between tries
    reconnect_max_s: float = field(default=60.0, metadata=_range(0.01, 3600))
    # A new track's crop on CAMERA/snapshot, retained (the latest only, never spooled): at most
    # one per camera this often (the newest track waits its turn); 0: every new track
    snapshot_interval_s: float = field(default=1.0, metadata=_range(0, 3600))
    # Home Assistant MQTT discovery (retained, sent at every connection): per camera an occupancy
    # sensor per tracked class, an object count and the snapshot camera, on one device entry
    home_assistant: bool = True
    discovery_prefix: str = field(
        default="homeassistant",
        metadata=_pattern(TOPIC, "a topic without '+', '#', NUL or an empty level"),
    )


@dataclass(frozen=True)
class WebConfig:
    """The web page served by the runtime (`edge.web`): live view, events, recordings, health,
    behind a login. Its password is never in this file: `python -m edge web passwd` writes its
    scrypt hash to `password_file` (mode 0600)."""

    enabled: bool = False  # serve the page (it stays off, named in /healthz, without a password)
    # Address the page listens on; "0.0.0.0" for every interface (then prefer TLS)
    host: str = field(default="127.0.0.1", metadata=_pattern(r"\S+", "a host name or address"))
    port: int = field(default=8080, metadata=_range(0, 65535))  # 0: a free port (tests)
    # HTTPS with this certificate and its key (PEM), both or neither; "": plain HTTP
    cert_file: str = ""
    key_file: str = ""  # the certificate's private key (PEM), with cert_file
    password_file: str = "artifacts/web/password"  # the password's scrypt hash (mode 0600)
    # The events index (SQLite, rebuilt from the events files) and the MP4 copies of segments
    state_dir: str = "artifacts/web"
    session_h: float = field(default=12.0, metadata=_range(0.01, 24 * 365))  # login lasts this long


@dataclass(frozen=True)
class Camera:
    """One camera of a `[[cameras]]` list: its source and its own detector filter, colorizer
    mode and outputs (the shared sections' values where the camera sets none)."""

    source: SourceConfig
    detector: DetectorConfig
    colorizer: ColorizerConfig
    output: OutputConfig


# The device's one RTSP server: shared by all cameras, each of which has its own rtsp_path.
DEVICE_OUTPUT_KEYS = ("rtsp_port", "rtsp_host", "rtsp_user", "rtsp_password_file")
# What a camera may set in its own sub-tables; the rest (models, backend) is shared by all.
CAMERA_KEYS = {
    "detector": ("confidence", "iou", "classes", "max_detections", "interval"),
    "colorizer": ("mode", "collect_dir", "collect_every_s", "collect_max_frames", "collect_max_mb"),
    "output": tuple(
        f.name for f in dataclasses.fields(OutputConfig) if f.name not in DEVICE_OUTPUT_KEYS
    ),
}


@dataclass(frozen=True)
class Config:
    """The whole runtime configuration. `cameras` is empty for a one-camera config (`[source]`);
    `camera_configs()` gives one Config per camera either way."""

    source: SourceConfig = field(default_factory=SourceConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    colorizer: ColorizerConfig = field(default_factory=ColorizerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    web: WebConfig = field(default_factory=WebConfig)
    cameras: tuple[Camera, ...] = ()


def camera_configs(config: Config) -> list[Config]:
    """One Config per camera, its `source`, `detector`, `colorizer` and `output` the camera's."""
    if not config.cameras:
        return [config]
    return [
        dataclasses.replace(
            config,
            source=camera.source,
            detector=camera.detector,
            colorizer=camera.colorizer,
            output=camera.output,
            cameras=(),
        )
        for camera in config.cameras
    ]


def _check(key: str, value: Any, kind: Any, meta: Any) -> Any:
    """The value, converted where lossless (int -> float), or an EdgeError naming the key."""
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind == list[str]:
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise EdgeError(f"config key '{key}': expected a list of strings, got {value!r}")
        return value
    if type(value) is not kind:
        raise EdgeError(f"config key '{key}': expected {expected[kind]}, got {value!r}")
    if "range" in meta:
        low, high = meta["range"]
        if value < low or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise EdgeError(f"config key '{key}': expected a value {bounds}, got {value!r}")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise EdgeError(f"config key '{key}': expected {meta['what']}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise EdgeError(
            f"config key '{key}': expected one of {', '.join(meta['choices'])}, got {value!r}"
        )
    return value


def _section(name: str, cls: type[Any], values: Any) -> Any:
    if not isinstance(values, dict):
        raise EdgeError(f"config key '{name}' must be a [{name}] table, got {values!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise EdgeError(
            f"unknown config key '{name}.{unknown[0]}' (known in [{name}]: {', '.join(fields)})"
        )
    checked = {k: _check(f"{name}.{k}", v, hints[k], fields[k].metadata) for k, v in values.items()}
    return cls(**checked)


def _camera(index: int, values: Any, shared: dict[str, Any]) -> Camera:
    """One `[[cameras]]` entry: source keys, and `detector`/`colorizer`/`output` sub-tables,
    each over the shared section of that name. Its files go to output.dir/NAME, its RTSP
    stream to /NAME, unless it sets its own."""
    key = f"cameras[{index}]"
    if not isinstance(values, dict):
        raise EdgeError(f"config key '{key}' must be a table ([[cameras]]), got {values!r}")
    own = {name: values.get(name, {}) for name in CAMERA_KEYS}
    source = {k: v for k, v in values.items() if k not in CAMERA_KEYS}
    for section, table in own.items():
        if not isinstance(table, dict):
            raise EdgeError(f"config key '{key}.{section}' must be a table, got {table!r}")
        refused = sorted(set(table) - set(CAMERA_KEYS[section]))
        if refused and refused[0] in {f.name for f in dataclasses.fields(_SECTIONS[section])}:
            hint = (
                " (a camera's own colorizer is its colorizer_model)"
                if section == "colorizer"
                else ""
            )
            raise EdgeError(
                f"config key '{key}.{section}.{refused[0]}' is shared by all cameras: set it in "
                f"[{section}]{hint}"
            )
    name = source.get("name", shared["source"].get("name", SourceConfig.name))
    base = str(shared["output"].get("dir", OutputConfig.dir))
    output = {"dir": f"{base}/{name}", "rtsp_path": f"/{name}", **own["output"]}
    sections = {"source": source, **own, "output": output}
    checked = {
        section: _section(
            key if section == "source" else f"{key}.{section}",
            _SECTIONS[section],
            shared[section] | table,
        )
        for section, table in sections.items()
    }
    return Camera(**checked)


_SECTIONS: dict[str, type[Any]] = {
    "source": SourceConfig,
    "detector": DetectorConfig,
    "colorizer": ColorizerConfig,
    "output": OutputConfig,
}


def from_dict(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document into a Config.

    `[[cameras]]` entries take the shared sections as their defaults; two cameras with one name
    or one output folder are refused, naming the key.
    """
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise EdgeError(f"unknown config section '{unknown[0]}' (known: {', '.join(sections)})")
    hints = get_type_hints(Config)
    tables = {k: v for k, v in data.items() if k != "cameras"}
    config = Config(**{k: _section(k, hints[k], v) for k, v in tables.items()})
    if bool(config.web.cert_file) != bool(config.web.key_file):
        raise EdgeError(
            "config key 'web.key_file': HTTPS needs both web.cert_file and web.key_file "
            "(set both, or neither for plain HTTP)"
        )
    if "cameras" not in data:
        return config
    entries = data["cameras"]
    if not isinstance(entries, list) or not entries:
        raise EdgeError(f"config key 'cameras' must be [[cameras]] tables, got {entries!r}")
    shared = {name: tables.get(name, {}) for name in _SECTIONS}
    cameras = tuple(_camera(i, e, shared) for i, e in enumerate(entries))
    for index, camera in enumerate(cameras):
        for other in cameras[:index]:
            if camera.source.name == other.source.name:
                raise EdgeError(
                    f"config key 'cameras[{index}].name': {camera.source.name!r} is already the "
                    "name of another camera: give each camera its own name"
                )
            if camera.output.dir == other.output.dir:
                raise EdgeError(
                    f"config key 'cameras[{index}].output.dir': {camera.output.dir!r} is already "
                    f"camera {other.source.name!r}'s folder: give each camera its own"
                )
    return dataclasses.replace(config, cameras=cameras)


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, key, value); the value is TOML, else a plain string."""
    path, sep, raw = text.partition("=")
    section, dot, key = path.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise EdgeError(f"override '{text}' is not section.key=value (e.g. source.fps=15)")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def load(path: Path | None, overrides: list[str] | None = None) -> Config:
    """Read the TOML file (None: defaults only), apply `section.key=value` overrides, validate.

    Raises:
        EdgeError: the file is missing or not TOML, or a key is unknown, mistyped or out of range.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise EdgeError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise EdgeError(f"config file {path} is not valid TOML: {exc}") from exc
    for text in overrides or []:
        section, key, value = parse_override(text)
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            table[key] = value
    return from_dict(data)
