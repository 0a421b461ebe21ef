"""Runtime config: the documented default file, overrides, and one-line errors naming the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from edge.config import Config, load
from edge.errors import EdgeError

DEFAULT_FILE = Path(__file__).parent.parent / "deploy" / "edge.toml"


def test_documented_default_config_is_complete_and_equals_the_defaults() -> None:
    assert load(DEFAULT_FILE) == Config()
    documented = tomllib.loads(DEFAULT_FILE.read_text())
    for section in dataclasses.fields(Config):
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
