"""Processes the benchmarks (and the tests) start and watch: a mosquitto broker on a loopback port,
and the runtime (`python -m edge run`) in a child process, its progress read from its `/metrics`
endpoint and its CPU time, memory and open files from `/proc`.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import EdgeError

REPOSITORY = Path(__file__).resolve().parent.parent
FRAMES = re.compile(r'^edge_frames_total(?:\{camera="([^"]*)"\})? (\S+)$', re.MULTILINE)
STAGE_SUM = re.compile(r'^edge_stage_latency_seconds_sum\{[^}]*stage="([^"]+)"\} (\S+)$', re.M)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fd_count(pid: int) -> int:
    """Open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> Counter[str]:
    """Open file descriptors of a process by what they are: `socket`, `pipe`, `anon_inode:...`,
    or the file's path (so that a report can say what grew)."""
    kinds: Counter[str] = Counter()
    folder = Path(f"/proc/{pid}/fd")
    for fd in folder.iterdir():
        with suppress(OSError):  # closed meanwhile
            target = os.readlink(fd)
            kinds[target.split(":[")[0] if target.startswith(("socket:", "pipe:")) else target] += 1
    return kinds


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Broker:
    """Debian's mosquitto on a loopback port; `stop()` and `start()` again keep its port and
    settings. `tls` (ca, server, server_key) turns on TLS; `users` (name → password) a password
    file instead of anonymous access; `persistent` keeps sessions and queued messages across a
    restart (in `folder`)."""

    folder: Path
    port: int
    tls: dict[str, Path] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    persistent: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start mosquitto and wait until it accepts connections.

        Raises:
            EdgeError: mosquitto is not installed, or does not listen within 10 s.
        """
        lines = [f"listener {self.port} 127.0.0.1", f"persistence {str(self.persistent).lower()}"]
        if self.persistent:
            lines.append(f"persistence_location {self.folder}/")
        if os.geteuid() == 0:  # as root mosquitto would switch to its own user: keep root, which
            lines.append("user root")  # can read the caller's private temporary files
        if self.tls:
            lines += [f"cafile {self.tls['ca']}", f"certfile {self.tls['server']}",
                      f"keyfile {self.tls['server_key']}"]  # fmt: skip
        if self.users:
            passwords = self.folder / "passwords"
            passwords.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True,
                           capture_output=True)  # fmt: skip
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        try:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except FileNotFoundError as exc:
            raise EdgeError("mosquitto not found: install it (apt install mosquitto)") from exc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise EdgeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within 10 s")

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM: a persistent one saves its sessions first)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass(frozen=True)
class Sample:
    """A running runtime's progress at one moment."""

    time: float  # time.monotonic()
    frames: int  # frames through every stage
    cpu_s: float  # user + system CPU time of the process
    stage_s: dict[str, float] = field(default_factory=dict)  # time spent in each stage so far
    camera_frames: dict[str, int] = field(default_factory=dict)  # frames done per camera


class EdgeProcess:
    """`python -m edge run OVERRIDES` in a child process, with `/metrics` on a loopback port;
    its stderr goes to `log`; `env` adds to its environment."""

    def __init__(
        self, overrides: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port, self.log = free_port(), log
        health = ["health.watchdog=false", "health.metrics_host='127.0.0.1'",
                  f"health.metrics_port={self.port}"]  # fmt: skip
        command = [sys.executable, "-m", "edge", "run", *overrides, *health]
        path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=stderr,
                env={**os.environ, **(env or {}), "PYTHONPATH": path},
            )  # fmt: skip

    def sample(self) -> Sample | None:
        """Frames done and CPU time now; None while the endpoint does not answer yet, or once
        the process has ended."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as reply:
                text = reply.read().decode()
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:  # not answering yet (URLError is an OSError), or gone
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        camera_frames = {camera: int(float(value)) for camera, value in FRAMES.findall(text)}
        stage_s: dict[str, float] = {}
        for stage, value in STAGE_SUM.findall(text):  # summed over cameras
            stage_s[stage] = stage_s.get(stage, 0.0) + float(value)
        return Sample(time.monotonic(), sum(camera_frames.values()), cpu_s, stage_s, camera_frames)

    def progress(self, when: str) -> Sample:
        """A sample now.

        Raises:
            EdgeError: the process has ended, or its endpoint does not answer.
        """
        sample = self.sample()
        if sample is None:
            self.check_running(when)
            raise EdgeError(f"edge run's /metrics on port {self.port} did not answer {when}")
        return sample

    def keep_running(self, seconds: float, when: str) -> None:
        """Wait `seconds`, checking that the process goes on.

        Raises:
            EdgeError: it ended meanwhile.
        """
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check_running(when)
            time.sleep(min(left, 0.1))
        self.check_running(when)

    def wait_for_frames(self, frames: int, timeout_s: float = 600) -> Sample:
        """The first sample with at least `frames` done.

        Raises:
            EdgeError: the process ended first (with its last log line), or the time ran out.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sample = self.sample()
            if sample is not None and sample.frames >= frames:
                return sample
            self.check_running(f"before {frames} frames were done")
            time.sleep(0.05)
        raise EdgeError(f"edge run did not do {frames} frames within {timeout_s:g} s")

    def watch(self, every_s: float = 0.1) -> list[Sample]:
        """Samples every `every_s` until the process ends (then checks how it ended)."""
        samples = []
        while self.process.poll() is None:
            sample = self.sample()
            if sample is not None:
                samples.append(sample)
            time.sleep(every_s)
        self.finish()
        return samples

    def check_running(self, when: str) -> None:
        """Raise if the process has ended.

        Raises:
            EdgeError: naming `when` and the process's last log line.
        """
        if self.process.poll() is not None:
            raise EdgeError(f"edge run ended {when} (exit {self.process.returncode}): "
                            f"{self.last_line()}")  # fmt: skip

    def stop(self) -> None:
        """SIGTERM: capture stops, the queues drain, the outputs close (as under systemd)."""
        if self.process.poll() is None:
            self.process.terminate()

    def finish(self, timeout_s: float = 120) -> None:
        """Wait for the process to end.

        Raises:
            EdgeError: it failed (with its last log line) or did not end in time (then killed).
        """
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.wait()
            raise EdgeError(f"edge run did not end within {timeout_s:g} s; killed") from exc
        if code != 0:
            raise EdgeError(f"edge run failed (exit {code}): {self.last_line()} (log: {self.log})")

    def last_line(self) -> str:
        """The last line the process wrote to stderr."""
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"
