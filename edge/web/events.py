"""The events index the web page queries: SQLite, built from the events files (which stay the
durable record) and brought up to date before each query.

Each events file is read once: the index remembers, per file, its inode and how many bytes it
has taken in, and later reads only the lines appended since. A file that shrank or was replaced
(a new one after rotation) is read again from the start, a file gone (retention) takes its
events out, and an index that is missing, unreadable or of another schema is rebuilt. Events are
keyed by camera and id (`RUN/N`), so a piece read twice (a rotated file seen under its new name)
adds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from edge.recordings import event_time

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE events (
    camera TEXT NOT NULL, id TEXT NOT NULL, file TEXT NOT NULL, utc REAL NOT NULL,
    kind TEXT, class TEXT, track_id INTEGER, run TEXT, record TEXT NOT NULL,
    PRIMARY KEY (camera, id));
CREATE INDEX events_utc ON events (utc);
CREATE TABLE files (path TEXT PRIMARY KEY, inode INTEGER NOT NULL, offset INTEGER NOT NULL);
"""
MAX_RESULTS = 500
T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    """What the events list asks for; None: no bound. At most `MAX_RESULTS` are returned.

    Raises:
        ValueError: a limit below 1.
    """

    camera: str | None = None
    kind: str | None = None
    cls: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        # SQLite reads a negative LIMIT as none: `limit=-1` would return every event.
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, not {self.limit}")


class EventIndex:
    """The SQLite index at `path` over the events files that `sources()` lists."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        """The index, made anew when missing or not this schema's."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, check_same_thread=False)
            if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return db
            db.close()
        except sqlite3.DatabaseError as exc:
            log.warning("events index %s unreadable (%s): rebuilding it", self.path, exc)
        self.path.unlink(missing_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.commit()
        return db

    def update(self, files: Iterable[Path]) -> None:
        """Take in what the events files gained since the last update; forget files gone."""
        wanted = {str(path): path for path in files}
        with self._lock:
            self._repairing(lambda: self._update(wanted))

    def _update(self, wanted: dict[str, Path]) -> None:
        # Files gone, replaced or cut short are forgotten before any is read: after a
        # rotation the full piece (the old file, renamed) is then read in again whole.
        for name, inode, offset in self._db.execute("SELECT * FROM files").fetchall():
            if name not in wanted or not _same_file(wanted[name], inode, offset):
                self._forget(name)
        for name, path in wanted.items():
            self._read(name, path)
        self._db.commit()

    def _repairing(self, work: Callable[[], T]) -> T:
        """`work`, done again on a rebuilt index if the file turns out damaged while open (a
        power cut on storage that loses writes): the events files are the record, and a
        damaged index must not fail every query until the next restart."""
        try:
            return work()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, disk full: not damage
                raise
            log.warning("events index %s damaged (%s): rebuilding it", self.path, exc)
            self._db.close()
            self.path.unlink(missing_ok=True)
            self._db = self._open()
            return work()

    def _forget(self, name: str) -> None:
        self._db.execute("DELETE FROM events WHERE file = ?", (name,))
        self._db.execute("DELETE FROM files WHERE path = ?", (name,))

    def _read(self, name: str, path: Path) -> None:
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            self._forget(name)
            return
        with stream:
            status = os.fstat(stream.fileno())
            inode, size = status.st_ino, status.st_size
            row = self._db.execute(
                "SELECT inode, offset FROM files WHERE path = ?", (name,)
            ).fetchone()
            offset = row[1] if row is not None and row[0] == inode and row[1] <= size else 0
            stream.seek(offset)
            # Line by line into SQLite: a 64 MiB piece read whole, with its rows, took ~400 MB
            # beside the pipeline while an index was built.
            lines = _WholeLines(stream, size - offset)
            self._db.executemany(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row for line in lines if (row := _row(name, line)) is not None),
            )
        self._db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?)", (name, inode, offset + lines.taken)
        )

    def query(self, query: Query) -> list[dict[str, Any]]:
        """The matching events, newest first."""
        where, args = [], []
        for column, value in (
            ("camera = ?", query.camera),
            ("kind = ?", query.kind),
            ("class = ?", query.cls),
            ("utc >= ?", query.since),
            ("utc <= ?", query.until),
        ):
            if value is not None:
                where.append(column)
                args.append(value)
        sql = "SELECT record FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY utc DESC, rowid DESC LIMIT ?"
        limit = min(query.limit, MAX_RESULTS)
        with self._lock:
            rows = self._repairing(lambda: self._db.execute(sql, (*args, limit)).fetchall())
        return [json.loads(record) for (record,) in rows]

    def classes(self) -> list[str]:
        """Every class an event names."""
        sql = "SELECT DISTINCT class FROM events ORDER BY class"
        with self._lock:
            rows = self._repairing(lambda: self._db.execute(sql).fetchall())
        return [name for (name,) in rows if name]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _same_file(path: Path, inode: int, offset: int) -> bool:
    """Whether `path` is still the file the index read `offset` bytes of."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return False
    return status.st_ino == inode and status.st_size >= offset


class _WholeLines:
    """The whole lines in the next `size` bytes of `stream`, one at a time (a line still being
    written waits for the next update); `taken`: the bytes of those read so far."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream, self.left, self.taken = stream, size, 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self.stream:
            if len(line) > self.left or not line.endswith(b"\n"):
                return
            self.left -= len(line)
            self.taken += len(line)
            yield line


def _row(file: str, line: bytes) -> tuple[Any, ...] | None:
    """An events-table row of one JSONL line; None for a line that is not an event."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or "id" not in record or "camera" not in record:
        return None
    utc = event_time(record)
    if utc is None:
        return None
    return (
        str(record["camera"]),
        str(record["id"]),
        file,
        utc,
        record.get("event"),
        record.get("class"),
        record.get("track_id"),
        record.get("run"),
        json.dumps(record),
    )
