"""An on-disk, size-bounded FIFO of messages: store and forward for the MQTT publisher.

SQLite (standard library) in WAL mode with `synchronous=FULL`: each `put` is one transaction whose
commit is fsynced before `put` returns, so a SIGKILL or a power cut loses at most the `put` in
progress (one frame's messages, never acknowledged as stored) and never tears the file. FULL costs
one fsync per `put` (per frame with messages, not per message): a put of one 300-byte message took
0.27-0.33 ms at the median on a quiet disk against 0.02 ms for NORMAL (a put of 50 under load:
2.6 against 0.7 ms), which could lose every commit since the last checkpoint, up to 4 MB of WAL
(docs/mqtt.md). Order is the insertion order (an integer key). When the stored payloads exceed
`max_bytes`, the oldest messages are deleted and counted. A spool reopened after a restart hands
out what the previous run left, first.

A transaction that fails (full disk, I/O error, a lock held by another program) is rolled back
whole, counts included, and raised as `SpoolError`; the next call starts afresh. A file that SQLite
finds damaged at opening (a power cut on a disk that lies about fsync, a truncated copy) is moved
aside, never deleted, and an empty spool takes its place.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.errors import EdgeError
from edge.outputs.durable import sync_dir

log = logging.getLogger(__name__)
# Only this process writes the file; a lock held longer is another program's (an sqlite3 shell),
# and a camera's output stage must not wait for it.
BUSY_TIMEOUT_S = 0.5
SIDE_FILES = ("-wal", "-shm")  # SQLite's companions of a WAL-mode file, renamed with it
HEADER = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class Message:
    """One message to publish; `seq` orders it in the spool (0 before it is stored)."""

    topic: str
    payload: bytes
    retain: bool = False
    seq: int = 0


class SpoolError(EdgeError):
    """The spool cannot store, read or forget messages now; the message says why, in one line."""


class Spool:
    """Messages waiting for the broker, oldest first; safe to share between threads.

    Attributes:
        quarantined: where a damaged file found at opening was moved, or None.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        """Open (or create) the spool file; a damaged one is moved aside and replaced.

        Raises:
            EdgeError: the file cannot be created (folder missing rights, disk failing).
        """
        self.path = path
        self.quarantined: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = _connect(path)
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:  # its subclasses: I/O, rights, locks
                    raise
                self.quarantined = quarantine(path)
                log.warning("MQTT spool %s is damaged (%s): moved aside to %s; starting empty",
                            path, exc, self.quarantined.name)  # fmt: skip
                self._db = _connect(path)
            # The new file's name survives a power cut too (where the file system can).
            sync_dir(path.parent, strict=False)
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
            ).fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise EdgeError(
                f"cannot open the MQTT spool {path}: {exc} (check mqtt.spool_dir)"
            ) from exc
        self.count, self.bytes = (int(v) for v in row)
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()

    def put(self, messages: Sequence[Message]) -> None:
        """Append messages in order; drop the oldest beyond the size bound.

        Raises:
            SpoolError: nothing was stored (the transaction was rolled back).
        """
        if not messages:
            return
        with self._transaction("store messages"):
            self._db.executemany(
                "INSERT INTO messages (topic, payload, retain) VALUES (?, ?, ?)",
                [(m.topic, m.payload, int(m.retain)) for m in messages],
            )
            self.count += len(messages)
            self.bytes += sum(len(m.payload) for m in messages)
            while self.bytes > self.max_bytes and self.count:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        seq, size = self._db.execute(
            "SELECT seq, LENGTH(payload) FROM messages ORDER BY seq LIMIT 1"
        ).fetchone()
        self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        self.count, self.bytes, self.dropped = self.count - 1, self.bytes - size, self.dropped + 1

    def head(self, limit: int) -> list[Message]:
        """The oldest `limit` messages, still stored until `remove` is called.

        Raises:
            SpoolError: the file cannot be read.
        """
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT seq, topic, payload, retain FROM messages ORDER BY seq LIMIT ?",
                    (limit,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read messages", exc) from exc
        return [
            Message(topic, bytes(payload), bool(retain), seq)
            for seq, topic, payload, retain in rows
        ]

    def remove(self, messages: Sequence[Message]) -> None:
        """Forget messages the broker has acknowledged.

        Raises:
            SpoolError: none was forgotten (the transaction was rolled back).
        """
        if not messages:
            return
        with self._transaction("forget delivered messages"):
            for message in messages:  # some may have been dropped as oldest meanwhile
                row = self._db.execute(
                    "DELETE FROM messages WHERE seq = ? RETURNING LENGTH(payload)", (message.seq,)
                ).fetchone()
                if row is not None:
                    self.count, self.bytes = self.count - 1, self.bytes - int(row[0])

    def close(self) -> None:
        """Close the file (what it holds stays for the next run)."""
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[None]:
        """Hold the lock for one transaction: committed whole, or rolled back with the counts."""
        with self._lock:
            counts = self.count, self.bytes, self.dropped
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:  # SQLite ends some failed transactions by itself
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                self.count, self.bytes, self.dropped = counts
                if isinstance(exc, sqlite3.Error):
                    raise self._error(doing, exc) from exc
                raise

    def _error(self, doing: str, exc: sqlite3.Error) -> SpoolError:
        return SpoolError(
            f"MQTT spool {self.path}: cannot {doing}: {exc} "
            "(is the disk under mqtt.spool_dir full or failing?)"
        )


def _connect(path: Path) -> sqlite3.Connection:
    """The spool's connection, its table made and its pages checked.

    Raises:
        sqlite3.DatabaseError: exactly that class when the file is damaged or not a database.
    """
    if not _sqlite_or_new(path):  # refused before SQLite opens it: closing, it deletes the WAL
        raise sqlite3.DatabaseError("file is not a database")
    db = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
    )
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # each commit on disk before put() returns
        db.execute(SCHEMA)
        problems = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"quick_check: {problems[0]}")
    except BaseException:
        db.close()
        raise
    return db


def _sqlite_or_new(path: Path) -> bool:
    """Whether the file starts as SQLite's do, or is empty or missing (a new spool)."""
    try:
        with path.open("rb") as file:
            head = file.read(len(HEADER))
    except FileNotFoundError:
        return True
    return head in (b"", HEADER)


def quarantine(path: Path) -> Path:
    """Move a damaged spool file and its WAL companions aside, as `NAME.corrupt-UTCSTAMP[-N]`
    (SQLite can still open the moved file with its WAL); returns the new path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffixes = itertools.chain([""], (f"-{n}" for n in itertools.count(1)))
    names = (f"{path.name}.corrupt-{stamp}{suffix}" for suffix in suffixes)
    aside = next(
        path.with_name(name)
        for name in names
        if not any(path.with_name(name + side).exists() for side in ("", *SIDE_FILES))
    )
    path.rename(aside)
    for side in SIDE_FILES:
        companion = path.with_name(path.name + side)
        if companion.exists():
            companion.rename(aside.with_name(aside.name + side))
    sync_dir(path.parent, strict=False)
    return aside
