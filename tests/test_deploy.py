"""deploy/: the install and uninstall scripts laid out under a temporary root, and the units."""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.config import camera_configs, load
from tests.systemd_unit import service_sandbox

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNITS = ["edge-vision.service", "edge-vision-power.service"]
MODELS = ["yolov8_detector.onnx", "reid_mobilenetv2.onnx", "colorizer.onnx"]
CONFIG = "etc/edge-vision/edge.toml"
# Keys a unit for JetPack 6 (systemd 249) must not use, with the version that added them.
NEWER_THAN_249 = {
    "RestartSteps": 254,
    "RestartMaxDelaySec": 254,
    "RestartMode": 254,
    "OpenFile": 253,
    "SurviveFinalKillSignal": 255,
    "ImportCredential": 254,
    "MemoryZSwapWriteback": 255,
}


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """Stand-ins for the ONNX models (the scripts copy them, nothing runs them)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in MODELS:
        (folder / name).write_bytes(f"not really {name}".encode())
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def _script(name: str, *args: str | Path, path_first: Path | None = None) -> str:
    """Run a deploy script; return its stdout. Fails the test on a non-zero exit."""
    env = dict(os.environ)
    if path_first is not None:
        env["PATH"] = f"{path_first}:{env['PATH']}"
    result = subprocess.run(
        ["bash", str(DEPLOY / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _install(root: Path, models: Path, *args: str | Path, **kwargs: Path) -> str:
    return _script("install.sh", "--prefix", root, "--models", models, *args, **kwargs)


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under `root`: its mode and, for files, a checksum of its content."""
    listing: dict[str, tuple[int, str]] = {}
    for path in sorted(root.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        listing[str(path.relative_to(root))] = (path.stat().st_mode, digest)
    return listing


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(DEPLOY / name)
    return parser


def test_install_lays_out_what_the_unit_runs(root: Path, models: Path) -> None:
    output = _install(root, models)
    assert "laying out files under" in output
    service = _unit("edge-vision.service")["Service"]
    python, *arguments = service["ExecStart"].split()
    assert python == "/opt/edge-vision/.venv/bin/python"  # made by a real install, not --prefix
    assert arguments == ["-m", "edge", "run", "--config", "/etc/edge-vision/edge.toml"]
    assert (root / CONFIG).read_bytes() == (DEPLOY / "edge.toml").read_bytes()
    assert (root / CONFIG).stat().st_mode & 0o777 == 0o640  # may hold camera passwords
    assert (root / f"{CONFIG}.dist").read_bytes() == (DEPLOY / "edge.toml").read_bytes()
    code = root / "opt/edge-vision"
    for module in ["edge/__main__.py", "edge/cli/run.py", "edge/service/health.py"]:
        assert (code / module).read_bytes() == (REPO / module).read_bytes()
    assert (code / "edge/engines/build.py").is_file()  # `make engines` on the Jetson
    assert (code / "requirements-jetson.txt").is_file()
    assert not list(code.rglob("__pycache__"))
    working = root / service["WorkingDirectory"].lstrip("/")
    for name in MODELS:  # edge.toml's relative model paths, from the working directory
        assert (working / "artifacts/models" / name).read_bytes() == (models / name).read_bytes()
    # The working directory is the unit's state directory, where the service may write.
    assert service["WorkingDirectory"] == f"/var/lib/{service['StateDirectory']}"
    assert (root / "var/lib/edge-vision/artifacts/outputs").is_dir()
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).read_bytes() == (DEPLOY / unit).read_bytes()


def test_second_run_changes_nothing(root: Path, models: Path) -> None:
    _install(root, models)
    before = _tree(root)
    output = _install(root, models)
    assert _tree(root) == before
    assert "already installed, nothing changed" in output


def test_edited_config_survives_and_the_new_default_goes_beside_it(
    root: Path, models: Path
) -> None:
    _install(root, models)
    config = root / CONFIG
    edited = config.read_text().replace('uri = "test://"', 'uri = "rtsp://10.0.0.7:8554/cam"')
    config.write_text(edited)
    output = _install(root, models)
    assert config.read_text() == edited
    assert "kept your edited /etc/edge-vision/edge.toml" in output
    assert (root / f"{CONFIG}.dist").read_bytes() == (DEPLOY / "edge.toml").read_bytes()


def test_unedited_old_default_is_updated(root: Path, models: Path) -> None:
    _install(root, models)
    old_default = "# an older release's default\n"
    for name in [CONFIG, f"{CONFIG}.dist"]:
        (root / name).write_text(old_default)
    _install(root, models)
    assert (root / CONFIG).read_bytes() == (DEPLOY / "edge.toml").read_bytes()


def test_update_removes_modules_gone_from_the_source(root: Path, models: Path) -> None:
    _install(root, models)
    stale = root / "opt/edge-vision/edge/old_module.py"
    stale.write_text("")
    output = _install(root, models)
    assert not stale.exists()
    assert "remove" in output


def test_dry_run_changes_nothing(root: Path, models: Path) -> None:
    output = _install(root, models, "--dry-run")
    assert not root.exists()
    assert "would install /etc/systemd/system/edge-vision.service" in output
    _install(root, models)
    (root / "opt/edge-vision/edge/service/health.py").unlink()
    before = _tree(root)
    output = _install(root, models, "--dry-run")
    assert _tree(root) == before
    assert "would install /opt/edge-vision/edge/service/health.py" in output
    assert "dry run: 1 changes to make, none made" in output


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs a Debian-family system (dpkg)")
def test_dry_run_of_a_real_install_plans_every_step_and_changes_nothing(models: Path) -> None:
    """No --prefix: the apt, virtualenv, user and systemctl steps are planned, not taken."""
    before = {path: Path(path).exists() for path in ["/opt/edge-vision", "/etc/edge-vision"]}
    output = _script("install.sh", "--dry-run", "--models", models)
    assert {path: Path(path).exists() for path in before} == before
    # The last line: every step (apt, virtualenv, user, units, systemctl) ran to the end.
    assert "none made" in output
    # As systemd makes StateDirectory=: the service creates the spool and outputs in it.
    for folder in ["/var/lib/edge-vision", "/var/lib/edge-vision/artifacts"]:
        assert f"would give {folder} to edge-vision:" in output


def test_power_mode_is_written_for_the_power_unit(root: Path, models: Path) -> None:
    _install(root, models, "--power-mode", "2")
    assert (root / "etc/edge-vision/power.env").read_text() == "EDGE_NVPMODEL=2\n"
    power = _unit("edge-vision-power.service")
    assert power["Service"]["EnvironmentFile"] == "/etc/edge-vision/power.env"
    text = (DEPLOY / "edge-vision-power.service").read_text()
    assert "ExecStart=/usr/sbin/nvpmodel -m ${EDGE_NVPMODEL}\n" in text


@pytest.mark.parametrize(("version", "drop_in"), [(249, False), (252, False), (255, True)])
def test_restart_backoff_only_where_systemd_knows_it(
    root: Path, models: Path, tmp_path: Path, version: int, drop_in: bool
) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    systemctl = fake / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "systemd {version} ({version}.1-1)"\n')
    systemctl.chmod(0o755)
    _install(root, models, path_first=fake)
    conf = root / "etc/systemd/system/edge-vision.service.d/restart-backoff.conf"
    assert conf.exists() == drop_in


def test_uninstall_keeps_outputs_and_config_unless_purged(root: Path, models: Path) -> None:
    _install(root, models)
    recording = root / "var/lib/edge-vision/artifacts/outputs/run/recordings/cam0/a.mkv"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"video")
    before = _tree(root)
    _script("uninstall.sh", "--prefix", root, "--dry-run")
    assert _tree(root) == before

    output = _script("uninstall.sh", "--prefix", root)
    assert "kept what the service wrote (recorded outputs, MQTT spool)" in output
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert files == {str(recording.relative_to(root)), CONFIG, f"{CONFIG}.dist"}

    _script("uninstall.sh", "--prefix", root, "--purge")
    assert [p for p in root.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("script", ["install.sh", "uninstall.sh"])
def test_unknown_option_is_a_one_line_error(script: str) -> None:
    result = subprocess.run(
        ["bash", str(DEPLOY / script), "--frobnicate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr == f"{script}: error: unknown option '--frobnicate' (see --help)\n"


def test_help_says_prefix_only_lays_out_files() -> None:
    usage = _script("install.sh", "--help")
    assert "--prefix DIR    lay out the files under DIR only" in usage
    assert "no apt, no virtualenv" in usage


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(root: Path, models: Path) -> None:
    _install(root, models)
    # verify resolves the units' dependencies (sysinit.target...) and checks that each ExecStart
    # program exists, inside --root: give it the system's units and the programs a full install
    # (virtualenv) or JetPack (nvpmodel, jetson_clocks) would provide.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for program in [
        "opt/edge-vision/.venv/bin/python",
        "usr/sbin/nvpmodel",
        "usr/bin/jetson_clocks",
    ]:
        path = root / program
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", *UNITS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys are only warnings (exit 0): any output at all fails the test.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("config", ["edge.toml", "cameras.example.toml"])
def test_every_path_a_shipped_config_writes_is_writable_under_the_unit(config: str) -> None:
    """Outputs, spool, footage (relative ones from WorkingDirectory=) and the caches that
    Environment= names lie in a folder the unit lets the service write."""
    sandbox = service_sandbox()
    written = [sandbox.environment[key] for key in ("XDG_CACHE_HOME", "CUDA_CACHE_PATH")]
    for camera in camera_configs(load(DEPLOY / config)):
        written += [camera.output.dir, camera.mqtt.spool_dir, camera.colorizer.collect_dir]
    for path in filter(None, written):
        target = sandbox.working_directory / path
        assert any(target.is_relative_to(folder) for folder in sandbox.writable), path


def test_units_use_no_key_newer_than_systemd_249() -> None:
    for unit in UNITS:
        keys = {key for section in _unit(unit).values() for key in section}
        assert keys.isdisjoint(NEWER_THAN_249), unit
    backoff = _unit("restart-backoff.conf")["Service"]
    assert set(backoff) <= set(NEWER_THAN_249)  # why it is a separate, conditional drop-in


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30"),
        ("Restart", "always"),
        ("RestartSec", "5"),
        ("User", "edge-vision"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("StandardError", "journal"),
        ("StateDirectory", "edge-vision"),
        ("CacheDirectory", "edge-vision"),
    ],
)
def test_service_settings(key: str, expected: str) -> None:
    assert _unit("edge-vision.service")["Service"][key] == expected


@pytest.mark.parametrize(
    "key",
    # Each would hide the GPU or camera device nodes, or the Argus socket in /tmp.
    ["PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock", "PrivateTmp"],
)
def test_service_keeps_jetson_devices_reachable(key: str) -> None:
    assert key not in _unit("edge-vision.service")["Service"]


def test_service_waits_for_network_and_camera_daemon() -> None:
    unit = _unit("edge-vision.service")["Unit"]
    assert unit["Wants"] == "network-online.target"
    assert {"network-online.target", "nvargus-daemon.service", "edge-vision-power.service"} <= set(
        unit["After"].split()
    )
    assert _unit("edge-vision-power.service")["Unit"]["Before"] == "edge-vision.service"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck() -> None:
    scripts = [DEPLOY / name for name in ["install.sh", "uninstall.sh", "lib.sh"]]
    result = subprocess.run(
        ["shellcheck", "-x", *map(str, scripts)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout
