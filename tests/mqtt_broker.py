"""A real MQTT broker for tests: Debian's mosquitto on a loopback port (`benchmarks.processes`),
plain or TLS with a certificate authority and a password file made here; and a subscriber that
records messages."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from benchmarks.processes import Broker, free_port

USER, PASSWORD = "edge", "s3cret"


def make_certificates(folder: Path) -> dict[str, Path]:
    """A certificate authority and a server certificate for 127.0.0.1 signed by it."""
    files = {name: folder / f"{name}.pem" for name in ("ca", "ca_key", "server", "server_key")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", str(files["ca_key"]), "-out", str(files["ca"]))  # fmt: skip
    request = folder / "server.csr"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(files["server_key"]), "-out", str(request))  # fmt: skip
    extensions = folder / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(request), "-CA", str(files["ca"]),
            "-CAkey", str(files["ca_key"]), "-CAcreateserial", "-days", "2",
            "-extfile", str(extensions), "-out", str(files["server"]))  # fmt: skip
    return files


class Subscriber:
    """Records every message under a topic filter, in arrival order. A `durable` one keeps its
    session while disconnected (a persistent broker queues QoS 1 messages for it, even across
    its own restart) and reconnects by itself."""

    def __init__(self, broker: Broker, topic: str = "#", durable: bool = False) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=not durable
        )
        self.client.reconnect_delay_set(1, 2)
        if broker.users:
            self.client.username_pw_set(USER, PASSWORD)
        if broker.tls:
            self.client.tls_set(ca_certs=str(broker.tls["ca"]))
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("subscriber could not subscribe")

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, suffix: str) -> list[bytes]:
        """Payloads received on topics ending with `suffix`."""
        with self._lock:
            return [payload for topic, payload, _ in self.messages if topic.endswith(suffix)]

    def wait_for(self, suffix: str, count: int, timeout_s: float = 30) -> list[bytes]:
        deadline = time.monotonic() + timeout_s
        while len(self.on(suffix)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.on(suffix))} of {count} messages on *{suffix}")
            time.sleep(0.05)
        return self.on(suffix)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain mosquitto on a free loopback port, anonymous access."""
    running = Broker(tmp_path, free_port())
    running.start()
    yield running
    running.stop()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Broker]:
    """A TLS mosquitto with a test CA and a password file (user `edge`)."""
    running = Broker(tmp_path, free_port(), make_certificates(tmp_path), {USER: PASSWORD})
    running.start()
    yield running
    running.stop()
