"""deploy/edge-vision.service read as systemd reads it, for the tests that check what the unit
lets the service do: every assignment of a key in order (configparser keeps only the last of the
two `Environment=` lines), and the folders its sandbox leaves writable."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy/edge-vision.service"
# The folders systemd makes the service's own, where each lives, and the variable naming it.
UNIT_DIRECTORIES = (
    ("StateDirectory", Path("/var/lib"), "STATE_DIRECTORY"),
    ("CacheDirectory", Path("/var/cache"), "CACHE_DIRECTORY"),
    ("LogsDirectory", Path("/var/log"), "LOGS_DIRECTORY"),
)
# ProtectHome=yes makes these empty and inaccessible.
HOME_FOLDERS = (Path("/home"), Path("/root"), Path("/run/user"))


def unit_settings(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """Each section's keys, with every value assigned to them, in file order."""
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


@dataclass(frozen=True)
class ServiceSandbox:
    """What the unit's [Service] makes of the file system and the environment.

    Attributes:
        exec_start: the command line.
        working_directory: `WorkingDirectory=`.
        environment: `Environment=` and the variables systemd adds for the unit's own folders
            (`STATE_DIRECTORY`, ...).
        own: the folders systemd creates and gives to `User=` (`StateDirectory=`, ...).
        read_write: `ReadWritePaths=`.
        protect_system: `ProtectSystem=`.
        hidden: the folders `ProtectHome=yes` hides.
    """

    exec_start: list[str]
    working_directory: Path
    environment: dict[str, str]
    own: tuple[Path, ...]
    read_write: tuple[Path, ...]
    protect_system: str
    hidden: tuple[Path, ...]

    @property
    def writable(self) -> tuple[Path, ...]:
        """Every folder the service may write in."""
        return self.own + self.read_write


def service_sandbox(path: Path = UNIT) -> ServiceSandbox:
    """Read the unit's [Service] section."""
    service = unit_settings(path)["Service"]

    def words(key: str) -> list[str]:
        return [word for value in service.get(key, []) for word in shlex.split(value)]

    environment = dict(word.split("=", 1) for word in words("Environment"))
    own: list[Path] = []
    for key, base, variable in UNIT_DIRECTORIES:
        folders = [base / name for name in words(key)]
        if folders:
            environment[variable] = ":".join(map(str, folders))
            own += folders
    protect_home = service.get("ProtectHome", ["no"])[-1]
    return ServiceSandbox(
        exec_start=words("ExecStart"),
        working_directory=Path(service["WorkingDirectory"][-1]),
        environment=environment,
        own=tuple(own),
        read_write=tuple(Path(p.lstrip("-")) for p in words("ReadWritePaths")),
        protect_system=service.get("ProtectSystem", ["no"])[-1],
        hidden=HOME_FOLDERS if protect_home in ("yes", "true") else (),
    )
