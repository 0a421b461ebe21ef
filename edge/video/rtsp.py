"""The device's RTSP server (gst-rtsp-server): one mount per camera, bound to `output.rtsp_host`
(loopback by default), with RTSP digest authentication when `output.rtsp_user` is set.

Each client gets its own encoder fed through a bounded, leaky appsrc: a client that stalls costs
its own frames (counted in the camera's `rtsp_frames_dropped`), never memory, nor another
client's frames.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import OutputConfig
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.video import gst
from edge.video.encoders import appsrc, encoder_chain, push_or_drop

log = logging.getLogger(__name__)
# Bytes of frames each client's appsrc holds (one frame always fits): a live viewer wants the
# newest frames, so a short queue keeps it current.
CLIENT_QUEUE_BYTES = 16 << 20
DROPPED = "rtsp_frames_dropped"
ROLE = "viewer"  # the role that the login grants and that every mount admits


def rtsp_server(output: OutputConfig) -> RtspServer | None:
    """The server `output` asks for (None when `rtsp_port` is 0), its password read now.

    Raises:
        EdgeError: `rtsp_user` without a readable, non-empty `rtsp_password_file` (or the
            reverse), or the address cannot be served.
    """
    if not output.rtsp_port:
        return None
    return RtspServer(output.rtsp_port, output.rtsp_host, _login(output))


def _login(output: OutputConfig) -> tuple[str, str] | None:
    """(user, password) from `rtsp_user` and `rtsp_password_file`, or None when unset."""
    if bool(output.rtsp_user) != bool(output.rtsp_password_file):
        raise EdgeError(
            "output.rtsp_user and output.rtsp_password_file go together: set both (login "
            "required) or neither (no login)"
        )
    if not output.rtsp_user:
        return None
    path = Path(output.rtsp_password_file)
    try:
        password = path.read_text().strip()
    except OSError as exc:
        raise EdgeError(
            f"cannot read output.rtsp_password_file {path}: {exc.strerror}: "
            "make it readable by the service"
        ) from exc
    if not password:
        raise EdgeError(f"output.rtsp_password_file {path} is empty: write the password in it")
    return output.rtsp_user, password


def _modules() -> tuple[Any, Any, Any]:
    """GLib, GstRtsp and GstRtspServer; raises EdgeError with the package if missing."""
    gst.init()
    try:
        import gi

        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, GstRtsp, GstRtspServer
    except (ImportError, ValueError) as exc:
        raise EdgeError(
            f"RTSP output needs gst-rtsp-server ({exc}): install gir1.2-gst-rtsp-server-1.0"
        ) from exc
    return GLib, GstRtsp, GstRtspServer


class RtspServer:
    """Serves annotated streams at rtsp://<host>:<port><path> with gst-rtsp-server, one mount
    per camera (`mount()`), from its own GLib main loop on a daemon thread."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        login: tuple[str, str] | None = None,
    ) -> None:
        """Start serving.

        Args:
            port: TCP port.
            host: address to bind (`output.rtsp_host`).
            login: (user, password) every client must give (digest), or None: no login.

        Raises:
            EdgeError: gst-rtsp-server is missing, or the address or port cannot be bound.
        """
        GLib, GstRtsp, GstRtspServer = _modules()
        self.host, self.port = host, port
        self._login = login is not None
        self._server = GstRtspServer.RTSPServer()
        self._server.set_address(host)
        self._server.set_service(str(port))
        if login is not None:
            # Digest, not basic: the password never crosses the network, even without TLS.
            auth = GstRtspServer.RTSPAuth()
            token = GstRtspServer.RTSPToken.new()
            token.set_string("media.factory.role", ROLE)
            auth.add_digest(login[0], login[1], token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            self._server.set_auth(auth)
        self._context = GLib.MainContext.new()
        self._source_id = self._server.attach(self._context)
        if self._source_id == 0:
            raise EdgeError(
                f"cannot serve RTSP on {host}:{port}: the port is in use or the address is not "
                "this machine's: set output.rtsp_port / output.rtsp_host"
            )
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp", daemon=True)
        self._thread.start()
        log.info("RTSP on %s:%d (%s)", host, port, "login required" if login else "no login")

    def mount(
        self, path: str, width: int, height: int, fps: float, bitrate_kbps: int, metrics: Metrics
    ) -> RtspMount:
        """Serve a stream of BGR frames of this size at `path`; the camera's `metrics` count
        the frames its clients drop."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        video = (width, height, fps, bitrate_kbps)
        mount = RtspMount(self._server, path, video, metrics, self._login)
        log.info("serving rtsp://%s:%d%s", host, self.port, path)
        return mount

    def close(self) -> None:
        """Stop serving: disconnect the clients and release the port."""
        _, _, GstRtspServer = _modules()
        self._server.client_filter(lambda *_: GstRtspServer.RTSPFilterResult.REMOVE)
        self._loop.quit()
        self._thread.join(timeout=2)
        self._context.find_source_by_id(self._source_id).destroy()  # closes the socket


class RtspMount:
    """One stream of an `RtspServer`: each connected client gets its own appsrc, and every
    frame is pushed to all of them (or dropped for a client whose queue is full)."""

    def __init__(
        self,
        server: Any,
        path: str,
        video: tuple[int, int, float, int],
        metrics: Metrics,
        login: bool,
    ) -> None:
        """Add the mount at `path`; `video` is (width, height, fps, bitrate_kbps); with `login`
        only the server's logged-in role may watch it."""
        _, _, GstRtspServer = _modules()
        width, height, fps, bitrate_kbps = video
        self.fps, self.metrics = fps, metrics
        self._clients: list[tuple[Any, int]] = []  # (appsrc, frames pushed)
        self._lock = threading.Lock()
        source = appsrc(width, height, fps, CLIENT_QUEUE_BYTES, leaky=True, live=True)
        launch = (
            f"( {source} ! {encoder_chain(bitrate_kbps, gst.has_element, live=True)} "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(False)
        if login:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role(ROLE, "media.factory.access", True)
            permissions.add_permission_for_role(ROLE, "media.factory.construct", True)
            factory.set_permissions(permissions)
        factory.connect("media-configure", self._on_media)
        server.get_mount_points().add_factory(path, factory)

    def _on_media(self, _factory: Any, media: Any) -> None:
        src = media.get_element().get_child_by_name("src")
        with self._lock:
            self._clients.append((src, 0))

    def write(self, frame: np.ndarray) -> None:
        """Push a BGR frame to every connected client; drop clients that went away."""
        Gst = gst.init()
        duration = int(1e9 / self.fps)
        with self._lock:
            alive = []
            for src, count in self._clients:
                pushed = push_or_drop(src, frame, count * duration, duration, self.metrics, DROPPED)
                if pushed == Gst.FlowReturn.OK:
                    alive.append((src, count + 1))
            self._clients = alive
