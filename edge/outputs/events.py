"""Track life-cycle events as JSON Lines, appended across runs, and their tolerant reader."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.outputs.base import LineFile
from edge.outputs.disk import OutputDisk
from edge.outputs.records import EventRecords, Record
from edge.types import Packet, TrackEvent

log = logging.getLogger(__name__)


class EventSink(LineFile):
    """Appends one JSON object per track event (`edge.outputs.records` shows one). Each line is
    written whole in one system call: a kill loses no complete line, a power cut the lines of
    the last second at most (`LineFile`). Full files become numbered pieces
    (`events-000001.jsonl`), which `edge.recordings.event_files` lists before the file."""

    def __init__(self, path: Path, records: EventRecords, disk: OutputDisk | None = None) -> None:
        super().__init__(path, append=True, disk=disk)
        self.records = records

    def write(self, packet: Packet, fps: float) -> None:
        """Append the frame's events."""
        self._append(self.records.of(packet))

    def close(self, final_events: list[TrackEvent]) -> None:
        """Append the last events and close the file."""
        self._append(self.records.final(final_events))
        super().close(final_events)

    def _append(self, records: list[Record]) -> None:
        # Called every frame, even without events, so a due fsync is never long put off.
        self.write_lines([json.dumps(record) for record in records])


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The events of a JSON Lines file, in order.

    A line that is not a JSON object — the last one torn by a power cut, or one a full disk cut
    short — is skipped with a warning that names the file and line.
    """
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                where = "last line" if not raw.endswith(b"\n") else "line"
                log.warning(
                    "%s: %s %d is not a complete event (cut short by a power cut or a full "
                    "disk): skipped",
                    path,
                    where,
                    number,
                )
                continue
            yield record
