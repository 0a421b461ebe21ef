"""The MQTT spool on real SQLite files: a damaged file is moved aside, a failed transaction rolls
back whole, and the next one works."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge.outputs.durable import sync_dir
from edge.service.spool import Message, Spool, SpoolError


def messages(count: int, start: int = 0) -> list[Message]:
    return [Message("t", f"m{n}".encode()) for n in range(start, start + count)]


def payloads(spool: Spool) -> list[bytes]:
    return [m.payload for m in spool.head(1000)]


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another program (an sqlite3 shell) holding the file's write lock: what a failing disk
    does to a transaction, reproducible without privileges."""
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def truncated_spool(path: Path) -> bytes:
    """A spool of 300 messages cut to half its size, as a copy interrupted by a power cut."""
    spool = Spool(path, max_bytes=10**6)
    spool.put([Message("t", os.urandom(300)) for _ in range(300)])
    spool.close()
    data = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(data)
    return data


def garbage(path: Path) -> bytes:
    data = os.urandom(8192)
    path.write_bytes(data)
    path.with_name(path.name + "-wal").write_bytes(b"wal of the damaged file")
    return data


@pytest.mark.parametrize("damage", [garbage, truncated_spool])
def test_a_damaged_file_is_moved_aside_and_an_empty_spool_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    path = tmp_path / "mqtt-dev.sqlite"
    data = damage(path)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, logger="edge.service.spool"):
        spool = Spool(path, max_bytes=10**6)
    assert spool.quarantined is not None
    assert spool.quarantined.name.startswith("mqtt-dev.sqlite.corrupt-")
    assert spool.quarantined.read_bytes() == data  # the user's data, kept as it was
    wal = path.with_name(path.name + "-wal")
    if damage is garbage:  # its WAL went with it: applied to the new file, it would corrupt it
        assert spool.quarantined.with_name(spool.quarantined.name + "-wal").exists()
    assert spool.count == 0
    spool.put(messages(3))
    assert payloads(spool) == [b"m0", b"m1", b"m2"]
    spool.close()
    assert not wal.exists() or wal.read_bytes() != b"wal of the damaged file"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "damaged" in lines[0]
    assert spool.quarantined.name in lines[0]


def test_a_second_damage_keeps_the_first_copy(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    first = garbage(path)
    Spool(path, 1000).close()
    second = garbage(path)
    Spool(path, 1000).close()
    kept = {p.read_bytes() for p in tmp_path.glob("s.sqlite.corrupt-*") if "-wal" not in p.name}
    assert kept == {first, second}


def test_a_failed_put_rolls_back_and_the_next_one_works(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=22)
    spool.put(messages(8))  # 8 x 2 bytes
    with (
        write_locked(path),
        pytest.raises(SpoolError, match=r"cannot store messages.*mqtt\.spool_dir"),
    ):
        spool.put(messages(4, 8))  # would drop the 2 oldest too
    assert (spool.count, spool.bytes, spool.dropped) == (8, 16, 0)
    spool.put(messages(2, 12))  # no "cannot start a transaction within a transaction"
    assert payloads(spool) == [f"m{n}".encode() for n in (0, 1, 2, 3, 4, 5, 6, 7, 12, 13)]
    assert (spool.count, spool.bytes, spool.dropped) == (10, 22, 0)
    spool.close()


def test_a_failed_remove_rolls_back_and_the_next_one_works(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=1000)
    spool.put(messages(4))
    head = spool.head(2)
    with write_locked(path), pytest.raises(SpoolError, match="cannot forget delivered"):
        spool.remove(head)
    assert (spool.count, spool.bytes) == (4, 8)
    spool.remove(head)
    spool.put(messages(1, 4))
    assert payloads(spool) == [b"m2", b"m3", b"m4"]
    spool.close()
    assert payloads(Spool(path, 1000)) == [b"m2", b"m3", b"m4"]


def test_a_folder_whose_fsync_the_file_system_refuses_leaves_the_spool_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:  # the real call for files; a folder's refused, as some do
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            refused.append(os.readlink(f"/proc/self/fd/{fd}"))
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "s.sqlite"
    garbage(path)
    spool = Spool(path, max_bytes=1000)  # moved aside, a new file made: both folder syncs tried
    spool.put(messages(2))
    assert payloads(spool) == [b"m0", b"m1"]
    spool.close()
    assert refused == [str(tmp_path), str(tmp_path)]
    sync_dir(tmp_path, strict=False)  # the one helper the spool uses
    with pytest.raises(OSError, match="Invalid argument"):
        sync_dir(tmp_path)  # strict: the caller says what the refusal costs
