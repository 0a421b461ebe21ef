"""The data step: real packages, checksums, idempotence, clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge import paths
from edge.errors import EdgeError
from edge.files import sha256
from export.data import Source, bundled_file, collect, extract_members, load_manifest
from export.qt_resources import read_qt_resources
from export.tiles import SPLIT_FILE


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


def split_file() -> dict[str, Any]:
    return dict(json.loads(SPLIT_FILE.read_text()))


SIDES = ["train", "validation", "test", "outside"]


def source_of(photo: str) -> Source:
    """The manifest source a photo path (under the data folder) comes from."""
    for source in load_manifest():
        for member in source.files:
            if source.target(member, paths.DATA) == paths.DATA / photo:
                return source
    raise AssertionError(f"{photo} is not a file of the manifest")


def test_each_split_takes_whole_packages_and_no_package_is_on_two_sides() -> None:
    split = split_file()
    packages = split["packages"]
    assert list(packages) == SIDES
    for i, side in enumerate(SIDES):
        for other in SIDES[i + 1 :]:
            assert not set(packages[side]) & set(packages[other]), (side, other)
    for side in SIDES:
        assert split[side], side
        assert {source_of(p).package for p in split[side]} == set(packages[side]), side


def thumbnail(photo: Path) -> np.ndarray:
    """32×32 gray, contrast-normalised: the same picture at another size or quality matches."""
    image = cv2.imread(str(photo), cv2.IMREAD_REDUCED_GRAYSCALE_4)
    small = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (small - small.mean()) / (small.std() + 1e-6)


def test_a_picture_at_another_size_and_quality_has_the_same_thumbnail(tmp_path: Path) -> None:
    photo = paths.DATA / split_file()["test"][0]
    image = cv2.imread(str(photo))
    copy = tmp_path / "copy.jpg"
    cv2.imwrite(str(copy), cv2.resize(image, (640, 400)), [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert np.mean(np.abs(thumbnail(photo) - thumbnail(copy))) < 0.15


def test_no_photo_is_on_two_sides_not_even_as_another_file() -> None:
    split = split_file()
    everything = [p for side in SIDES for p in split[side]]
    assert len(everything) == len(set(everything))
    digests = [sha256(paths.DATA / p) for p in everything]
    assert len(digests) == len(set(digests))
    thumbs = {side: {p: thumbnail(paths.DATA / p) for p in split[side]} for side in SIDES}
    for i, side in enumerate(SIDES):
        for other in SIDES[i + 1 :]:
            for name, a in thumbs[side].items():
                for other_name, b in thumbs[other].items():
                    assert np.mean(np.abs(a - b)) > 0.3, f"{name} looks like {other_name}"


def test_the_earlier_test_photos_are_training_photos_now() -> None:
    split = split_file()
    assert len(split["previous_test"]) == 6
    assert set(split["previous_test"]) <= set(split["train"])


def bundle_of(member: str) -> str:
    """The Qt resource bundle a packed member lies in (it must be packed)."""
    found = bundled_file(member)
    assert found is not None, member
    return found[0]


def gcompris_source() -> Source:
    return next(s for s in load_manifest() if s.package == "gcompris-qt-data")


def test_photos_packed_in_a_qt_resource_bundle_are_collected(tmp_path: Path) -> None:
    source = gcompris_source()
    two = dict(list(source.files.items())[:2])  # a subset still shares the members' folder
    small = dataclasses.replace(source, files=two)
    collected = collect(tmp_path, paths.CACHE, [small])
    for member, path in zip(two, collected, strict=True):
        assert path == small.target(member, tmp_path)
        assert sha256(path) == two[member]
        assert cv2.imread(str(path)) is not None
    assert not (tmp_path / bundle_of(next(iter(two)))).exists()  # the bundle itself is not kept


def test_a_bundle_that_is_not_one_or_is_cut_short_is_refused(tmp_path: Path) -> None:
    source = gcompris_source()
    bundle = bundle_of(next(iter(source.files)))
    extract_members(next(paths.CACHE.glob("gcompris-qt-data_*.deb")), [bundle], tmp_path)
    blob = (tmp_path / bundle).read_bytes()
    files = read_qt_resources(blob)
    assert len(files) > 2
    assert all(path.startswith("/") for path in files)
    with pytest.raises(EdgeError, match=r"x\.rcc is not a Qt resource bundle"):
        read_qt_resources(b"PK\x03\x04" + blob[4:], "x.rcc")
    with pytest.raises(EdgeError, match=r"x\.rcc is a corrupt Qt resource bundle .*fetch it again"):
        read_qt_resources(blob[: len(blob) // 2], "x.rcc")


def test_a_damaged_package_names_the_fix_and_writes_nothing(tmp_path: Path) -> None:
    source = next(s for s in load_manifest() if s.package == "lomiri-wallpapers-20.04")
    package = next(paths.CACHE.glob("lomiri-wallpapers-20.04_*.deb"))
    damaged = bytearray(package.read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 4096] = bytes(4096)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / package.name).write_bytes(damaged)
    with pytest.raises(EdgeError, match=r"is not a readable Debian package: delete it and rerun"):
        collect(tmp_path / "data", cache, [source])
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))
