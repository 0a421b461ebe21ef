"""Runtime config: the documented default file, overrides, and one-line errors naming the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from edge.config import Config, camera_configs, load
from edge.errors import EdgeError

DEFAULT_FILE = Path(__file__).parent.parent / "deploy" / "edge.toml"


def test_documented_default_config_is_complete_and_equals_the_defaults() -> None:
    assert load(DEFAULT_FILE) == Config()
    documented = tomllib.loads(DEFAULT_FILE.read_text())
    for section in dataclasses.fields(Config):
        if section.name == "cameras":  # a list of tables, shown in cameras.example.toml
            continue
        keys = {f.name for f in dataclasses.fields(section.default_factory())}  # type: ignore[misc]
        assert set(documented[section.name]) == keys, section.name


def test_overrides_are_typed_by_toml_else_strings() -> None:
    overrides = ["source.fps=15", "source.uri=rtsp://cam/1", 'detector.classes=["a"]']
    config = load(None, [*overrides, "output.overlay=false", "health.stall_s=3"])
    assert config.source.fps == 15
    assert config.source.uri == "rtsp://cam/1"
    assert config.detector.classes == ["a"]
    assert config.output.overlay is False
    assert config.health.stall_s == 3.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[detector]\nconfidence = 1.5", r"'detector.confidence': expected a value in \[0, 1\]"),
        ("[detector]\nconfidense = 0.3", r"unknown config key 'detector.confidense' \(known"),
        ("[camera]\nuri = 'x'", r"unknown config section 'camera'"),
        ("[source]\nfps = 'thirty'", r"'source.fps': expected an integer, got 'thirty'"),
        ("[source]\nformat = 'RGB'", r"'source.format': expected one of BGR, GRAY8"),
        ("[output]\noverlay = 1", r"'output.overlay': expected true or false, got 1"),
        ("[detector]\nclasses = 'Normal'", r"'detector.classes': expected a list of strings"),
        ("[source]\nmax_frames = -1", r"'source.max_frames': expected a value >= 0"),
        ("source = 3", r"config key 'source' must be a \[source\] table"),
        ("[source\nuri=", r"is not valid TOML"),
        (
            '[[cameras]]\nname = "a"\n[[cameras]]\nname = "a"',
            r"config key 'cameras\[1\].name': 'a' is already the name of another camera",
        ),
        (
            '[[cameras]]\nname = "a"\noutput.dir = "x"\n[[cameras]]\nname = "b"\noutput.dir = "x"',
            r"config key 'cameras\[1\].output.dir': 'x' is already camera 'a''s folder",
        ),
        (
            '[[cameras]]\ndetector.model = "m.onnx"',
            r"config key 'cameras\[0\].detector.model' is shared by all cameras: set it in "
            r"\[detector\]",
        ),
        ("[[cameras]]\noutput.rtsp_port = 8554", r"'cameras\[0\].output.rtsp_port' is shared"),
        ('[[cameras]]\nformat = "RGB"', r"config key 'cameras\[0\].format': expected one of"),
        ("[[cameras]]\nzoom = 2", r"unknown config key 'cameras\[0\].zoom'"),
        ("cameras = []", r"config key 'cameras' must be \[\[cameras\]\] tables"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(EdgeError, match=message):
        load(path)


def test_cli_reports_a_bad_key_in_one_line_before_loading_models(tmp_path: Path) -> None:
    command = ["run", "--config", str(DEFAULT_FILE), "pipeline.queue_size=0"]
    result = subprocess.run(
        [sys.executable, "-m", "edge", *command], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "edge run: error: config key 'pipeline.queue_size': expected a value in [1, 1000], got 0"
    ]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match=r"config file not found: .*nope.toml"):
        load(tmp_path / "nope.toml")


EXAMPLE_FILE = DEFAULT_FILE.with_name("cameras.example.toml")


def test_example_cameras_take_shared_defaults_and_their_own_keys() -> None:
    configs = camera_configs(load(EXAMPLE_FILE))
    gate, yard, dock = configs
    assert [c.source.name for c in configs] == ["gate", "yard", "dock"]
    assert {c.source.timeout_s for c in configs} == {5.0}  # [source] is every camera's default
    assert [c.output.dir for c in configs] == [
        f"/var/lib/edge-vision/artifacts/outputs/{name}" for name in ("gate", "yard", "dock")
    ]
    assert [c.output.rtsp_path for c in configs] == ["/gate", "/yard", "/dock"]
    assert {c.output.rtsp_port for c in configs} == {8554}
    assert (yard.source.format, yard.detector.confidence, yard.output.segment_s) == (
        "GRAY8",
        0.35,
        300.0,
    )
    assert (gate.detector.confidence, gate.output.segment_s) == (0.2, 60.0)
    assert (dock.detector.classes, dock.colorizer.mode, dock.output.video) == ([], "off", "")
    assert len({c.detector.model for c in configs}) == 1


def test_one_source_is_a_list_of_one_camera() -> None:
    config = load(None, ["source.name='door'"])
    (only,) = camera_configs(config)
    assert only == config
