"""Track events, occupancy, new tracks' snapshots and periodic stats to MQTT (`edge.service.mqtt`
delivers).

Topics under `PREFIX/DEVICE/`: `CAMERA/events`; the states `CAMERA/occupancy/CLASS`,
`CAMERA/count` and `CAMERA/snapshot` (`edge.service.home_assistant`, which also announces them to
Home Assistant); and `stats` (every `stats_interval_s`: FPS, per-stage p50/p95, drops,
reconnects, active tracks, per camera). An event message is the events file's record
(`edge.outputs.records`: same `id`, same order) with what a consumer of Frigate-style events
expects added: `type` (`new`, `update`, `end`), `label`, `score`, `top_score`, `start_time`,
`end_time` (UTC epoch seconds) and `snapshot` (its file name). Besides the file's events, an
`update` goes out at most once per `update_interval_s` per visible track, and at once when its
label changes.

A state is published when it changes: occupancy and count follow the tracks from `started` to
`ended`; the snapshot is the newest track's crop, at most one per `snapshot_interval_s` (a track
started meanwhile waits its turn, a newer one replaces it), its longer side at most
`SNAPSHOT_MAX_SIDE`. Nothing here waits for the network: events go to the publisher's spool,
states to its latest values, stats only while connected.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import MqttConfig
from edge.detections import crop_box
from edge.metrics import Metrics, Snapshot
from edge.outputs.records import EventRecords, Record
from edge.recordings import snapshot_name
from edge.service.home_assistant import count_topic, discovery, occupancy_topic, snapshot_topic
from edge.service.mqtt import MqttPublisher
from edge.service.spool import Message
from edge.types import Packet, Track, TrackEvent

STATS_STAGES = ("capture", "detect", "embed", "track", "colorize", "total")
TYPES = {"started": "new", "lost": "update", "ended": "end"}
SNAPSHOT_MAX_SIDE = 640  # pixels: bounds a snapshot message (a 640x640 JPEG at quality 85)
SNAPSHOT_QUALITY = 85


@dataclass
class _Life:
    """What one track's messages remember between frames."""

    start_time: float
    top_score: float
    label: str
    last_sent: float


class MqttSink:
    """Publishes one camera's events, states and snapshots through the device's publisher; one
    camera's sink also publishes the stats of all (`stats_of`: each camera's metrics by name;
    empty for the others). The runtime closes the publisher after every camera's sink."""

    def __init__(
        self,
        publisher: MqttPublisher,
        records: EventRecords,
        stats_of: Mapping[str, Metrics],
        config: MqttConfig,
        labels: Sequence[str],
        snapshots: bool,
    ) -> None:
        """Announce the camera to Home Assistant (when `config.home_assistant`) and publish its
        states as empty: nothing is live yet, whatever an earlier run left retained.

        Args:
            publisher: the device's publisher.
            records: the camera's event records (shared with its events file).
            stats_of: each camera's metrics by name, for the one sink that publishes stats.
            config: the `[mqtt]` section.
            labels: the classes the camera tracks (an occupancy state each).
            snapshots: whether snapshot files are written (events then name them).
        """
        self.publisher, self.records, self.stats_of = publisher, records, stats_of
        self.camera = records.run.camera
        self.config, self.labels, self.snapshots = config, tuple(labels), snapshots
        self._lives: dict[int, _Life] = {}
        self._next_stats = time.monotonic() + config.stats_interval_s
        self._states: dict[str, bytes] = {}  # as last published, by topic under PREFIX/DEVICE/
        self._crop: np.ndarray | None = None  # the newest track's crop, waiting for its turn
        self._next_snapshot = 0.0
        if config.home_assistant:
            for message in discovery(publisher, self.camera, self.labels):
                publisher.retain(message.topic, message.payload)
        self._publish_states()

    def write(self, packet: Packet, fps: float) -> None:
        """Queue the frame's events, due updates and new tracks' snapshots; stats when due."""
        now = packet.frame.utc
        messages = [self._event(record, now) for record in self.records.of(packet)]
        if packet.update is not None:
            for track in packet.update.tracks:  # a track with an event here is not due yet
                message = self._periodic(track, packet.update.frame, now)
                if message is not None:
                    messages.append(message)
            image = packet.image if packet.image is not None else packet.bgr
            for event in packet.update.events:
                crop = crop_box(image, event.track.xyxy) if event.kind == "started" else None
                if crop is not None:
                    self._crop = crop.copy()  # the frame's array may be reused
        self.publisher.send(messages)
        self._publish_states()
        self._publish_snapshot()
        if self.stats_of and time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + self.config.stats_interval_s
            self.publisher.publish_now("stats", json.dumps(self.stats()).encode())

    def close(self, final_events: list[TrackEvent]) -> None:
        """Queue the last `end` events and the states they leave (nothing live), which the
        publisher delivers when the runtime closes it."""
        now = time.time()
        self.publisher.send([self._event(r, now) for r in self.records.final(final_events)])
        self._publish_states()

    def _publish_states(self) -> None:
        """Publish the occupancy per class and the count of live tracks, where they changed."""
        present = {life.label for life in self._lives.values()}
        states = {count_topic(self.camera): str(len(self._lives)).encode()}
        for label in self.labels:
            states[occupancy_topic(self.camera, label)] = b"ON" if label in present else b"OFF"
        for topic, payload in states.items():
            if self._states.get(topic) != payload:
                self._states[topic] = payload
                self.publisher.retain(f"{self.publisher.base}/{topic}", payload)

    def _publish_snapshot(self) -> None:
        """Publish the newest track's crop when one waits and its turn has come."""
        if self._crop is None or time.monotonic() < self._next_snapshot:
            return
        topic = f"{self.publisher.base}/{snapshot_topic(self.camera)}"
        self.publisher.retain(topic, snapshot_jpeg(self._crop))
        self._crop = None
        self._next_snapshot = time.monotonic() + self.config.snapshot_interval_s

    def stats(self) -> dict[str, object]:
        """The stats message: per camera, FPS, stage p50/p95 (ms), drops, reconnects, tracks."""
        return {
            "time": round(time.time(), 3),
            "cameras": {name: camera_stats(m.snapshot()) for name, m in self.stats_of.items()},
        }

    def _event(self, record: Record, now: float) -> Message:
        """The message of one of the events file's records."""
        track_id, kind = record["track_id"], record["event"]
        life = self._lives.get(track_id)
        if kind == "started" or life is None:
            life = self._lives[track_id] = _Life(now, 0.0, record["class"], now)
        if kind == "ended":
            del self._lives[track_id]
        snapshot = None
        if kind == "started" and self.snapshots:
            snapshot = snapshot_name(self.camera, now, self.records.run.id, track_id)
        return self._message(record, TYPES[kind], life, now, snapshot, ended=kind == "ended")

    def _periodic(self, track: Track, frame: int, now: float) -> Message | None:
        """An `update` for a visible track, when its label changed or one is due."""
        life = self._lives.get(track.track_id)
        label = self.records.class_names[track.class_id]
        interval = self.config.update_interval_s
        if life is None or (label == life.label and now - life.last_sent < interval):
            return None
        record = {
            "id": f"{self.records.run.id}/t{track.track_id}/f{frame}",
            "run": self.records.run.id,
            "camera": self.camera,
            "frame": frame,
            "event": "seen",
            "track_id": track.track_id,
            "class": label,
            "class_id": track.class_id,
            "confidence": round(track.confidence, 4),
            "box": [round(v, 1) for v in track.xyxy],
        }
        return self._message(record, "update", life, now, None, ended=False)

    def _message(
        self, record: Record, kind: str, life: _Life, now: float, snapshot: str | None, ended: bool
    ) -> Message:
        life.top_score = max(life.top_score, record["confidence"])
        life.label, life.last_sent = record["class"], now
        payload = {
            **record,
            "type": kind,
            "label": record["class"],
            "score": record["confidence"],
            "top_score": life.top_score,
            "start_time": round(life.start_time, 3),
            "end_time": round(now, 3) if ended else None,
            "snapshot": snapshot,
            "queued": round(time.time(), 3),  # when it entered the spool, for latency
        }
        return Message(f"{self.camera}/events", json.dumps(payload).encode())


def snapshot_jpeg(crop: np.ndarray) -> bytes:
    """The crop as a JPEG, scaled down so that its longer side is at most SNAPSHOT_MAX_SIDE."""
    scale = SNAPSHOT_MAX_SIDE / max(crop.shape[:2])
    if scale < 1:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])[1].tobytes()


def camera_stats(snap: Snapshot) -> dict[str, object]:
    """One camera's part of the stats message."""
    return {
        "fps": round(snap.gauges.get("fps", 0.0), 2),
        "frames": snap.counters.get("frames", 0),
        "dropped_frames": snap.counters.get("dropped_frames", 0),
        "reconnects": snap.counters.get("reconnects", 0),
        "active_tracks": int(snap.gauges.get("active_tracks", 0)),
        "stages_ms": {
            name: {"p50": round(s.p50_ms, 2), "p95": round(s.p95_ms, 2)}
            for name, s in snap.stages.items()
            if name in STATS_STAGES
        },
    }
