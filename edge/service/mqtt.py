"""MQTT publishing with store and forward (paho-mqtt 2.x, MQTT 3.1.1 or 5).

Callers never wait for the network: `send` appends to the on-disk spool (`edge.service.spool`)
and wakes the publisher thread, which connects (with backoff), announces
`PREFIX/DEVICE/available` = `online` (retained; `offline` is the last will), then publishes the
spool in order, a window at a time, deleting messages only once the broker has acknowledged them.
A broken connection is replaced by a new client, and the window is sent again: a subscriber may
see a message twice (QoS 1 allows it; payloads carry ids), never out of order, and nothing is lost
unless the spool's size bound drops its oldest messages (counted).
`publish_now` (stats) is sent only while connected and never spooled.

`retain` keeps a topic's current state (Home Assistant's discovery configs, occupancy, counts,
the latest snapshot): published retained as soon as connected, and again after every (re)connect,
before the spool, so a broker restarted without persistence gets it back. It never goes through
the spool: only the latest value of a state matters, a backlog of old values would only delay
the events behind it, and a spool full of pictures would drop events. What changes while the
broker is away is sent once, at its latest value, when it is back.

Nothing here stops a camera or dies silently. A spool that cannot store a frame's messages (full
or failing disk) drops them, counted (`mqtt_spool_errors`, `mqtt_spool_lost`), and marks the side
output `spool` degraded until a later `send` stores again. Whatever stops the thread's connection
or delivery (broker away, refused login, a TLS file that is missing or not PEM, a spool it cannot
read, an unexpected error) marks `mqtt` degraded with one line naming the cause and what to check
(`SideOutputs` logs each distinct cause once), and the thread retries with backoff, re-reading the
TLS files and password each time, so fixing a file is enough.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import TOPIC_LEVEL, MqttConfig
from edge.errors import EdgeError
from edge.faults import Backoff, describe
from edge.metrics import Metrics
from edge.service.side_outputs import SideOutputs
from edge.service.spool import Message, Spool, SpoolError

log = logging.getLogger(__name__)
WINDOW = 100  # messages in flight before waiting for their acknowledgements
ACK_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 5.0  # at a clean stop, time given to send what is spooled


class Unreachable(Exception):
    """The broker cannot be used now; the message says why, in one line."""


def device_name(config: MqttConfig) -> str:
    """The device's name in topics: the config's, else the host name.

    Raises:
        EdgeError: the host name cannot be a topic level (the config's name was checked at load).
    """
    name = config.device or socket.gethostname().split(".")[0]
    if not re.fullmatch(TOPIC_LEVEL, name):
        raise EdgeError(
            f"config key 'mqtt.device': the host name {name!r} cannot be an MQTT topic level "
            "(empty, or has '/', '+', '#' or NUL): set mqtt.device"
        )
    return name


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


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The TLS settings of paho's `tls_set`, each file loaded apart so that an error names the
    key to fix.

    Raises:
        Unreachable: a file cannot be read or is not what its key says, in one line.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the broker and its host name
    if config.ca_file:
        with _naming("ca_file", config.ca_file, "a PEM certificate"):
            context.load_verify_locations(config.ca_file)
    else:
        context.load_default_certs()
    if config.cert_file:
        with _naming("cert_file", config.cert_file, "a PEM certificate"):  # alone, to tell
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(config.cert_file)
        key = "key_file" if config.key_file else "cert_file"  # the key may follow the certificate
        with _naming(key, getattr(config, key), "the PEM private key of mqtt.cert_file"):
            context.load_cert_chain(config.cert_file, config.key_file or None)
    return context


@contextlib.contextmanager
def _naming(key: str, path: str, what: str) -> Iterator[None]:
    """Turn a file's OSError (SSLError included) into Unreachable naming its config key."""
    try:
        yield
    except ssl.SSLError as exc:
        detail = f" ({exc.reason})" if exc.reason else ""
        raise Unreachable(f"mqtt.{key} {path} is not {what}{detail}: fix or replace it") from exc
    except OSError as exc:
        raise Unreachable(f"cannot read mqtt.{key} {path}: {exc.strerror}") from exc


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

    def __init__(
        self, config: MqttConfig, metrics: Metrics, side_outputs: SideOutputs | None = None
    ) -> None:
        """Open the spool (what an earlier run left is sent first); nothing connects yet.

        Args:
            config: the `[mqtt]` section.
            metrics: the device's metrics (connection, spool and delivery).
            side_outputs: where `mqtt` and `spool` say they are degraded (default: a new record
                over `metrics`).

        Raises:
            EdgeError: the spool cannot be opened, or the host name cannot name the device.
        """
        self.config, self.metrics = config, metrics
        self.side_outputs = side_outputs or SideOutputs(metrics)
        self.device = device_name(config)
        self.base = f"{config.topic_prefix}/{self.device}"
        path = Path(config.spool_dir) / f"mqtt-{self.device}.sqlite"
        self.spool = Spool(path, int(config.spool_max_mb * 1e6))
        if self.spool.quarantined is not None:
            metrics.increment("mqtt_spool_quarantined")
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._client: paho.Client | None = None
        self._states: dict[str, bytes] = {}  # `retain`'s topics, in the order first set
        self._unsent: set[str] = set()  # those not yet published on this connection
        self._states_lock = threading.Lock()
        # Only working delivery (`_working`) ends a run of failures, however long attempts take.
        self._backoff = Backoff(
            config.reconnect_initial_s, config.reconnect_max_s, reset_after_s=math.inf
        )
        self._update_gauges()

    def start(self) -> None:
        """Start connecting and publishing in the background."""
        self._thread.start()

    def send(self, messages: list[Message]) -> None:
        """Queue messages (topics relative to `PREFIX/DEVICE/`) for delivery; never blocks on
        the network, never raises for the spool: what it cannot store is dropped and counted."""
        try:
            self.spool.put(
                [Message(f"{self.base}/{m.topic}", m.payload, m.retain) for m in messages]
            )
        except SpoolError as exc:
            self.metrics.increment("mqtt_spool_errors")
            self.metrics.increment("mqtt_spool_lost", len(messages))
            self.side_outputs.degrade("spool", str(exc))
            return
        if messages:
            self.side_outputs.recover("spool")
        self._update_gauges()
        self._wake.set()

    def publish_now(self, topic: str, payload: bytes) -> None:
        """Publish (QoS 0, not spooled) if connected; otherwise drop it: for periodic stats."""
        client = self._client
        if client is not None and self.connected.is_set():
            client.publish(f"{self.base}/{topic}", payload, qos=0)

    def retain(self, topic: str, payload: bytes) -> None:
        """Set a state: `payload`, retained on the full `topic`, published when connected and
        again at every (re)connect; never spooled, never blocks (see the module's notes)."""
        with self._states_lock:
            self._states[topic] = payload
            self._unsent.add(topic)
        self._wake.set()

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
        """Connect and publish until a stop; every failure degrades `mqtt` and is retried."""
        last_try = False  # a stop during a backoff wait still gets one attempt to drain the spool
        while not last_try:
            last_try = self._stop.is_set()
            try:
                client = self._connect()
            except Exception as exc:  # the thread outlives any cause; the cause is reported
                self.metrics.increment("mqtt_connect_failures")
                self._fault(exc)
            else:
                try:
                    self._pump(client)  # returns only at a stop, after draining and saying offline
                    return
                except Exception as exc:
                    self._fault(exc)
                finally:
                    self._hang_up(client)
            if last_try:
                log.warning("mqtt: %d messages stay spooled for the next start", self.spool.count)
                return
            delay = self._backoff.failed()
            log.debug("mqtt: retrying in %.1f s", delay)
            self._stop.wait(delay)

    def _fault(self, exc: Exception) -> None:
        """Mark `mqtt` degraded by `exc`: one line, logged once per distinct cause."""
        if isinstance(exc, (Unreachable, SpoolError)):
            reason = str(exc)
        else:  # a bug or a case not foreseen: its traceback, once, for the report
            reason = f"publisher error {describe(exc)}"
            if self.side_outputs.degraded().get("mqtt") != reason:
                log.error("mqtt: %s; retrying", reason, exc_info=exc)
        self.side_outputs.degrade("mqtt", reason)

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
        if config.tls:  # built at each attempt: a file fixed meanwhile is read again
            client.tls_set_context(tls_context(config))
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
        try:
            if not answered.wait(CONNECT_TIMEOUT_S) or refusal:
                if refusal:
                    raise Unreachable(
                        f"broker {config.host}:{config.port} refused the login: {refusal[0]} "
                        "(check mqtt.username and the password)"
                    )
                raise Unreachable(f"no CONNACK from {config.host}:{config.port}")
            self._client = client
            self.connected.set()
            self._deliver(client, [Message(f"{self.base}/available", b"online", retain=True)])
            with self._states_lock:
                self._unsent = set(self._states)  # a new connection, maybe a new broker
        except BaseException:
            self._hang_up(client)
            raise
        self.metrics.increment("mqtt_connects")
        log.info("mqtt: connected to %s:%d as %s", config.host, config.port, self.base)
        self._update_gauges()
        return client

    def _pump(self, client: paho.Client) -> None:
        """Publish the spool in order until a stop (after draining) or a lost connection."""
        stop_deadline: float | None = None
        while True:
            if self._stop.is_set() and stop_deadline is None:
                stop_deadline = time.monotonic() + DRAIN_TIMEOUT_S
            self._deliver_states(client)
            batch = self.spool.head(WINDOW)
            if batch:
                self._deliver(client, batch)
                self.spool.remove(batch)
                self.metrics.increment("mqtt_published", len(batch))
                self._update_gauges()
            self._working()
            if stop_deadline is not None and (not batch or time.monotonic() > stop_deadline):
                self._deliver(client, [Message(f"{self.base}/available", b"offline", retain=True)])
                client.disconnect()
                return
            if not batch:
                self._wake.wait(1.0)
                self._wake.clear()
            if not self.connected.is_set():
                raise Unreachable("connection to the broker lost")

    def _deliver_states(self, client: paho.Client) -> None:
        """Publish the states set since the last call (all of them after a connect)."""
        with self._states_lock:
            due = [Message(t, p, retain=True) for t, p in self._states.items() if t in self._unsent]
            self._unsent.clear()
        if due:  # a failure reconnects, which marks every state unsent again
            self._deliver(client, due)
            self.metrics.increment("mqtt_states_published", len(due))

    def _working(self) -> None:
        """Delivery works (connected, the spool read and updated): end a degradation, and
        start the next backoff from the beginning."""
        self.side_outputs.recover("mqtt")
        self._backoff.succeeded()

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
