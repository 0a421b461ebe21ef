"""Who wrote what: a run's id, its camera, and track ids that never repeat in an output folder.

A run id is the UTC start time and four random hex digits (`20250601T120305Z-3fa1`): unique
across restarts, sortable, readable. Track ids continue from where earlier runs in the same folder
stopped: `next_track_id` in the folder holds the next free one, and `TrackIdLedger`, the first
sink, advances it before any other output shows a new id, so even a kill cannot hand an id out
twice.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.outputs.disk import OutputDisk
from edge.outputs.durable import replace_file
from edge.types import Packet, TrackEvent

log = logging.getLogger(__name__)
LEDGER = "next_track_id"


@dataclass(frozen=True)
class Run:
    """One process's run: its id, camera, output folder and first track id."""

    id: str
    camera: str
    folder: Path
    first_track_id: int = 1

    def path(self, name: str) -> Path:
        """An output file in the folder, with `{run}` and `{camera}` in `name` filled in."""
        return self.folder / name.replace("{run}", self.id).replace("{camera}", self.camera)


def new_run_id(now: float | None = None) -> str:
    """A run id: UTC start time to the second, then four random hex digits."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def start_run(folder: Path, camera: str) -> Run:
    """A new run writing into `folder`: a fresh id, track ids after those used there before."""
    first = 1
    try:
        first = max(1, int((folder / LEDGER).read_text().strip() or 1))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s): track ids start at 1 again", folder / LEDGER, exc)
    run = Run(new_run_id(), camera, folder, first)
    log.info("run %s, camera %s, track ids from %d", run.id, camera, first)
    return run


class TrackIdLedger:
    """Records the next free track id in the folder as new ids appear (put it first among the
    sinks, so the id is saved before any other output shows it)."""

    def __init__(self, run: Run, disk: OutputDisk) -> None:
        self.path, self.disk = run.folder / LEDGER, disk
        self._next = self._saved = run.first_track_id

    def write(self, packet: Packet, fps: float) -> None:
        """Advance the ledger past the ids of the frame's tracks (again once a paused disk is
        back, if it missed an advance)."""
        if packet.update is not None:
            ids = [t.track_id for t in packet.update.tracks]
            ids += [e.track.track_id for e in packet.update.events]
            self._next = max([self._next, *(i + 1 for i in ids)])
        if self._next > self._saved:
            self.disk.attempt(str(self.path), self._save)

    def _save(self) -> None:
        # Durable before any other output shows the id: a power cut must not hand it out again.
        replace_file(self.path, f"{self._next}\n".encode())
        self._saved = self._next

    def close(self, final_events: list[TrackEvent]) -> None:
        """Nothing is held open."""
