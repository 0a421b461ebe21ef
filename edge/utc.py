"""UTC times as the outputs write them: file-name stamps, ISO 8601 in events, and the times a
person types (ISO, a stamp copied from a file name, or an age such as `2h`)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from edge.errors import EdgeError

STAMP_FORMAT = "%Y%m%dT%H%M%S"
STAMP = r"\d{8}T\d{6}\.\d{3}Z"  # e.g. 20250601T120305.512Z
_RELATIVE = re.compile(r"(?P<count>\d+(?:\.\d+)?)\s*(?P<unit>[smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def stamp(utc_s: float) -> str:
    """UTC epoch seconds as a file-name stamp, e.g. `20250601T120305.512Z` (sorts in time)."""
    moment = datetime.fromtimestamp(utc_s, timezone.utc)
    return f"{moment.strftime(STAMP_FORMAT)}.{moment.microsecond // 1000:03d}Z"


def iso(utc_s: float) -> str:
    """UTC epoch seconds as ISO 8601 with milliseconds, e.g. `2025-06-01T12:03:05.512Z`."""
    return datetime.fromtimestamp(utc_s, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def wall_time(monotonic_s: float) -> float:
    """The UTC epoch time of a `time.monotonic()` reading (a frame's capture time)."""
    return time.time() - (time.monotonic() - monotonic_s)


def parse_time(text: str, now: float | None = None) -> float:
    """A time a person typed, as UTC epoch seconds.

    Accepts ISO 8601 (`2025-06-01T12:03`, `2025-06-01 12:03:05Z`, `...+02:00`; no zone: UTC), a
    file-name stamp (`20250601T120305.512Z`), an age (`90s`, `15m`, `2h`, `1d`: that long ago),
    or `now`.

    Raises:
        EdgeError: the text is none of these.
    """
    text = text.strip()
    if text.lower() == "now":
        return time.time() if now is None else now
    relative = _RELATIVE.fullmatch(text)
    if relative:
        ago = float(relative["count"]) * _UNITS[relative["unit"]]
        return (time.time() if now is None else now) - ago
    try:
        if re.fullmatch(STAMP, text):
            moment = datetime.strptime(text, f"{STAMP_FORMAT}.%fZ")
        else:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise EdgeError(
            f"'{text}' is not a time: use ISO 8601 in UTC (2025-06-01T12:03:05Z), a stamp from a "
            "file name (20250601T120305.512Z), an age (15m, 2h, 1d) or now"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def stamp_time(text: str) -> float:
    """A file-name stamp as UTC epoch seconds.

    Raises:
        ValueError: the stamp matches `STAMP` but is no date (e.g. month 13).
    """
    moment = datetime.strptime(text, f"{STAMP_FORMAT}.%fZ").replace(tzinfo=timezone.utc)
    return moment.timestamp()


class Clock:
    """The wall clock and the monotonic clock, in one object so a test can step the wall clock
    (as NTP does at a Jetson's boot) while the monotonic one goes on."""

    def time(self) -> float:
        """UTC epoch seconds (steps when the system clock is set)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds that only ever increase (never stepped)."""
        return time.monotonic()


SYSTEM_CLOCK = Clock()
