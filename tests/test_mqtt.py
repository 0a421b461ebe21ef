"""MQTT store and forward against a real broker (Debian's mosquitto on loopback)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import pytest

from benchmarks.processes import free_port
from edge.config import MqttConfig, from_dict
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.service.mqtt import MqttPublisher
from edge.service.side_outputs import SideOutputs
from edge.service.spool import Message, Spool
from tests.mqtt_broker import PASSWORD, USER, Broker, Subscriber
from tests.test_spool import garbage, write_locked

ROOT = Path(__file__).resolve().parent.parent


def numbered(count: int, start: int = 0) -> list[Message]:
    return [
        Message("cam0/events", json.dumps({"n": n}).encode()) for n in range(start, start + count)
    ]


def numbers(payloads: list[bytes]) -> list[int]:
    return [json.loads(p)["n"] for p in payloads]


def in_order_without_loss(received: list[int], expected: Iterable[int]) -> bool:
    """Every number arrived, in order of first arrival; repeats (QoS 1) are allowed."""
    return list(dict.fromkeys(received)) == list(expected)


def config_for(broker: Broker, tmp_path: Path, **values: object) -> MqttConfig:
    base = MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, device="dev1",
                      spool_dir=str(tmp_path / "spool"), reconnect_initial_s=0.1,
                      reconnect_max_s=0.5)  # fmt: skip
    return dataclasses.replace(base, **values)  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_spool_keeps_order_bounds_size_and_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=100)
    spool.put([Message("t", b"x" * 30, seq=0) for _ in range(3)])
    spool.put([Message("t", b"y" * 30)])  # 120 bytes > 100: the oldest goes
    assert (spool.count, spool.bytes, spool.dropped) == (3, 90, 1)
    head = spool.head(2)
    assert [m.payload[:1] for m in head] == [b"x", b"x"]
    spool.remove(head[:1])
    spool.close()
    again = Spool(tmp_path / "s.sqlite", max_bytes=100)
    assert (again.count, again.bytes) == (2, 60)
    assert [m.payload[:1] for m in again.head(10)] == [b"x", b"y"]


def test_messages_arrive_in_order_with_availability(broker: Broker, tmp_path: Path) -> None:
    subscriber = Subscriber(broker)
    publisher = MqttPublisher(config_for(broker, tmp_path), Metrics())
    publisher.start()
    publisher.send(numbered(250))
    assert numbers(subscriber.wait_for("dev1/cam0/events", 250)) == list(range(250))
    publisher.close()
    assert subscriber.wait_for("dev1/available", 2) == [b"online", b"offline"]
    assert Spool(tmp_path / "spool" / "mqtt-dev1.sqlite", 1000).count == 0
    subscriber.close()


def test_broker_away_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    metrics = Metrics()
    publisher = MqttPublisher(config_for(broker, tmp_path), metrics)
    publisher.start()
    subscriber = Subscriber(broker)
    publisher.send(numbered(50))
    subscriber.wait_for("events", 50)
    subscriber.close()
    assert publisher.spool.count == 0
    broker.stop()
    started = time.perf_counter()
    for batch in range(10):  # sent while the broker is away: only the spool sees them
        publisher.send(numbered(20, 50 + batch * 20))
    assert time.perf_counter() - started < 1.0  # never waits for the network
    assert publisher.spool.count == 200
    broker.start()
    subscriber = Subscriber(broker)
    received = numbers(subscriber.wait_for("events", 200))
    assert in_order_without_loss(received, range(50, 250))
    publisher.close()
    subscriber.close()
    assert metrics.snapshot().counters["mqtt_connects"] >= 2


def test_restart_while_offline_sends_what_the_spool_holds(broker: Broker, tmp_path: Path) -> None:
    config = config_for(broker, tmp_path)
    broker.stop()
    first = MqttPublisher(config, Metrics())
    first.start()
    first.send(numbered(30))
    first.close()  # the broker never came back during this run
    broker.start()
    subscriber = Subscriber(broker)
    second = MqttPublisher(config, Metrics())
    second.start()
    assert numbers(subscriber.wait_for("events", 30)) == list(range(30))
    second.close()
    subscriber.close()


def retry_delays(records: list[logging.LogRecord], thread: int | None) -> list[float]:
    """One publisher's waits before each new attempt, from its log, in order (its thread's
    records only: a publisher another test left running logs to the same logger)."""
    return [
        r.args[0]  # type: ignore[index]
        for r in records
        if r.msg == "mqtt: retrying in %.1f s" and r.thread == thread
    ]


def test_reconnect_waits_double_and_start_again_after_a_connection(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Waits double up to reconnect_max_s while the broker is away, and a working connection
    ends the run: the next outage starts again from reconnect_initial_s."""
    broker.stop()
    config = config_for(broker, tmp_path, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    publisher = MqttPublisher(config, Metrics())
    with caplog.at_level(logging.DEBUG, logger="edge.service.mqtt"):
        publisher.start()
        thread = publisher._thread.ident
        wait_until(lambda: len(retry_delays(caplog.records, thread)) >= 4)
        broker.start()
        wait_until(publisher.connected.is_set)
        before = len(retry_delays(caplog.records, thread))
        broker.stop()
        wait_until(lambda: len(retry_delays(caplog.records, thread)) >= before + 2)
        publisher.close()
    delays = retry_delays(caplog.records, thread)
    assert delays[:4] == [0.05, 0.1, 0.2, 0.2]
    assert delays[before : before + 2] == [0.05, 0.1]


def test_full_spool_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    config = MqttConfig(enabled=True, host="127.0.0.1", port=1, device="d",
                        spool_dir=str(tmp_path), spool_max_mb=0.01)  # fmt: skip
    metrics = Metrics()
    publisher = MqttPublisher(config, metrics)  # not started: the broker is unreachable anyway
    publisher.send([Message("e", b"x" * 1000) for _ in range(25)])
    assert publisher.spool.count == 10
    assert metrics.snapshot().gauges["mqtt_spool_dropped"] == 15
    publisher.close()


def test_sigkill_leaves_the_last_will(broker: Broker, tmp_path: Path) -> None:
    subscriber = Subscriber(broker, "edge/dev1/available")
    script = (
        "import sys, time\n"
        "from edge.config import MqttConfig\nfrom edge.metrics import Metrics\n"
        "from edge.service.mqtt import MqttPublisher\n"
        f"p = MqttPublisher(MqttConfig(enabled=True, host='127.0.0.1', port={broker.port}, "
        f"device='dev1', spool_dir={str(tmp_path)!r}), Metrics())\n"
        "p.start(); p.connected.wait(10); print('up', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"up"
    subscriber.wait_for("available", 1)
    child.kill()
    child.wait()
    assert subscriber.wait_for("available", 2)[-1] == b"offline"
    subscriber.close()


def test_tls_with_password_connects(tls_broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    config = config_for(tls_broker, tmp_path, tls=True, ca_file=str(tls_broker.tls["ca"]),
                        username=USER, password_file=str(tmp_path / "password"))  # fmt: skip
    subscriber = Subscriber(tls_broker)
    publisher = MqttPublisher(config, Metrics())
    publisher.start()
    publisher.send(numbered(5))
    assert numbers(subscriber.wait_for("events", 5)) == list(range(5))
    publisher.close()
    subscriber.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"password_env": "EDGE_TEST_MQTT_PASSWORD"}, "refused the login"),
        ({}, "TLS verification of 127.0.0.1"),  # the system's CAs do not know the test CA
        ({"host": "no-such-host.invalid"}, "unknown host 'no-such-host.invalid'"),
    ],
)
def test_bad_credentials_give_one_line_and_keep_trying(
    tls_broker: Broker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, object],
    message: str,
) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "wrong")
    ca = {"ca_file": str(tls_broker.tls["ca"])} if values else {}
    config = config_for(tls_broker, tmp_path, tls=True, username=USER, **ca, **values)
    metrics = Metrics()
    publisher = MqttPublisher(config, metrics)
    with caplog.at_level(logging.WARNING, logger="edge.service.mqtt"):
        publisher.start()
        wait_until(lambda: metrics.snapshot().counters.get("mqtt_connect_failures", 0) >= 2)
        publisher.send(numbered(3))  # kept for later
        publisher.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any(message in line for line in lines), lines
    assert all("\n" not in line for line in lines)
    assert publisher.spool.dropped == 0


def test_load_of_50_events_per_frame_for_1000_frames(broker: Broker, tmp_path: Path) -> None:
    subscriber = Subscriber(broker, "edge/dev1/cam0/events")
    publisher = MqttPublisher(config_for(broker, tmp_path, spool_max_mb=200.0), Metrics())
    publisher.start()
    started = time.perf_counter()
    for frame in range(1000):
        publisher.send(numbered(50, frame * 50))
    sending = time.perf_counter() - started
    received = numbers(subscriber.wait_for("events", 50_000, timeout_s=300))
    assert in_order_without_loss(received, range(50_000))
    deadline = time.monotonic() + 30
    while publisher.spool.count:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    publisher.close()
    subscriber.close()
    assert sending < 60, f"queueing 50,000 events took {sending:.1f} s"


def run_edge(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge", "run", *args], cwd=ROOT, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def mqtt_args(broker: Broker, tmp_path: Path, frames: int, model_overrides: list[str]) -> list[str]:
    from export.data import data_file

    return [
        "--source", str(data_file("vtest.avi")), f"source.max_frames={frames}",
        "colorizer.mode='off'", f"output.dir='{tmp_path / 'out'}'", "output.video=''",
        "mqtt.enabled=true", "mqtt.host='127.0.0.1'", f"mqtt.port={broker.port}",
        "mqtt.device='dev1'", f"mqtt.spool_dir='{tmp_path / 'spool'}'",
        "mqtt.reconnect_initial_s=0.2", "mqtt.reconnect_max_s=1", *model_overrides,
    ]  # fmt: skip


def file_events(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_run_publishes_the_events_file_with_snapshots(
    broker: Broker, tmp_path: Path, model_overrides: list[str]
) -> None:
    subscriber = Subscriber(broker)
    edge = run_edge(mqtt_args(broker, tmp_path, 60, model_overrides))
    assert edge.wait(timeout=300) == 0, edge.stderr.read() if edge.stderr else ""
    written = file_events(tmp_path)
    assert {e["event"] for e in written} >= {"started", "ended"}
    subscriber.wait_for("available", 2)
    published = [json.loads(p) for p in subscriber.on("dev1/cam0/events")]
    from_file = [p for p in published if p["event"] != "seen"]  # periodic updates come beside
    assert [p["id"] for p in from_file] == [e["id"] for e in written]
    assert [p["type"] for p in from_file] == [
        {"started": "new", "lost": "update", "ended": "end"}[str(e["event"])] for e in written
    ]
    assert all(p["end_time"] is not None for p in from_file if p["type"] == "end")
    new = [p for p in from_file if p["type"] == "new"]
    # The snapshot is a state (the newest track's, one a second at most): one per new track at most
    assert 1 <= len(subscriber.on("dev1/cam0/snapshot")) <= len(new)
    assert all(p.startswith(b"\xff\xd8") for p in subscriber.on("snapshot"))  # JPEG
    assert subscriber.on("dev1/available") == [b"online", b"offline"]
    subscriber.close()


def test_broker_away_20_s_mid_run_loses_no_event(
    tmp_path: Path, model_overrides: list[str]
) -> None:
    broker = Broker(tmp_path, free_port(), persistent=True)  # keeps the subscriber's session
    broker.start()
    subscriber = Subscriber(broker, "edge/dev1/cam0/events", durable=True)
    args = mqtt_args(broker, tmp_path, 0, model_overrides)  # the video outlasts the outage
    args += ["mqtt.reconnect_initial_s=1", "mqtt.reconnect_max_s=2"]
    edge = run_edge(args)
    try:
        subscriber.wait_for("events", 1, timeout_s=120)  # the run publishes...
        broker.stop()  # ...then the broker goes away for 20 s
        stopped = time.time()
        time.sleep(20)
        assert edge.poll() is None, "the run ended while the broker was away: not mid-run"
        restarted = time.time()
        broker.start()
        time.sleep(2)  # the run goes on with the broker back
        edge.terminate()  # a clean stop: the queues drain, the spool is published
        assert edge.wait(timeout=120) == 0, edge.stderr.read() if edge.stderr else ""
        written = file_events(tmp_path)
        away = [e for e in written if stopped < utc_seconds(e) < restarted]
        assert away, "no event happened while the broker was away"
        deadline = time.monotonic() + 30
        while missing := {e["id"] for e in written} - {p["id"] for p in event_messages(subscriber)}:
            assert time.monotonic() < deadline, f"{len(missing)} events never arrived"
            time.sleep(0.2)
    finally:
        edge.kill()
        subscriber.close()
        broker.stop()
    published = [p for p in event_messages(subscriber) if p["event"] != "seen"]
    assert list(dict.fromkeys(p["id"] for p in published)) == [e["id"] for e in written]
    # A repeat (QoS 1 after a reconnect) is the same message, under the same id.
    first: dict[object, dict[str, object]] = {}
    for payload in published:
        assert first.setdefault(payload["id"], payload) == payload


def utc_seconds(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["utc"])).timestamp()


def event_messages(subscriber: Subscriber) -> list[dict[str, object]]:
    return [json.loads(p) for p in subscriber.on("cam0/events")]


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"device": "cam+1"}, "mqtt.device"),
        ({"device": "lab/cam"}, "mqtt.device"),
        ({"device": "cam#"}, "mqtt.device"),
        ({"device": "cam\x00"}, "mqtt.device"),
        ({"topic_prefix": ""}, "mqtt.topic_prefix"),
        ({"topic_prefix": "edge/#"}, "mqtt.topic_prefix"),
        ({"topic_prefix": "+/edge"}, "mqtt.topic_prefix"),
        ({"host": ""}, "mqtt.host"),
        ({"host": " "}, "mqtt.host"),
    ],
)
def test_config_refuses_what_cannot_be_a_topic_or_a_host(values: dict[str, str], key: str) -> None:
    with pytest.raises(EdgeError, match=rf"^config key '{re.escape(key)}': expected [^\n]+, got"):
        from_dict({"mqtt": {"enabled": True, **values}})
    good = {"device": "gate-1.lab", "topic_prefix": "home/edge", "host": "broker.lan"}
    assert from_dict({"mqtt": good}).mqtt.topic_prefix == "home/edge"


def test_a_host_name_that_cannot_be_a_topic_level_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "cam+1.lab")
    config = MqttConfig(enabled=True, spool_dir=str(tmp_path))
    with pytest.raises(
        EdgeError, match=r"^config key 'mqtt.device': the host name 'cam\+1'.*set mqtt.device$"
    ):
        MqttPublisher(config, Metrics())
    assert MqttPublisher(dataclasses.replace(config, device="cam1"), Metrics()).device == "cam1"


def test_a_damaged_spool_is_moved_aside_and_counted(tmp_path: Path) -> None:
    config = MqttConfig(enabled=True, device="dev1", spool_dir=str(tmp_path))
    garbage(tmp_path / "mqtt-dev1.sqlite")  # a power cut's work
    metrics = Metrics()
    publisher = MqttPublisher(config, metrics)  # not started: the spool is what is tested
    assert metrics.snapshot().counters["mqtt_spool_quarantined"] == 1
    publisher.send(numbered(2))
    assert publisher.spool.count == 2
    publisher.close()
    assert len(list(tmp_path.glob("mqtt-dev1.sqlite.corrupt-*"))) == 2  # the file and its WAL


def test_a_spool_that_fails_drops_counts_and_recovers(broker: Broker, tmp_path: Path) -> None:
    metrics = Metrics()
    side_outputs = SideOutputs(metrics)
    subscriber = Subscriber(broker, "edge/dev1/cam0/events")
    publisher = MqttPublisher(config_for(broker, tmp_path), metrics, side_outputs)
    publisher.start()
    publisher.send(numbered(5))
    subscriber.wait_for("events", 5)
    with write_locked(tmp_path / "spool" / "mqtt-dev1.sqlite"):  # the disk refuses writes
        publisher.send(numbered(3, 5))  # a camera's output stage: nothing raised
        assert "cannot store messages" in side_outputs.degraded()["spool"]
    counters = metrics.snapshot().counters
    assert (counters["mqtt_spool_errors"], counters["mqtt_spool_lost"]) == (1, 3)
    publisher.send(numbered(5, 8))  # the disk is back: stored and sent, after the first five
    assert "spool" not in side_outputs.degraded()
    received = numbers(subscriber.wait_for("events", 10))
    assert in_order_without_loss(received, [*range(5), *range(8, 13)])
    publisher.close()
    subscriber.close()


@pytest.mark.parametrize(
    ("key", "content", "reason"),
    [
        ("ca_file", "not a certificate\n", r"mqtt\.ca_file \S+ is not a PEM certificate"),
        ("ca_file", None, r"cannot read mqtt\.ca_file \S+: No such file or directory"),
        ("cert_file", "not a certificate\n", r"mqtt\.cert_file \S+ is not a PEM certificate"),
        ("key_file", "not a key\n", r"mqtt\.key_file \S+ is not the PEM private key of"),
    ],
    ids=["ca-not-pem", "ca-missing", "cert-not-pem", "key-not-pem"],
)
def test_a_bad_tls_file_degrades_mqtt_until_it_is_fixed(
    tls_broker: Broker, tmp_path: Path, key: str, content: str | None, reason: str
) -> None:
    good = {"ca_file": tls_broker.tls["ca"], "cert_file": tls_broker.tls["server"],
            "key_file": tls_broker.tls["server_key"]}  # fmt: skip
    broken = tmp_path / f"broken-{key}.pem"
    if content is not None:
        broken.write_text(content)
    files = {name: str(broken if name == key else path) for name, path in good.items()}
    (tmp_path / "password").write_text(PASSWORD)
    config = config_for(tls_broker, tmp_path, tls=True, username=USER,
                        password_file=str(tmp_path / "password"), **files)  # fmt: skip
    metrics = Metrics()
    side_outputs = SideOutputs(metrics)
    subscriber = Subscriber(tls_broker, "edge/dev1/cam0/events")
    publisher = MqttPublisher(config, metrics, side_outputs)  # a camera would start now
    publisher.start()
    publisher.send(numbered(3))
    wait_until(lambda: metrics.snapshot().counters.get("mqtt_connect_failures", 0) >= 3)
    assert re.search(reason, side_outputs.degraded()["mqtt"]), side_outputs.degraded()
    broken.write_bytes(good[key].read_bytes())  # the user fixes the file; no restart
    publisher.send(numbered(3, 3))
    assert numbers(subscriber.wait_for("events", 6)) == list(range(6))
    wait_until(lambda: "mqtt" not in side_outputs.degraded())
    publisher.close()
    subscriber.close()


def test_an_unexpected_error_is_reported_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An empty host (refused at load, but not here) makes paho raise ValueError, not OSError.
    config = MqttConfig(enabled=True, host="", device="dev1", spool_dir=str(tmp_path),
                        reconnect_initial_s=0.01, reconnect_max_s=0.02)  # fmt: skip
    metrics = Metrics()
    side_outputs = SideOutputs(metrics)
    publisher = MqttPublisher(config, metrics, side_outputs)
    with caplog.at_level(logging.WARNING):
        publisher.start()
        wait_until(lambda: metrics.snapshot().counters.get("mqtt_connect_failures", 0) >= 5)
        publisher.send(numbered(2))
        publisher.close()
    assert side_outputs.degraded()["mqtt"] == "publisher error ValueError: Invalid host."
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in tracebacks] == [
        "mqtt: " + side_outputs.degraded()["mqtt"] + "; retrying"
    ]
    assert publisher.spool.count == 2  # kept for a run that can connect


def test_the_device_reports_a_publisher_fault_where_healthz_reads(tmp_path: Path) -> None:
    from edge.config import Config
    from edge.runtime import DeviceOutputs

    (tmp_path / "ca.pem").write_text("not a certificate\n")
    mqtt = MqttConfig(enabled=True, host="127.0.0.1", port=1, device="dev1", tls=True,
                      ca_file=str(tmp_path / "ca.pem"), spool_dir=str(tmp_path / "spool"),
                      reconnect_initial_s=0.05, reconnect_max_s=0.1)  # fmt: skip
    device = DeviceOutputs(Config(mqtt=mqtt))
    try:
        assert device.publisher is not None  # MQTT stays on, retrying: the file may be fixed
        wait_until(lambda: "mqtt.ca_file" in device.side_outputs.degraded().get("mqtt", ""))
    finally:
        device.close()
