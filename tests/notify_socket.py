"""A NOTIFY_SOCKET the test owns: a real AF_UNIX datagram socket that records what arrives."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Notification:
    """One datagram: when it arrived (monotonic seconds) and its KEY=value lines."""

    at: float
    fields: dict[str, str]


class NotifyListener:
    """Binds a datagram socket (a file path, or an abstract name) and collects notifications.

    `address` is what goes into `$NOTIFY_SOCKET` ('@name' for an abstract socket).
    """

    def __init__(self, abstract: bool = False) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        if abstract:
            name = f"edge-test-{uuid.uuid4().hex}"
            self._socket.bind("\0" + name)
            self.address = "@" + name
        else:
            # Short folder: a socket path must fit in 108 bytes.
            self._folder = tempfile.TemporaryDirectory(prefix="sdn")
            self.address = str(Path(self._folder.name) / "notify")
            self._socket.bind(self.address)
        self._socket.settimeout(0.05)
        self._lock = threading.Lock()
        self._received: list[Notification] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            with self._lock:
                self._received.append(Notification(time.monotonic(), fields))

    def notifications(self, key: str | None = None) -> list[Notification]:
        """What arrived so far, only those carrying `key` if given."""
        with self._lock:
            return [n for n in self._received if key is None or key in n.fields]

    def wait_for(self, key: str, count: int = 1, timeout: float = 10.0) -> list[Notification]:
        """Wait until `count` notifications carrying `key` arrived; return them all.

        Raises:
            TimeoutError: fewer arrived within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.notifications(key)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise TimeoutError(f"{len(self.notifications(key))} of {count} {key} notifications")

    def close(self) -> None:
        """Stop collecting and remove the socket."""
        self._stop.set()
        self._thread.join()
        self._socket.close()
        if self._folder is not None:
            self._folder.cleanup()
