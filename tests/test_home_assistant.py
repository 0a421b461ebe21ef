"""Home Assistant MQTT discovery and the state topics it points at, against a real broker
(Debian's mosquitto on loopback): each config checked against Home Assistant's documented
schema, its topics checked to receive what it says, and the states checked against the events
file of a real run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.config import MqttConfig, from_dict
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.outputs.mqtt import SNAPSHOT_MAX_SIDE, MqttSink
from edge.outputs.records import EventRecords
from edge.outputs.run import start_run
from edge.service.home_assistant import discovery, ident
from edge.service.mqtt import MqttPublisher
from edge.types import Frame, Packet, Track, TrackEvent, TrackUpdate
from tests.mqtt_broker import Broker, Subscriber
from tests.test_mqtt import ROOT, config_for, run_edge, wait_until

# Home Assistant's documented options per platform (home-assistant.io, source/_integrations/
# {binary_sensor,sensor,camera}.mqtt.markdown and mqtt.markdown's discovery section), plus
# `default_entity_id`, which replaced `object_id` (deprecated in 2025.10, removed in 2026.4) and
# so is left out here. Discovery ignores unknown keys: a misspelt one would fail silently.
ENTITY_OPTIONS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "default_entity_id", "device", "enabled_by_default", "encoding", "entity_category",
    "entity_picture", "icon", "json_attributes_template", "json_attributes_topic", "name",
    "origin", "payload_available", "payload_not_available", "qos", "unique_id",
}  # fmt: skip
OPTIONS = {
    "binary_sensor": ENTITY_OPTIONS | {
        "device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on",
        "state_topic", "value_template",
    },
    "sensor": ENTITY_OPTIONS | {
        "device_class", "expire_after", "force_update", "last_reset_value_template", "options",
        "state_class", "state_topic", "suggested_display_precision", "unit_of_measurement",
        "value_template",
    },
    "camera": ENTITY_OPTIONS | {"image_encoding", "topic"},
}  # fmt: skip
REQUIRED = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}, "camera": {"topic"}}
DEVICE_OPTIONS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_OPTIONS = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
CONFIG_TOPIC = re.compile(r"homeassistant/(binary_sensor|sensor|camera)/([A-Za-z0-9_-]+)/config")


def check_config(topic: str, config: dict[str, Any]) -> str:
    """Check one discovery message against the schema; return its component."""
    match = CONFIG_TOPIC.fullmatch(topic)
    assert match, topic
    component, object_id = match.groups()
    assert object_id == config["unique_id"]  # Home Assistant's advice for entities with one
    assert set(config) <= OPTIONS[component], set(config) - OPTIONS[component]
    assert REQUIRED[component] | {"unique_id", "device", "availability_topic"} <= set(config)
    assert re.fullmatch(rf"{component}\.[a-z0-9_]+", config["default_entity_id"])
    device = config["device"]
    assert set(device) <= DEVICE_OPTIONS
    assert {"identifiers", "name", "model", "sw_version"} <= set(device)
    assert isinstance(device["identifiers"], list)
    assert device["identifiers"]
    assert set(config["origin"]) <= ORIGIN_OPTIONS
    assert config["origin"]["name"]
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert config["qos"] in (0, 1, 2)
    if component == "binary_sensor":
        assert (config["device_class"], config["payload_on"], config["payload_off"]) == (
            "occupancy", "ON", "OFF"
        )  # fmt: skip
    if component == "sensor":
        assert config["state_class"] in STATE_CLASSES
    return component


def configs_of(subscriber: Subscriber) -> dict[str, dict[str, Any]]:
    """The latest discovery config per topic that the subscriber received."""
    with subscriber._lock:
        messages = list(subscriber.messages)
    return {t: json.loads(p) for t, p, _ in messages if t.startswith("homeassistant/")}


def retained(broker: Broker, count: int) -> dict[str, bytes]:
    """What the broker holds retained (a new subscriber's first messages), by topic."""
    later = Subscriber(broker)
    wait_until(lambda: len(later.messages) >= count)
    time.sleep(0.3)  # anything beyond `count`
    later.close()
    assert all(flag for _, _, flag in later.messages)
    return {topic: payload for topic, payload, _ in later.messages}


CAMERAS = """
[[cameras]]
name = "walkers"
uri = "{video}"
max_frames = 60

[[cameras]]
name = "ball"
uri = "test://"
width = 320
height = 240
fps = 10
max_frames = 30
"""


def test_a_run_announces_every_camera_and_its_states_follow_the_tracks(
    broker: Broker, tmp_path: Path, model_overrides: list[str]
) -> None:
    from export.data import data_file

    subscriber = Subscriber(broker)
    config = tmp_path / "cameras.toml"
    config.write_text(CAMERAS.format(video=data_file("vtest.avi")))
    edge = run_edge([
        "--config", str(config), "colorizer.mode='off'", f"output.dir='{tmp_path / 'out'}'",
        "output.video=''", "mqtt.enabled=true", "mqtt.host='127.0.0.1'",
        f"mqtt.port={broker.port}", "mqtt.device='dev1'", f"mqtt.spool_dir='{tmp_path}'",
        *model_overrides,
    ])  # fmt: skip
    assert edge.wait(timeout=300) == 0, edge.stderr.read() if edge.stderr else ""
    subscriber.wait_for("dev1/available", 2)
    subscriber.close()
    assert subscriber.on("dev1/available") == [b"online", b"offline"]

    configs = configs_of(subscriber)
    components = sorted(check_config(topic, c) for topic, c in configs.items())
    assert components == ["binary_sensor", "binary_sensor", "camera", "camera", "sensor", "sensor"]
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    assert len({c["default_entity_id"] for c in configs.values()}) == len(configs)
    assert len({json.dumps(c["device"]) for c in configs.values()}) == 1  # one device entry
    assert {c["availability_topic"] for c in configs.values()} == {"edge/dev1/available"}
    # Stable: the same names give the same configs in another process.
    mqtt = MqttConfig(device="dev1", spool_dir=str(tmp_path / "elsewhere"))
    publisher = MqttPublisher(mqtt, Metrics())
    for camera in ("walkers", "ball"):
        expected = {
            m.topic: json.loads(m.payload) for m in discovery(publisher, camera, ["Normal"])
        }
        assert {t: configs[t] for t in expected} == expected
    publisher.close()

    for camera in ("walkers", "ball"):
        mine = {t: c for t, c in configs.items() if c["name"].startswith(camera)}
        events = [json.loads(line) for line in events_file(tmp_path, camera)]
        (occupancy,) = (c for c in mine.values() if "device_class" in c)
        (count,) = (c for c in mine.values() if "state_class" in c)
        (picture,) = (c for c in mine.values() if "topic" in c)
        counts = [int(p) for p in subscriber.on(count["state_topic"])]
        live = live_counts(events)
        assert (counts[0], counts[-1]) == (0, 0), counts  # nothing live before, nor after
        assert is_subsequence(counts, live), (counts, live)  # a state's latest value goes out
        flags = changes(subscriber.on(occupancy["state_topic"]))
        assert flags == [b"OFF", b"ON"] * (len(flags) // 2) + [b"OFF"], flags
        assert (b"ON" in flags) == (max(counts) > 0)
        snapshots = subscriber.on(picture["topic"])
        assert bool(snapshots) == any(e["event"] == "started" for e in events)
        for jpeg in snapshots:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert max(image.shape[:2]) <= SNAPSHOT_MAX_SIDE
    walkers = [json.loads(line) for line in events_file(tmp_path, "walkers")]
    assert max(live_counts(walkers)) >= 2  # the sample video's walkers were tracked...
    assert max(int(p) for p in subscriber.on("walkers/count")) >= 1  # ...and counted

    # What Home Assistant finds when it subscribes later: every config, state and the last
    # snapshot, retained; the device offline.
    held = retained(broker, len(configs))
    assert {t: json.loads(p) for t, p in held.items() if t in configs} == configs
    assert held["edge/dev1/available"] == b"offline"
    assert held["edge/dev1/walkers/count"] == b"0"
    assert held["edge/dev1/walkers/snapshot"].startswith(b"\xff\xd8")


def events_file(tmp_path: Path, camera: str) -> list[str]:
    return (tmp_path / "out" / camera / "events.jsonl").read_text().splitlines()


def live_counts(events: list[dict[str, Any]]) -> list[int]:
    """How many tracks are live after each event, from nothing live."""
    counts, live = [0], 0
    for event in events:
        live += {"started": 1, "ended": -1}.get(event["event"], 0)
        counts.append(live)
    return counts


def is_subsequence(part: list[int], whole: list[int]) -> bool:
    remaining = iter(whole)
    return all(any(value == other for other in remaining) for value in part)


def changes(values: list[bytes]) -> list[bytes]:
    """The values without repeats in a row (a state set and set back before it was sent
    goes out again at its latest value)."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def test_a_killed_runtime_leaves_its_entities_unavailable(broker: Broker, tmp_path: Path) -> None:
    """The configs' availability topic says `offline` through the last will after a SIGKILL, and
    Home Assistant subscribing afterwards finds the configs and `offline`."""
    subscriber = Subscriber(broker)
    script = (
        "import time\n"
        "from edge.config import MqttConfig\nfrom edge.metrics import Metrics\n"
        "from edge.service.home_assistant import discovery\n"
        "from edge.service.mqtt import MqttPublisher\n"
        f"p = MqttPublisher(MqttConfig(enabled=True, host='127.0.0.1', port={broker.port}, "
        f"device='dev1', spool_dir={str(tmp_path)!r}), Metrics())\n"
        "for m in discovery(p, 'cam0', ['Normal', 'Fall']):\n    p.retain(m.topic, m.payload)\n"
        "p.start(); p.connected.wait(10); print('up', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"up"
    wait_until(lambda: len(configs_of(subscriber)) == 4)
    configs = configs_of(subscriber)
    for topic, config in configs.items():
        check_config(topic, config)
    (available,) = {c["availability_topic"] for c in configs.values()}
    assert subscriber.wait_for(available, 1) == [b"online"]
    child.kill()
    child.wait()
    assert subscriber.wait_for(available, 2)[-1] == b"offline"
    subscriber.close()
    held = retained(broker, 5)
    assert held[available] == b"offline"
    assert {t: json.loads(p) for t, p in held.items() if t in configs} == configs


def test_configs_and_states_come_back_when_the_broker_lost_them(
    broker: Broker, tmp_path: Path
) -> None:
    """A broker restarted without persistence has no retained messages: the publisher sends the
    configs and the latest states again when it reconnects, without going through the spool."""
    subscriber = Subscriber(broker, "edge/dev1/cam0/snapshot")
    publisher, sink = open_sink(broker, tmp_path)
    sink.write(packet(1, [(1, 0, (0, 0, 20, 40))]), 10.0)
    subscriber.wait_for("snapshot", 1)  # the last state the publisher sends
    subscriber.close()
    # available, 4 configs (2 classes), count, 2 occupancies, and the snapshot, sent last
    before = retained(broker, 9)
    assert before["edge/dev1/cam0/count"] == b"1"
    sent = publisher.metrics.snapshot().counters["mqtt_states_published"]
    broker.stop()
    broker.start()  # nothing retained now
    states = len(before) - 1  # all but `available`, which the connection itself announces
    wait_until(
        lambda: publisher.metrics.snapshot().counters["mqtt_states_published"] >= sent + states
    )
    assert retained(broker, 9) == before
    assert publisher.spool.count == 0
    publisher.close()


def open_sink(broker: Broker, tmp_path: Path, **values: object) -> tuple[MqttPublisher, MqttSink]:
    """A started publisher and one camera's sink (classes `Normal` and `Fall`) over it."""
    config = config_for(broker, tmp_path, **values)
    publisher = MqttPublisher(config, Metrics())
    publisher.start()
    labels = ("Normal", "Fall")
    records = EventRecords(start_run(tmp_path / "out", "cam0"), labels)
    return publisher, MqttSink(publisher, records, {}, config, labels, snapshots=False)


Box = tuple[float, float, float, float]


def packet(
    index: int, started: list[tuple[int, int, Box]], image: np.ndarray | None = None
) -> Packet:
    """A frame in which tracks (id, class id, box) start."""
    image = np.zeros((240, 320, 3), np.uint8) if image is None else image
    tracks = [Track(i, c, 0.9, box, age=3, hits=3, time_since_update=0) for i, c, box in started]
    events = [TrackEvent(index, "started", track) for track in tracks]
    frame = Frame(index, image, time.monotonic(), None, 10.0)
    return Packet(frame, update=TrackUpdate(index, tracks, events))


def test_snapshots_are_bounded_in_size_and_rate_and_states_follow(
    broker: Broker, tmp_path: Path
) -> None:
    subscriber = Subscriber(broker)
    publisher, sink = open_sink(broker, tmp_path, snapshot_interval_s=0.5, home_assistant=False)
    # States are coalesced (only the latest is sent): see the empty scene's before the first
    # packet replaces it, however late the publisher connects.
    wait_until(lambda: subscriber.on("cam0/occupancy/Normal") == [b"OFF"])
    image = np.zeros((1200, 2000, 3), np.uint8)
    image[:, :, 2] = 255  # a red frame...
    image[100:130, 100:160] = (255, 0, 0)  # ...with a blue 60x30 patch
    sink.write(packet(1, [(1, 0, (0, 0, 2000, 1200))], image), 10.0)  # sent at once, scaled
    sink.write(packet(2, [(2, 0, (0, 0, 50, 50))], image), 10.0)  # waits its turn...
    sink.write(packet(3, [(3, 0, (100, 100, 160, 130))], image), 10.0)  # ...replaced by this
    time.sleep(0.6)
    sink.write(packet(4, []), 10.0)  # its turn: the newest waiting crop goes
    first, second = subscriber.wait_for("cam0/snapshot", 2)
    shapes = [
        cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR).shape for j in (first, second)
    ]
    assert shapes == [(384, SNAPSHOT_MAX_SIDE, 3), (30, 60, 3)]
    wait_until(lambda: subscriber.on("cam0/count")[-1:] == [b"3"])
    assert subscriber.on("cam0/occupancy/Normal") == [b"OFF", b"ON"]
    assert subscriber.on("cam0/occupancy/Fall") == [b"OFF"]
    gone = [Track(i, 0, 0.9, (0, 0, 9, 9), age=9, hits=9, time_since_update=5) for i in (1, 2, 3)]
    sink.close([TrackEvent(4, "ended", track) for track in gone])
    publisher.close()
    wait_until(lambda: subscriber.on("cam0/count")[-1:] == [b"0"])
    subscriber.close()
    assert subscriber.on("cam0/occupancy/Normal") == [b"OFF", b"ON", b"OFF"]
    assert len(subscriber.on("cam0/snapshot")) == 2
    assert not [t for t, _, _ in subscriber.messages if t.startswith("homeassistant/")]


def test_names_become_stable_distinct_ids() -> None:
    assert ident("Normal") == "Normal"
    assert ident("traffic light") == ident("traffic light") != ident("traffic_light")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", ident("gate-1.lab/+#"))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"discovery_prefix": ""}, "expected a topic without '+', '#', NUL or an empty level"),
        ({"discovery_prefix": "home/#"}, "expected a topic without"),
        ({"discovery_prefix": "+"}, "expected a topic without"),
        ({"discovery_prefix": "ha//x"}, "expected a topic without"),
        ({"discovery_prefix": "ha/"}, "expected a topic without"),
        ({"home_assistant": "yes"}, "expected true or false"),
        ({"snapshot_interval_s": -1}, "expected a value in"),
    ],
)
def test_config_refuses_bad_home_assistant_keys(values: dict[str, object], message: str) -> None:
    key = next(iter(values))
    with pytest.raises(EdgeError, match=rf"^config key 'mqtt\.{key}': {re.escape(message)}[^\n]*$"):
        from_dict({"mqtt": values})
    assert from_dict({"mqtt": {"discovery_prefix": "ha/site1"}}).mqtt.discovery_prefix == "ha/site1"
