"""`python -m edge run` under the file-system sandbox of deploy/edge-vision.service, with each
shipped config: it records, publishes and reports healthy.

bubblewrap rebuilds what the unit makes of the file system: the root read-only
(`ProtectSystem=strict`, /tmp included), /home, /root and /run/user hidden (`ProtectHome=yes`),
and the files deploy/install.sh lays out (here under a temporary root) at their absolute paths:
the working directory read-only unless the unit makes it writable, the folders of
`StateDirectory=`, `CacheDirectory=`, `LogsDirectory=` and `ReadWritePaths=` read-write. The
environment is the unit's (`Environment=`, `$STATE_DIRECTORY`, ..., `HOME`), the command its
`ExecStart=`. This checkout and its virtualenv stand in for /opt/edge-vision (install.sh copies
them there) and the installed config for /etc/edge-vision/edge.toml. The network, /dev and /proc
are the host's, as under the unit: the broker and the notify socket (an abstract one) are reached
over loopback.

The service runs as uid 65534 without capabilities (the unit's `CapabilityBoundingSet=`) in a
user namespace that maps it to the user running the tests. Dropping to another uid outside is not
done: run as root, as in the CI container, the interpreter lives in /root (pyenv), which no other
user may read. So, as under the unit, the read-only mounts are what stop a write, not file
permissions. Where user namespaces are not allowed, bwrap cannot start: the tests skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.processes import Broker, free_port
from edge import paths
from edge.config import camera_configs, load
from tests.mqtt_broker import Subscriber
from tests.notify_socket import NotifyListener
from tests.onnx_models import constant_chroma_model
from tests.systemd_unit import REPO, ServiceSandbox, service_sandbox

DEPLOY = REPO / "deploy"
APP_DIR, CONF_DIR = Path("/opt/edge-vision"), Path("/etc/edge-vision")  # as in deploy/lib.sh
NOBODY = "65534"
STARTUP_S = 180  # loading the models on a busy 2-core CI machine
RECORD_S = 60


# An unprivileged user in its own user namespace, without capabilities.
UNPRIVILEGED = ["--unshare-user", "--uid", NOBODY, "--gid", NOBODY, "--cap-drop", "ALL"]


def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = ["bwrap", *UNPRIVILEGED, "--ro-bind", "/", "/", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(
    not _bwrap_works(), reason="needs bubblewrap (Debian: bubblewrap) and user namespaces"
)


def _host_path(root: Path, path: Path) -> Path:
    """Where the installed tree under `root` holds the absolute `path`."""
    return root / path.relative_to("/")


def _relocated(value: str, root: Path) -> str:
    """A value naming the installed code or config folder, pointed at where the test has them."""
    for folder, here in ((APP_DIR, REPO), (CONF_DIR, _host_path(root, CONF_DIR))):
        if value == str(folder) or value.startswith(f"{folder}/"):
            return str(here) + value[len(str(folder)) :]
    return value


def _bwrap(sandbox: ServiceSandbox, root: Path, info_fd: int) -> list[str]:
    """The bwrap command line that gives the service the unit's view of the file system."""
    assert sandbox.protect_system == "strict"  # what `--ro-bind / /` stands for
    args = ["bwrap", *UNPRIVILEGED, "--die-with-parent", "--info-fd", str(info_fd)]
    args += ["--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc"]
    mounts = sorted({sandbox.working_directory, *sandbox.writable}, key=lambda p: len(p.parts))
    covers = [folder for folder in sandbox.hidden if folder.exists()]
    for target in mounts:
        nested = any(target.is_relative_to(m) and target != m for m in mounts)
        if not target.exists() and not nested and target.parent not in covers:
            covers.append(target.parent)  # a tmpfs holds the mount point the host lacks
    for cover in covers:
        args += ["--tmpfs", str(cover)]
    # The code and the interpreter are no part of what the unit restricts: keep them visible.
    for keep in {REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}:
        if any(keep.is_relative_to(cover) for cover in covers):
            args += ["--ro-bind", str(keep), str(keep)]
    for target in mounts:
        bind = "--bind" if target in sandbox.writable else "--ro-bind"
        args += [bind, str(_host_path(root, target)), str(target)]
    for cover in covers:
        args += ["--remount-ro", str(cover)]
    return [*args, "--chdir", str(sandbox.working_directory)]


@pytest.fixture
def installed(detector_320: Path, reid_onnx: Path, tmp_path: Path) -> Path:
    """deploy/install.sh laid out under a temporary root, with the test models as the shipped
    ones."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(detector_320, models / paths.DETECTOR_FILE)
    shutil.copy(reid_onnx, models / paths.EMBEDDER_FILE)
    constant_chroma_model(models / paths.COLORIZER_FILE, (0.1, 0.2))
    root = tmp_path / "root"
    install = ["bash", str(DEPLOY / "install.sh"), "--prefix", str(root), "--models", str(models)]
    subprocess.run(install, check=True, capture_output=True)
    return root


@dataclass
class Service:
    """The runtime started as the unit starts it; `pid` is the runtime's own process."""

    process: subprocess.Popen[bytes]
    pid: int
    listener: NotifyListener
    log: Path

    def ready(self) -> None:
        """Wait for READY=1; fail at once if the runtime exits first."""
        deadline = time.monotonic() + STARTUP_S
        while not self.listener.notifications("READY"):
            assert self.process.poll() is None, "the service exited before READY"
            assert time.monotonic() < deadline, "no READY"
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM as `systemctl stop` sends it: a clean exit."""
        os.kill(self.pid, signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0


@contextmanager
def service(root: Path, config: str, overrides: list[str]) -> Iterator[Service]:
    """Install `config` as /etc/edge-vision/edge.toml and run the unit's command in its sandbox
    (killed if the test leaves it running; its log shown)."""
    sandbox = service_sandbox()
    config_file = _host_path(root, CONF_DIR / "edge.toml")
    config_file.write_text(config)
    for folder in sandbox.own:  # systemd creates them; ReadWritePaths= must exist already
        _host_path(root, folder).mkdir(parents=True, exist_ok=True)
    python, *arguments = sandbox.exec_start
    assert python == str(APP_DIR / ".venv/bin/python")
    command = [sys.executable, *(_relocated(a, root) for a in arguments), *overrides]
    listener = NotifyListener(abstract=True)
    environment = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        "LANG": "C.UTF-8",
        "HOME": str(sandbox.working_directory),  # install.sh: the service user's home
        "NOTIFY_SOCKET": listener.address,
        **{key: _relocated(value, root) for key, value in sandbox.environment.items()},
    }
    log = root / "service.log"
    info_read, info_write = os.pipe()
    with log.open("wb") as stream:
        process = subprocess.Popen(
            [*_bwrap(sandbox, root, info_write), *command],
            env=environment,
            stdout=stream,
            stderr=subprocess.STDOUT,
            pass_fds=(info_write,),
        )
    os.close(info_write)
    try:
        with os.fdopen(info_read) as info:
            pid = int(json.loads(info.read())["child-pid"])  # bwrap closes it once written
        yield Service(process, pid, listener, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        listener.close()
        sys.stderr.write(log.read_text())


def _healthz(port: int) -> tuple[int, str]:
    """/healthz: its status and body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _states(port: int) -> tuple[int, str]:
    """/healthz: its status and each line's first two fields (`cam0: ok`), comma-separated."""
    status, body = _healthz(port)
    return status, ", ".join(": ".join(line.split(": ")[:2]) for line in body.splitlines())


def _wait_for_segment(folder: Path) -> None:
    """Wait until a video segment with data is in `folder`."""
    deadline = time.monotonic() + RECORD_S
    while not any(p.stat().st_size for p in folder.glob("*.mkv")):
        assert time.monotonic() < deadline, f"no video segment in {folder}"
        time.sleep(0.2)


def _check_recordings(root: Path) -> None:
    """Each camera of the installed config has its video segments in its output folder."""
    for camera in camera_configs(load(_host_path(root, CONF_DIR / "edge.toml"))):
        output = camera.output
        if output.video:
            folder = service_sandbox().working_directory / output.dir / output.video
            _wait_for_segment(_host_path(root, folder / camera.source.name))


def test_default_config_with_mqtt_records_publishes_and_is_healthy(
    installed: Path, broker: Broker
) -> None:
    port = free_port()
    subscriber = Subscriber(broker)
    overrides = [
        "mqtt.enabled=true",
        "mqtt.host='127.0.0.1'",
        f"mqtt.port={broker.port}",
        "mqtt.device='sandbox'",
        f"health.metrics_port={port}",
        "source.width=160",
        "source.height=120",
    ]
    config = (DEPLOY / "edge.toml").read_text()
    try:
        with service(installed, config, overrides) as running:
            running.ready()
            _check_recordings(installed)
            assert subscriber.wait_for("edge/sandbox/available", 1)[-1] == b"online"
            assert _states(port) == (200, "cam0: ok"), "healthy, nothing degraded"
            running.stop()
    finally:
        subscriber.close()
    state = _host_path(installed, service_sandbox().working_directory)
    assert list(state.glob("artifacts/spool/*.sqlite"))
    assert list(state.glob("artifacts/outputs/run/runs/*/summary.json"))


def test_cameras_example_records_every_camera_and_is_healthy(installed: Path) -> None:
    port = free_port()
    example = (DEPLOY / "cameras.example.toml").read_text()
    config = re.sub(r'^uri = ".*"', 'uri = "test://"', example, flags=re.MULTILINE)
    cameras = camera_configs(load(DEPLOY / "cameras.example.toml"))
    state = _host_path(installed, service_sandbox().working_directory)
    for camera in cameras:  # a camera's own colorizer, where `export adapt` wrote it
        if camera.source.colorizer_model:
            target = _host_path(installed, Path(camera.source.colorizer_model))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(state / "artifacts/models" / paths.COLORIZER_FILE, target)
    overrides = [f"health.metrics_port={port}", f"output.rtsp_port={free_port()}"]
    with service(installed, config, overrides) as running:
        running.ready()
        _check_recordings(installed)
        assert _states(port) == (200, ", ".join(f"{c.source.name}: ok" for c in cameras))
        running.stop()
    for camera in cameras:
        folder = _host_path(installed, service_sandbox().working_directory / camera.output.dir)
        assert list(folder.glob("runs/*/summary.json")), camera.source.name


# Outside the unit's writable folders (and absent here): the sandbox makes it read-only.
OUTSIDE = "/srv/edge-vision"
UNIT_FOLDERS = "/var/lib/edge-vision and /var/cache/edge-vision"
ALLOWED = f"under systemd the unit allows writing only under {UNIT_FOLDERS}"


def test_spool_and_collector_the_unit_forbids_are_off_and_named_the_cameras_record(
    installed: Path, broker: Broker
) -> None:
    port = free_port()
    subscriber = Subscriber(broker)
    overrides = [
        "mqtt.enabled=true",
        "mqtt.host='127.0.0.1'",
        f"mqtt.port={broker.port}",
        f"mqtt.spool_dir='{OUTSIDE}/spool'",
        f"colorizer.collect_dir='{OUTSIDE}/footage'",
        f"health.metrics_port={port}",
        "source.width=160",
        "source.height=120",
    ]
    try:
        with service(installed, (DEPLOY / "edge.toml").read_text(), overrides) as running:
            running.ready()
            _check_recordings(installed)
            assert _states(port) == (200, "cam0: ok, collector:cam0: degraded, spool: degraded")
            body = _healthz(port)[1]
            assert (
                f"spool: degraded: {OUTSIDE}/spool is not writable (read-only file system): "
                f"{ALLOWED}; set mqtt.spool_dir inside them; MQTT is off\n"
            ) in body
            assert (
                f"collector:cam0: degraded: {OUTSIDE}/footage is not writable (read-only file "
                f"system): {ALLOWED}; set colorizer.collect_dir inside them\n"
            ) in body
            running.stop()
        assert subscriber.messages == []  # MQTT off, not connected
    finally:
        subscriber.close()


def test_output_dir_the_unit_forbids_stops_the_start_in_one_line(installed: Path) -> None:
    overrides = [f"output.dir='{OUTSIDE}/outputs'"]
    with service(installed, (DEPLOY / "edge.toml").read_text(), overrides) as running:
        assert running.process.wait(timeout=STARTUP_S) == 2
        assert running.listener.notifications("READY") == []
        log = running.log.read_text()
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if "error" in line.lower()] == [
        f"edge run: error: {OUTSIDE}/outputs is not writable (read-only file system): "
        f"{ALLOWED}; set output.dir inside them"
    ]
    assert log.endswith(f"{ALLOWED}; set output.dir inside them\n")  # the last line, whole
