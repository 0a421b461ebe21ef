"""Home Assistant MQTT discovery of the state topics the runtime publishes.

Each camera's MQTT sink publishes, retained and on change, under `PREFIX/DEVICE/`:
`CAMERA/occupancy/CLASS` (`ON` while a track of that class is live, from its `started` event to
its `ended` one, else `OFF`), `CAMERA/count` (how many tracks are live) and `CAMERA/snapshot`
(the JPEG of the newest track). With `home_assistant` on, it also announces them with Home
Assistant's single-component discovery: per camera a `binary_sensor` (device class `occupancy`)
per tracked class, a `sensor` for the count and a `camera` fed by the snapshot topic, each on
`DISCOVERY_PREFIX/COMPONENT/UNIQUE_ID/config` (Home Assistant's advice: the unique id as object
id, no node id), all on one device entry per Jetson and available while `PREFIX/DEVICE/available`
says `online` (the publisher's birth message and last will). The topic names are made here for the
sink and the discovery alike, so no discovery config points at a topic nobody writes.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Sequence
from typing import Any

from edge.engines.tensorrt import board_model
from edge.service.mqtt import MqttPublisher
from edge.service.spool import Message
from edge.version import version

ORIGIN = "edge-vision"  # the software that publishes the configs (discovery's `origin`)


def ident(name: str) -> str:
    """`name` as an id and topic level of `[A-Za-z0-9_-]` (what a discovery topic's object id
    may hold): itself when it is one already, else with every other character made '_' and a
    hash of the name added, so two names stay two ids (`a b` -> `a_b-` and 6 hex digits)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if cleaned == name:
        return name
    return f"{cleaned}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def occupancy_topic(camera: str, label: str) -> str:
    """The camera's `ON`/`OFF` topic for one class, under `PREFIX/DEVICE/`."""
    return f"{camera}/occupancy/{ident(label)}"


def count_topic(camera: str) -> str:
    """The camera's live-track count topic, under `PREFIX/DEVICE/`."""
    return f"{camera}/count"


def snapshot_topic(camera: str) -> str:
    """The camera's latest snapshot (JPEG) topic, under `PREFIX/DEVICE/`."""
    return f"{camera}/snapshot"


def device_entry(device: str) -> dict[str, Any]:
    """The device registry entry all of this device's entities share."""
    return {
        "identifiers": [f"edge_vision_{ident(device)}"],
        "name": device,
        "model": board_model() or f"{platform.system()} {platform.machine()}",
        "sw_version": version(),
    }


def discovery(publisher: MqttPublisher, camera: str, labels: Sequence[str]) -> list[Message]:
    """The discovery configs (retained messages, full topics) of one camera's entities.

    Args:
        publisher: the device's publisher (its config, device name and topic base).
        camera: the camera's name.
        labels: the classes the camera tracks, one occupancy sensor each.
    """
    entities = [
        (
            "binary_sensor",
            f"occupancy_{ident(label)}",
            f"{camera} {label}",
            {
                "state_topic": f"{publisher.base}/{occupancy_topic(camera, label)}",
                "device_class": "occupancy",
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        )
        for label in labels
    ]
    entities.append(
        (
            "sensor",
            "count",
            f"{camera} objects",
            {
                "state_topic": f"{publisher.base}/{count_topic(camera)}",
                "state_class": "measurement",
            },
        )
    )
    entities.append(
        ("camera", "snapshot", camera, {"topic": f"{publisher.base}/{snapshot_topic(camera)}"})
    )
    return [_config(publisher, camera, *entity) for entity in entities]


def _config(
    publisher: MqttPublisher,
    camera: str,
    component: str,
    key: str,
    name: str,
    options: dict[str, Any],
) -> Message:
    """One entity's discovery message."""
    device = publisher.device
    unique_id = f"edge_vision_{ident(device)}_{camera}_{key}"
    slug = re.sub(r"[^a-z0-9]+", "_", f"{device}_{camera}_{key}".lower()).strip("_")
    payload = {
        "name": name,
        "unique_id": unique_id,
        "default_entity_id": f"{component}.{slug}",
        **options,
        "availability_topic": f"{publisher.base}/available",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": publisher.config.qos,
        "device": device_entry(device),
        "origin": {"name": ORIGIN, "sw_version": version()},
    }
    topic = f"{publisher.config.discovery_prefix}/{component}/{unique_id}/config"
    return Message(topic, json.dumps(payload).encode(), retain=True)
