"""The web page's login: one password stored as a scrypt hash, sessions in memory, failed logins
rate-limited per client address, and a same-origin check on every state-changing request.

The password file holds one line, `scrypt$N$r$p$SALT$HASH` (base64), written mode 0600 by
`python -m edge web passwd`; the password itself is never stored. A session is a random token in
a cookie that is HttpOnly, SameSite=Strict and, under TLS, Secure.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from edge.errors import EdgeError
from edge.files import replaced_on_success

# scrypt's cost: 16 MiB and ~50 ms per check on a Jetson-class core (OWASP's minimum is N=2^17
# with r=8 for interactive logins at 128 MiB; this keeps a login affordable on an 8 GB device).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
COOKIE = "edge_session"
MAX_SESSIONS = 64  # the oldest is dropped beyond this
FAILURES = 5  # failed logins a client address may make per WINDOW_S
# Failed logins of all addresses together per WINDOW_S: one machine on the LAN can take many
# addresses (IPv6 above all), so only this bounds the guesses per minute and their scrypt work.
GLOBAL_FAILURES = 30
WINDOW_S = 60.0
MAX_CLIENTS_TRACKED = 1024


def hash_password(password: str) -> str:
    """The line stored for `password` (a fresh random salt each time)."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 << 20, dklen=32)


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the stored line (constant-time comparison)."""
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def write_password(path: Path, password: str) -> None:
    """Store the hash of `password` in `path`, mode 0600, replacing it whole or not at all.

    Raises:
        EdgeError: the password is too short, or the file cannot be written.
    """
    if len(password) < MIN_PASSWORD:
        raise EdgeError(f"the password needs at least {MIN_PASSWORD} characters")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_on_success(path) as temporary:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as stream:
                os.fchmod(stream.fileno(), 0o600)
                stream.write(hash_password(password) + "\n")
    except OSError as exc:
        raise EdgeError(
            f"cannot write the password file {path}: {exc.strerror} (see web.password_file)"
        ) from exc


def read_password(path: Path) -> str:
    """The stored hash line.

    Raises:
        EdgeError: there is none yet, or it cannot be read.
    """
    try:
        stored = path.read_text().strip()
    except FileNotFoundError as exc:
        raise EdgeError(
            f"no web password set ({path} is missing): run `python -m edge web passwd`"
        ) from exc
    except OSError as exc:
        raise EdgeError(f"cannot read the web password file {path}: {exc.strerror}") from exc
    if not stored.startswith("scrypt$"):
        raise EdgeError(f"{path} is not a password file: set it with `python -m edge web passwd`")
    return stored


class Sessions:
    """Logged-in sessions: random tokens that expire `lifetime_s` after login, and all end when
    the password file changes (a new password locks out whoever had the old one)."""

    def __init__(self, lifetime_s: float, password_file: Path) -> None:
        self.lifetime_s, self.password_file = lifetime_s, password_file
        self._expiry: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._password = self._password_now()

    def new(self) -> str:
        """A new session's token."""
        self._check_password()
        token = secrets.token_urlsafe(32)
        self._expiry[token] = time.monotonic() + self.lifetime_s
        while len(self._expiry) > MAX_SESSIONS:
            self._expiry.popitem(last=False)
        return token

    def valid(self, token: str | None) -> bool:
        """Whether `token` is a live session (an expired one is forgotten)."""
        self._check_password()
        if not token or token not in self._expiry:
            return False
        if self._expiry[token] < time.monotonic():
            del self._expiry[token]
            return False
        return True

    def end(self, token: str | None) -> None:
        """Log the session out."""
        self._expiry.pop(token or "", None)

    def _check_password(self) -> None:
        """End every session if the password file is no longer the one they logged in with
        (one stat, no read: `passwd` replaces the file, a new inode)."""
        now = self._password_now()
        if now != self._password:
            self._expiry.clear()
            self._password = now

    def _password_now(self) -> tuple[int, int, int] | None:
        try:
            status = self.password_file.stat()
        except OSError:
            return None
        return status.st_ino, status.st_mtime_ns, status.st_size


class LoginLimiter:
    """At most `FAILURES` failed logins per client address, and `GLOBAL_FAILURES` of all
    addresses together, in any `WINDOW_S`.

    A try is counted when it begins, as a failure until `succeeded`: tries sent all at once (each
    waits its turn for scrypt) count each other instead of all passing before the first fails.
    """

    def __init__(self) -> None:
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._all: collections.deque[float] = collections.deque(maxlen=GLOBAL_FAILURES)

    def begin(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now, and the try is counted."""
        mine = self._recent(client)
        wait = max(_wait(mine, FAILURES), _wait(self._all, GLOBAL_FAILURES))
        if wait > 0:
            return wait
        now = time.monotonic()
        mine.append(now)
        self._all.append(now)
        self._failures.move_to_end(client)
        while len(self._failures) > MAX_CLIENTS_TRACKED:
            self._failures.popitem(last=False)
        return 0.0

    def succeeded(self, client: str) -> None:
        """The try `client` began was the right password: it counts as no failure."""
        for times in (self._failures.get(client), self._all):
            if times:
                times.pop()

    def _recent(self, client: str) -> collections.deque[float]:
        return self._failures.setdefault(client, collections.deque(maxlen=FAILURES))


def _wait(times: collections.deque[float], most: int) -> float:
    """Seconds until fewer than `most` of `times` lie within the last `WINDOW_S` (the old ones
    are dropped)."""
    while times and times[0] + WINDOW_S < time.monotonic():
        times.popleft()
    if len(times) < most:
        return 0.0
    return max(0.0, times[0] + WINDOW_S - time.monotonic())


def same_origin(origin: str | None, host: str | None, scheme: str) -> bool:
    """Whether a request's `Origin` (or Referer) names this server: the CSRF check of every
    request that changes state (with the SameSite=Strict cookie)."""
    if not origin or not host:
        return False
    expected = f"{scheme}://{host}"
    return origin == expected or origin.startswith(expected + "/")
