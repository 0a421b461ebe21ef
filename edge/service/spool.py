"""An on-disk, size-bounded FIFO of messages: store and forward for the MQTT publisher.

SQLite (standard library) in WAL mode: each `put` is one transaction, so a SIGKILL or a power cut
loses at most the message being written and never tears the file; order is the insertion order
(an integer key). When the stored payloads exceed `max_bytes`, the oldest messages are deleted
and counted. A spool reopened after a restart hands out what the previous run left, first.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

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


class Spool:
    """Messages waiting for the broker, oldest first; safe to share between threads."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        """Open (or create) the spool file.

        Raises:
            EdgeError: the file cannot be created or is not a spool.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process kills
            self._db.execute(SCHEMA)
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
            )
        except (OSError, sqlite3.Error) as exc:
            raise EdgeError(
                f"cannot open the MQTT spool {path}: {exc} (check mqtt.spool_dir)"
            ) from exc
        self.count, self.bytes = (int(v) for v in row.fetchone())
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()

    def put(self, messages: Sequence[Message]) -> None:
        """Append messages in order; drop the oldest beyond the size bound."""
        if not messages:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO messages (topic, payload, retain) VALUES (?, ?, ?)",
                [(m.topic, m.payload, int(m.retain)) for m in messages],
            )
            self.count += len(messages)
            self.bytes += sum(len(m.payload) for m in messages)
            while self.bytes > self.max_bytes and self.count:
                self._drop_oldest()
            self._db.execute("COMMIT")

    def _drop_oldest(self) -> None:
        seq, size = self._db.execute(
            "SELECT seq, LENGTH(payload) FROM messages ORDER BY seq LIMIT 1"
        ).fetchone()
        self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        self.count, self.bytes, self.dropped = self.count - 1, self.bytes - size, self.dropped + 1

    def head(self, limit: int) -> list[Message]:
        """The oldest `limit` messages, still stored until `remove` is called."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain FROM messages ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [
            Message(topic, bytes(payload), bool(retain), seq)
            for seq, topic, payload, retain in rows
        ]

    def remove(self, messages: Sequence[Message]) -> None:
        """Forget messages the broker has acknowledged."""
        if not messages:
            return
        with self._lock:
            self._db.execute("BEGIN")
            for message in messages:  # some may have been dropped as oldest meanwhile
                row = self._db.execute(
                    "DELETE FROM messages WHERE seq = ? RETURNING LENGTH(payload)", (message.seq,)
                ).fetchone()
                if row is not None:
                    self.count, self.bytes = self.count - 1, self.bytes - int(row[0])
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file (what it holds stays for the next run)."""
        with self._lock:
            self._db.close()
