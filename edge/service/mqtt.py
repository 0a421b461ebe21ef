"""MQTT publishing with store and forward (paho-mqtt 2.x, MQTT 3.1.1 or 5).

Callers never wait for the network: `send` appends to the on-disk spool (`edge.service.spool`)
and wakes the publisher thread, which connects (with backoff; every failed attempt is one log
line naming the cause), announces `PREFIX/DEVICE/available` = `online` (retained; `offline` is the
last will), then publishes the spool in order, a window at a time, deleting messages only once the
broker has acknowledged them. A broken connection is replaced by a new client, and the window is
sent again: a subscriber may see a message twice (QoS 1 allows it; payloads carry ids), never out
of order, and nothing is lost unless the spool's size bound drops its oldest messages (counted).
`publish_now` (stats) is sent only while connected and never spooled.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MqttConfig
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.service.spool import Message, Spool

log = logging.getLogger(__name__)
WINDOW = 100  # messages in flight before waiting for their acknowledgements
ACK_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 5.0  # at a clean stop, time given to send what is spooled


class Unreachable(Exception):
    """The broker cannot be used now; the message says why, in one line."""


def device_name(config: MqttConfig) -> str:
    """The device's name in topics: the config's, else the host name."""
    return config.device or socket.gethostname().split(".")[0]


def read_password(config: MqttConfig) -> str | None:
    """The password from `password_file` or the `password_env` variable, or None for none.

    Raises:
        Unreachable: the file cannot be read or the variable is not set.
    """
    if config.password_file:
        try:
            return Path(config.password_file).read_text().strip()
        except OSError as exc:
            raise Unreachable(
                f"cannot read mqtt.password_file {config.password_file}: {exc.strerror}"
            ) from exc
    if config.password_env:
        if config.password_env not in os.environ:
            raise Unreachable(f"mqtt.password_env names ${config.password_env}, which is not set")
        return os.environ[config.password_env]
    return None


def connect_error(exc: BaseException, config: MqttConfig) -> str:
    """One line saying why connecting to the broker failed, and what to check."""
    where = f"{config.host}:{config.port}"
    if isinstance(exc, socket.gaierror):
        return f"unknown host '{config.host}' (check mqtt.host)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS verification of {where} failed: {exc.verify_message} (check mqtt.ca_file)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason} (check mqtt.tls, mqtt.port, mqtt.ca_file)"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused (is the broker running? check mqtt.port)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer from {where} within {CONNECT_TIMEOUT_S:g} s"
    return f"cannot connect to {where}: {exc}"


class MqttPublisher:
    """A background publisher for one device's topics (`PREFIX/DEVICE/...`)."""

    def __init__(self, config: MqttConfig, metrics: Metrics) -> None:
        """Open the spool (what an earlier run left is sent first); nothing connects yet.

        Raises:
            EdgeError: the spool cannot be opened, or a TLS file named in the config is missing.
        """
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(config, key)
            if value and not Path(value).is_file():
                raise EdgeError(f"config key 'mqtt.{key}': file not found: {value}")
        self.config, self.metrics = config, metrics
        self.device = device_name(config)
        self.base = f"{config.topic_prefix}/{self.device}"
        path = Path(config.spool_dir) / f"mqtt-{self.device}.sqlite"
        self.spool = Spool(path, int(config.spool_max_mb * 1e6))
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._client: paho.Client | None = None
        self._update_gauges()

    def start(self) -> None:
        """Start connecting and publishing in the background."""
        self._thread.start()

    def send(self, messages: list[Message]) -> None:
        """Queue messages (topics relative to `PREFIX/DEVICE/`) for delivery; never blocks on
        the network."""
        self.spool.put([Message(f"{self.base}/{m.topic}", m.payload, m.retain) for m in messages])
        self._update_gauges()
        self._wake.set()

    def publish_now(self, topic: str, payload: bytes) -> None:
        """Publish (QoS 0, not spooled) if connected; otherwise drop it: for periodic stats."""
        client = self._client
        if client is not None and self.connected.is_set():
            client.publish(f"{self.base}/{topic}", payload, qos=0)

    def close(self) -> None:
        """Send what is spooled (for a few seconds), announce `offline`, disconnect."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=DRAIN_TIMEOUT_S + ACK_TIMEOUT_S + 5)
        self.spool.close()

    def _update_gauges(self) -> None:
        self.metrics.set("mqtt_spooled_messages", self.spool.count)
        self.metrics.set("mqtt_spooled_bytes", self.spool.bytes)
        self.metrics.set("mqtt_spool_dropped", self.spool.dropped)
        self.metrics.set("mqtt_connected", float(self.connected.is_set()))

    def _run(self) -> None:
        delay = self.config.reconnect_initial_s
        last_try = False  # a stop during a backoff wait still gets one attempt to drain the spool
        while not last_try:
            last_try = self._stop.is_set()
            try:
                client = self._connect()
            except Unreachable as exc:
                self.metrics.increment("mqtt_connect_failures")
                if last_try:
                    log.warning("mqtt: %s; %d messages stay spooled for the next start",
                                exc, self.spool.count)  # fmt: skip
                    return
                log.warning("mqtt: %s; retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)
                continue
            delay = self.config.reconnect_initial_s
            try:
                self._pump(client)  # returns only at a stop, after draining and saying offline
                return
            except Unreachable as exc:
                log.warning("mqtt: %s; reconnecting", exc)
            finally:
                self._hang_up(client)

    def _connect(self) -> paho.Client:
        """A connected client that has announced `online`.

        Raises:
            Unreachable: with the cause, in one line.
        """
        config = self.config
        protocol = paho.MQTTv5 if config.protocol == "5" else paho.MQTTv311
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"edge-vision-{self.device}",
            protocol=protocol,
        )
        client.will_set(f"{self.base}/available", b"offline", qos=1, retain=True)
        password = read_password(config)
        if config.username or password is not None:
            client.username_pw_set(config.username or None, password)
        if config.tls:
            client.tls_set(
                ca_certs=config.ca_file or None,
                certfile=config.cert_file or None,
                keyfile=config.key_file or None,
            )
        answered = threading.Event()
        refusal: list[str] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                refusal.append(str(reason))
            answered.set()

        def on_disconnect(_c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
            self.connected.clear()
            self._wake.set()

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        try:
            client.connect(config.host, config.port, config.keepalive_s)
        except (OSError, ssl.SSLError) as exc:
            raise Unreachable(connect_error(exc, config)) from exc
        client.loop_start()
        if not answered.wait(CONNECT_TIMEOUT_S) or refusal:
            self._hang_up(client)
            if refusal:
                raise Unreachable(
                    f"broker {config.host}:{config.port} refused the login: {refusal[0]} "
                    "(check mqtt.username and the password)"
                )
            raise Unreachable(f"no CONNACK from {config.host}:{config.port}")
        self._client = client
        self.connected.set()
        self.metrics.increment("mqtt_connects")
        log.info("mqtt: connected to %s:%d as %s", config.host, config.port, self.base)
        self._deliver(client, [Message(f"{self.base}/available", b"online", retain=True)])
        self._update_gauges()
        return client

    def _pump(self, client: paho.Client) -> None:
        """Publish the spool in order until a stop (after draining) or a lost connection."""
        stop_deadline: float | None = None
        while True:
            if self._stop.is_set() and stop_deadline is None:
                stop_deadline = time.monotonic() + DRAIN_TIMEOUT_S
            batch = self.spool.head(WINDOW)
            if batch:
                self._deliver(client, batch)
                self.spool.remove(batch)
                self.metrics.increment("mqtt_published", len(batch))
                self._update_gauges()
            if stop_deadline is not None and (not batch or time.monotonic() > stop_deadline):
                self._deliver(client, [Message(f"{self.base}/available", b"offline", retain=True)])
                client.disconnect()
                return
            if not batch:
                self._wake.wait(1.0)
                self._wake.clear()
            if not self.connected.is_set():
                raise Unreachable("connection to the broker lost")

    def _deliver(self, client: paho.Client, batch: list[Message]) -> None:
        """Publish and wait for the broker's acknowledgement of every message.

        Raises:
            Unreachable: a message was not acknowledged in time.
        """
        infos = [client.publish(m.topic, m.payload, self.config.qos, m.retain) for m in batch]
        deadline = time.monotonic() + ACK_TIMEOUT_S
        for info in infos:
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), 0.01))
            except (RuntimeError, ValueError) as exc:
                raise Unreachable(f"publish failed: {exc}") from exc
            if not info.is_published():
                raise Unreachable(f"no acknowledgement within {ACK_TIMEOUT_S:g} s")

    def _hang_up(self, client: paho.Client) -> None:
        self._client = None
        self.connected.clear()
        client.loop_stop()
        self._update_gauges()
