"""`python -m benchmarks faults`: three cameras for several minutes while a script injects, one
after another, what a year on a wall brings; then checks what survived.

Every part is real: three loopback RTSP cameras (`benchmarks.rtsp_server`, serving the sample
video), Debian's mosquitto (persistent sessions, so a durable subscriber misses nothing), the
runtime as a child process (`python -m edge run --config FILE`, MQTT on, a footage collector),
its clock under libfaketime (`FAKETIME_TIMESTAMP_FILE`, so the wall clock can be stepped while it
runs; CLOCK_MONOTONIC is left alone, as NTP leaves it), its output folder on a tmpfs of
`--disk-mb` (root only: otherwise the disk fault is skipped and said so).

The faults, in order (each held `--hold-s`, then every camera must deliver `--recover-frames`
frames within `--recover-s`):
  corrupt-spool   the spool file is garbage before the first start (a power cut mid-write)
  camera-size     camera `a`'s RTSP server killed, then back at another resolution
  broker          the broker stopped, then started
  disk-full       the output disk filled by a file of someone else's, then freed
  slow-sink       camera `c`'s MOT output (a FIFO read by this script) stops being read
  clock-step      the wall clock stepped back a day, then forward again
  sigkill         the runtime SIGKILLed and started again (as systemd's Restart= does)

Then: every camera delivered frames after every fault; every event line of every camera reached
the broker, in the file's order; every segment decodes (the one open at the SIGKILL up to its last
frames); nothing outside the runtime's own files was deleted; RSS and open file descriptors of
the first process flat from after warm-up to before the SIGKILL. Exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.processes import Broker, EdgeProcess, fd_kinds, free_port, rss_kib
from benchmarks.report import Report, add_output_arguments, arguments, machine_line, table
from benchmarks.rtsp_server import SIZES, start_rtsp_server
from edge import paths
from edge.errors import EdgeError
from edge.outputs.events import read_events
from edge.recordings import event_files

log = logging.getLogger(__name__)
DEVICE = "faults"
CAMERAS = ("a", "b", "c")
# Debian and Ubuntu (JetPack) put it under the architecture's library folder.
FAKETIME_LIBRARIES = "/usr/lib/*/faketime/libfaketimeMT.so.1"  # the thread-safe one
# Growth from after warm-up to before the SIGKILL that still counts as flat.
RSS_GROWTH_LIMIT = 0.25
FD_GROWTH_LIMIT = 8
# How long the end of the run waits for capture pipelines left behind to stop (each was given
# 5 s by the runtime and may be in a network timeout of rtspsrc's).
STOPPING_WAIT_S = 30.0
STARTUP_S = 300  # loading the models and opening three cameras on a busy 2-core machine
PIPE_BYTES = 4096  # the slow sink's pipe: a few frames of MOT rows fill it


@dataclass
class Scene:
    """The cameras, broker, subscriber and folders one fault run shares."""

    folder: Path
    video: Path
    broker: Broker
    ports: dict[str, int]
    servers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    arrivals: list[bytes] = field(default_factory=list)
    clock_file: Path = Path()
    slow: threading.Event = field(default_factory=threading.Event)
    disk_mounted: bool = False

    @property
    def out(self) -> Path:
        """The runtime's output folder (each camera's files in out/NAME/)."""
        return self.folder / "out"

    @property
    def state(self) -> Path:
        """Where the spool and the footage collector write."""
        return self.folder / "state"

    def fifo(self) -> Path:
        """Camera c's MOT output: a pipe this script reads (slowly, in the slow-sink fault)."""
        return self.folder / "c-tracks.mot.fifo"


def write_config(scene: Scene, args: argparse.Namespace) -> Path:
    """The run's TOML config: three RTSP cameras, MQTT on, a collector, camera c's MOT a FIFO."""
    cameras = "".join(
        f'[[cameras]]\nname = "{name}"\nuri = "rtsp://127.0.0.1:{port}/cam"\n'
        + (f'output.mot = "{scene.fifo()}"\n' if name == "c" else "")
        + (f'colorizer.collect_dir = "{scene.state / "footage"}"\n' if name == "a" else "")
        + "\n"
        for name, port in scene.ports.items()
    )
    text = f"""
[source]
reconnect_max_s = 4.0

[output]
dir = "{scene.out}"
segment_s = {args.segment_s}
keep_gb = 0.0
keep_days = 30.0
min_free_gb = {args.disk_mb / 1024 / 8:.4f}  # an eighth of the small disk: the floor stays idle

[colorizer]
collect_every_s = 2.0

[pipeline]
batch_size = 1
detect_workers = 2
log_every_s = 10.0

[mqtt]
enabled = true
host = "127.0.0.1"
port = {scene.broker.port}
device = "{DEVICE}"
spool_dir = "{scene.state / "spool"}"
reconnect_max_s = 2.0

{cameras}"""
    path = scene.folder / "faults.toml"
    path.write_text(text)
    return path


def subscribe(scene: Scene) -> paho.Client:
    """A durable QoS 1 subscriber to every camera's events."""
    ready = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="faults-sub", clean_session=False)
    client.on_connect = lambda c, *_: c.subscribe(f"edge/{DEVICE}/+/events", qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _c, _u, m: scene.arrivals.append(bytes(m.payload))
    client.reconnect_delay_set(0.2, 1.0)
    client.connect("127.0.0.1", scene.broker.port)
    client.loop_start()
    if not ready.wait(10):
        raise EdgeError("the fault run's subscriber could not subscribe to the broker")
    return client


def read_fifo(scene: Scene, stop: threading.Event) -> None:
    """Read camera c's MOT pipe until `stop`, pausing while `scene.slow` is set."""
    while not stop.is_set():
        fd = os.open(scene.fifo(), os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            while not stop.is_set():
                if scene.slow.is_set():
                    time.sleep(0.1)
                    continue
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    time.sleep(0.05)
                    continue
                if not data:
                    time.sleep(0.2)  # no writer (a restart): reopen
                    break
        finally:
            os.close(fd)


def faketime_library() -> Path:
    """libfaketime's library.

    Raises:
        EdgeError: it is not installed.
    """
    found = sorted(Path("/").glob(FAKETIME_LIBRARIES.lstrip("/")))
    if not found:
        raise EdgeError(
            f"libfaketime ({FAKETIME_LIBRARIES}) not found: install it (apt install faketime)"
        )
    return found[0]


def stall_sink(scene: Scene) -> None:
    """Stop reading camera c's MOT pipe and fill it, so the runtime's next row waits (a hung
    disk): this camera's output stage blocks until the fault is cleared."""
    scene.slow.set()
    time.sleep(0.2)  # the reader sees it
    fd = os.open(scene.fifo(), os.O_WRONLY | os.O_NONBLOCK)
    try:
        with suppress(BlockingIOError):
            while True:
                os.write(fd, b"\n" * 512)
    finally:
        os.close(fd)


def start_edge(scene: Scene, config: Path, log_path: Path, overrides: list[str]) -> EdgeProcess:
    """The runtime under libfaketime (the offset read from the clock file at every call)."""
    env = {
        "LD_PRELOAD": str(faketime_library()),
        "FAKETIME_TIMESTAMP_FILE": str(scene.clock_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }
    return EdgeProcess(["--config", str(config), *overrides], log_path, env)


def camera_frames(edge: EdgeProcess) -> dict[str, int]:
    """Frames done per camera now (none while its endpoint does not answer yet).

    Raises:
        EdgeError: the runtime has ended.
    """
    sample = edge.sample()
    if sample is None:
        edge.check_running("during the fault run")
        return {}
    return sample.camera_frames


def wait_recovered(
    edge: EdgeProcess, since: dict[str, int], frames: int, timeout_s: float
) -> dict[str, float | None]:
    """Seconds until each camera has done `frames` more than `since`; None if it never did."""
    started, done = time.monotonic(), dict.fromkeys(CAMERAS, None)
    while time.monotonic() - started < timeout_s and any(v is None for v in done.values()):
        now = camera_frames(edge)
        for name in CAMERAS:
            if done[name] is None and now.get(name, 0) - since.get(name, 0) >= frames:
                done[name] = round(time.monotonic() - started, 1)
        time.sleep(0.2)
    return done


def scrape(edge: EdgeProcess) -> str:
    """The runtime's `/metrics` now ("" while it does not answer)."""
    with (
        suppress(OSError),
        urllib.request.urlopen(f"http://127.0.0.1:{edge.port}/metrics", timeout=2) as reply,
    ):
        return str(reply.read().decode())
    return ""


def metric(text: str, name: str) -> dict[str, float]:
    """A counter or gauge of every camera (and the device, under "") in a `/metrics` text."""
    pattern = re.compile(rf'^edge_{name}(?:_total)?(?:\{{camera="([^"]*)"\}})? (\S+)$', re.M)
    return {camera: float(value) for camera, value in pattern.findall(text)}


def fill_disk(folder: Path) -> Path:
    """A file of someone else's that fills the disk; return it."""
    filler = folder / "someone-elses-file"
    with filler.open("wb", buffering=0) as stream, suppress(OSError):
        while True:
            stream.write(b"\0" * (1 << 16))
    return filler


def step_clock(scene: Scene, offset: str) -> None:
    """Set libfaketime's offset (e.g. '-1d', '+0'), read by the runtime at its next clock call."""
    scene.clock_file.write_text(offset + "\n")


def corrupt_spool(scene: Scene) -> None:
    """Garbage where the spool file is (before the first start)."""
    spool = scene.state / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / f"mqtt-{DEVICE}.sqlite").write_bytes(b"not a database, a power cut's leftovers " * 64)


def run_faults(scene: Scene, args: argparse.Namespace, report: Report) -> dict[str, Any]:
    """Run the whole sequence; return the rows and the final checks."""
    config = write_config(scene, args)
    corrupt_spool(scene)
    sentinels = plant_sentinels(scene)
    stop_reader = threading.Event()
    os.mkfifo(scene.fifo())
    reader = threading.Thread(target=read_fifo, args=(scene, stop_reader), daemon=True)
    reader.start()
    rows: list[dict[str, Any]] = []
    logs = report.output
    edge = start_edge(scene, config, logs / f"{args.name}.edge-1.log", args.overrides)
    try:
        recovered = wait_recovered(edge, {}, args.recover_frames, STARTUP_S)
        rows.append(row("corrupt-spool", 0.0, recovered, edge))
        time.sleep(args.settle_s)
        baseline = usage(edge)
        faults: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
            ("camera-size", lambda: kill_camera(scene, "a"), lambda: restart_camera(scene, "a")),
            ("broker", scene.broker.stop, scene.broker.start),
            ("slow-sink", lambda: stall_sink(scene), scene.slow.clear),
            ("clock-step", lambda: step_clock(scene, "-1d"), lambda: step_clock(scene, "+0")),
        ]
        if scene.disk_mounted:
            filler: list[Path] = []
            faults.insert(
                2,
                (
                    "disk-full",
                    lambda: filler.append(fill_disk(scene.out)),
                    lambda: filler.pop().unlink(),
                ),
            )
        for name, inject, clear in faults:
            before, at_start = counters(scrape(edge)), camera_frames(edge)
            log.info("fault: %s", name)
            inject()
            time.sleep(args.hold_s)
            since = camera_frames(edge)
            clear()
            recovered = wait_recovered(edge, since, args.recover_frames, args.recover_s)
            rows.append(row(name, args.hold_s, recovered, edge, before))
            rows[-1]["frames_during"] = {c: since.get(c, 0) - at_start.get(c, 0) for c in CAMERAS}
            report.add("faults", rows)
        end = usage(edge, settled=True)
        left_behind = sum(metric(scrape(edge), "capture_pipelines_left_behind").values())
        log.info("fault: sigkill")
        edge.process.send_signal(signal.SIGKILL)
        edge.process.wait()
        edge = start_edge(scene, config, logs / f"{args.name}.edge-2.log", args.overrides)
        recovered = wait_recovered(edge, {}, args.recover_frames, STARTUP_S)
        rows.append(row("sigkill", 0.0, recovered, edge))
        time.sleep(args.settle_s)
    finally:
        edge.stop()
        with suppress(EdgeError):
            edge.finish()
        stop_reader.set()
    time.sleep(2.0)  # the last deliveries
    checks = final_checks(scene, rows, sentinels, baseline, end, left_behind)
    return {
        "faults": rows,
        "checks": checks,
        "rss_kib": [baseline[0], end[0]],
        "fds": [sum(baseline[1].values()), sum(end[1].values())],
    }


def usage(edge: EdgeProcess, settled: bool = False) -> tuple[int, Counter[str]]:
    """The runtime's resident memory (KiB) and its open file descriptors by kind; `settled`
    first waits for the capture pipelines it left behind (`capture_pipelines_stopping`) to stop,
    so that what is counted is what stays."""
    started = time.monotonic()
    while settled and time.monotonic() - started < STOPPING_WAIT_S:
        if not sum(metric(scrape(edge), "capture_pipelines_stopping").values()):
            break
        time.sleep(1.0)
    return rss_kib(edge.process.pid), fd_kinds(edge.process.pid)


def kill_camera(scene: Scene, name: str) -> None:
    """Stop a camera's RTSP server (unplugged)."""
    server = scene.servers.pop(name)
    server.kill()
    server.wait()


def restart_camera(scene: Scene, name: str) -> None:
    """The camera back, at two thirds of its former size (its owner reconfigured it)."""
    width, height = SIZES["video"]
    size = (width * 2 // 3 // 16 * 16, height * 2 // 3 // 16 * 16)
    scene.servers[name] = start_rtsp_server(scene.ports[name], scene.video, size)


# What a fault costs, counted by the runtime itself (per camera, as deltas over the fault).
COUNTED = ("dropped_frames", "frames_dropped_slow", "camera_restarts", "reconnects",
           "disk_errors", "segments_deleted", "sink_errors",
           "capture_pipelines_left_behind")  # fmt: skip


def counters(text: str) -> dict[str, dict[str, float]]:
    """Each of `COUNTED` per camera in a `/metrics` text."""
    return {name: metric(text, name) for name in COUNTED}


def row(
    name: str,
    hold_s: float,
    recovered: dict[str, float | None],
    edge: EdgeProcess,
    before: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """One fault's line: how long each camera took to deliver again, and what the runtime
    counted meanwhile (since `before`; since its start when None)."""
    text = scrape(edge)
    now, before = counters(text), before or {}
    counted = {
        key: {c: now[key].get(c, 0) - before.get(key, {}).get(c, 0) for c in CAMERAS}
        for key in COUNTED
    }
    degraded = metric(text, "side_outputs_degraded")
    return {"fault": name, "held_s": hold_s, "recovered_s": recovered, **counted,
            "side_outputs_degraded": sum(degraded.values()),
            "rss_mib": round(rss_kib(edge.process.pid) / 1024)}  # fmt: skip


def plant_sentinels(scene: Scene) -> list[Path]:
    """Files that are not the runtime's, in every folder it writes: none may disappear."""
    places = [
        scene.out / "notes.txt",
        scene.out / "a" / "recordings" / "a" / "README.txt",
        scene.state / "footage" / "holiday.jpg",
        scene.state / "spool" / "keep.txt",
    ]
    photo = cv2.imencode(".jpg", cv2.imread(str(scene.video.parent / "baboon.jpg")))[1]
    for path in places:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(photo.tobytes() if path.suffix == ".jpg" else b"the user's\n")
    return places


def segment_frames(path: Path) -> int:
    """Frames a segment decodes to (OpenCV's FFmpeg)."""
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames


def final_checks(
    scene: Scene,
    rows: list[dict[str, Any]],
    sentinels: list[Path],
    baseline: tuple[int, Counter[str]],
    end: tuple[int, Counter[str]],
    left_behind: float,
) -> dict[str, Any]:
    """The checks after the run, each with a verdict and what it saw."""
    checks: dict[str, Any] = {}
    never = [(r["fault"], c) for r in rows for c, s in r["recovered_s"].items() if s is None]
    checks["frames after every fault"] = {"ok": not never, "missing": never}
    records = {
        c: [e for f in event_files(scene.out / c, "events.jsonl") for e in read_events(f)]
        for c in CAMERAS
    }
    written = {c: [e["id"] for e in records[c]] for c in CAMERAS}
    arrived: dict[str, list[str]] = {c: [] for c in CAMERAS}
    for payload in scene.arrivals:
        with suppress(ValueError, KeyError):
            event = json.loads(payload)
            if event["id"] not in arrived[event["camera"]]:
                arrived[event["camera"]].append(event["id"])
    lost = {c: len(set(written[c]) - set(arrived[c])) for c in CAMERAS}
    in_order = {c: [i for i in arrived[c] if i in set(written[c])] == written[c] for c in CAMERAS}
    checks["events reached the broker in order"] = {
        "ok": all(v == 0 for v in lost.values()) and all(in_order.values()),
        "written": {c: len(written[c]) for c in CAMERAS},
        "lost_events": [
            {k: e.get(k) for k in ("camera", "run", "event", "track_id", "utc")}
            for c in CAMERAS
            for e in records[c]
            if e["id"] not in set(arrived[c])
        ][:10],
        "lost": lost,
        "in_order": in_order,
    }
    segments = sorted(scene.out.glob("*/recordings/*/*.mkv"))
    undecodable = [str(p) for p in segments if segment_frames(p) == 0]
    checks["every segment decodes"] = {
        "ok": bool(segments) and not undecodable,
        "segments": len(segments),
        "undecodable": undecodable,
    }
    gone = [str(p) for p in sentinels if not p.exists()]
    checks["nothing of anyone else's deleted"] = {"ok": not gone, "deleted": gone}
    rss_growth = (end[0] - baseline[0]) / baseline[0]
    fds = [sum(baseline[1].values()), sum(end[1].values())]
    checks["RSS and file descriptors flat"] = {
        "ok": rss_growth <= RSS_GROWTH_LIMIT and fds[1] - fds[0] <= FD_GROWTH_LIMIT,
        "rss_kib": [baseline[0], end[0]],
        "fds": fds,
        "fds_grown": {kind: [baseline[1][kind], end[1][kind]] for kind in end[1] - baseline[1]},
        "capture_pipelines_left_behind": left_behind,
    }
    return checks


@contextmanager
def output_disk(folder: Path, size_mb: int) -> Iterator[bool]:
    """A tmpfs of `size_mb` at `folder` (root only); yields whether it was mounted."""
    folder.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        log.warning(
            "cannot mount a tmpfs (%s): the disk-full fault is skipped; run as root",
            done.stderr.strip(),
        )
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def run_command(args: argparse.Namespace) -> dict[str, Any]:
    """The `faults` command."""
    faketime_library()  # before anything starts
    report = Report(args.name, args.output, arguments(args))
    with tempfile.TemporaryDirectory(prefix="edge-faults-") as scratch:
        folder = Path(scratch)
        broker = Broker(folder / "broker", free_port(), persistent=True)
        (folder / "broker").mkdir()
        scene = Scene(folder, args.video, broker, {c: free_port() for c in CAMERAS})
        scene.clock_file = folder / "faketime"
        step_clock(scene, "+0")
        broker.start()
        client = None
        try:
            with output_disk(scene.out, args.disk_mb) as mounted:
                scene.disk_mounted = mounted
                for name in CAMERAS:
                    scene.servers[name] = start_rtsp_server(scene.ports[name], args.video)
                client = subscribe(scene)
                result = run_faults(scene, args, report)
                shutil.copy(scene.folder / "faults.toml", report.output / f"{args.name}.toml")
        finally:
            if client is not None:
                client.loop_stop()
                client.disconnect()
            for server in scene.servers.values():
                server.kill()
            broker.stop()
    report.add("result", result)
    report.finish(markdown(report.data))
    failed = [name for name, check in result["checks"].items() if not check["ok"]]
    if failed:
        raise EdgeError(f"fault run: {', '.join(failed)} failed (see {report.json_path})")
    return result


def markdown(data: dict[str, Any]) -> str:
    """The faults and what each cost, then the checks."""
    result = data["result"]
    rows = [
        [
            r["fault"],
            r["held_s"],
            " ".join(f"{c}={n}" for c, n in r.get("frames_during", {}).items()) or "-",
            " ".join(f"{c}={'never' if s is None else s}" for c, s in r["recovered_s"].items()),
            " ".join(f"{c}={int(n)}" for c, n in r["dropped_frames"].items()),
            " ".join(f"{c}={int(n)}" for c, n in r["frames_dropped_slow"].items()),
            int(sum(r["camera_restarts"].values())),
            int(sum(r["reconnects"].values())),
            int(sum(r["disk_errors"].values())),
            int(sum(r["segments_deleted"].values())),
            r["rss_mib"],
        ]
        for r in result["faults"]
    ]
    checks = [
        [name, "ok" if c["ok"] else "FAILED", json.dumps({k: v for k, v in c.items() if k != "ok"})]
        for name, c in result["checks"].items()
    ]
    return "\n".join(
        [
            "# Faults: three cameras, one fault after another",
            "",
            machine_line(data),
            "",
            "Seconds until each camera delivered frames again: after the fault was cleared (for "
            "corrupt-spool and sigkill: after the process started, models loaded included). "
            "Counts are the runtime's own, from the fault's start to its camera's recovery "
            "(restarts, reconnects, disk errors, deletions: all cameras together).",
            "",
            table(
                [
                    "fault",
                    "held s",
                    "frames while held (per camera)",
                    "s until frames again (per camera)",
                    "frames dropped meanwhile",
                    "of which a slow sink's",
                    "camera restarts",
                    "reconnects",
                    "disk errors",
                    "segments deleted",
                    "RSS MiB after",
                ],
                rows,
            ),
            table(["check", "verdict", "what it saw"], checks),
        ]
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `faults` command."""
    parser = subparsers.add_parser(
        "faults", help="three cameras while faults are injected one after another; then checks"
    )
    parser.add_argument("--video", type=Path, default=paths.DATA / "opencv" / "vtest.avi")
    parser.add_argument("--hold-s", type=float, default=15.0, help="how long each fault lasts")
    parser.add_argument("--settle-s", type=float, default=10.0, help="quiet time around faults")
    parser.add_argument(
        "--recover-frames",
        type=int,
        default=5,
        help="frames each camera must deliver after a fault",
    )
    parser.add_argument("--recover-s", type=float, default=90.0, help="...within this time")
    parser.add_argument("--segment-s", type=float, default=10.0, help="output.segment_s")
    parser.add_argument("--disk-mb", type=int, default=256, help="the output tmpfs (root only)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    add_output_arguments(parser, "faults")
    parser.set_defaults(func=run_command)
