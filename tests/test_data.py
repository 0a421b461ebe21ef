"""The data step: real packages, checksums, idempotence, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge import paths
from edge.errors import EdgeError
from edge.files import sha256
from export.data import collect, load_manifest


def motmetrics_source() -> object:
    return next(s for s in load_manifest() if s.name == "motmetrics")


def test_everything_in_the_manifest_is_collected_and_verified() -> None:
    collected = collect()  # `make test` collected it already: this only verifies
    assert len(collected) == sum(len(s.files) for s in load_manifest())
    assert all(p.is_file() and p.is_relative_to(paths.DATA) for p in collected)


def test_collect_repairs_a_corrupt_file_and_is_idempotent(tmp_path: Path) -> None:
    source = motmetrics_source()
    first = collect(tmp_path, paths.CACHE, [source])
    target = tmp_path / "motmetrics" / "TUD-Campus" / "gt.txt"
    assert target in first
    target.write_text("corrupted")
    second = collect(tmp_path, paths.CACHE, [source])
    assert second == first
    assert sha256(target) == source.files["motmetrics/data/TUD-Campus/gt.txt"]
    before = {p: p.stat().st_mtime_ns for p in second}
    collect(tmp_path, paths.CACHE, [source])
    assert {p: p.stat().st_mtime_ns for p in second} == before


def test_a_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    source = motmetrics_source()
    wrong = dataclasses.replace(source, files=dict.fromkeys(source.files, "0" * 64))
    with pytest.raises(EdgeError, match=r"checksum mismatch for motmetrics/data/.* update"):
        collect(tmp_path, paths.CACHE, [wrong])
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_missing_package_names_the_fix(tmp_path: Path) -> None:
    ghost = dataclasses.replace(
        motmetrics_source(), kind="deb", package="no-such-package-edge-vision"
    )
    with pytest.raises(EdgeError, match=r"cannot fetch package no-such-package-edge-vision"):
        collect(tmp_path, tmp_path / "cache", [ghost])
