"""The web page, end to end: `python -m edge run` with two live cameras (a `test://` ball, and
the sample video served in real time by a loopback RTSP server) and the page on, driven by a real
browser (Debian's Chromium through Selenium) and by plain HTTP.

One running device is shared by every test of this module; the browser's screenshots of each
page are saved to docs/images/ for docs/web.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from benchmarks.processes import free_port
from benchmarks.rtsp_server import start_rtsp_server
from benchmarks.web import chromium, log_in
from edge.config import OutputConfig, WebConfig
from edge.metrics import Metrics
from edge.service.health import Health
from edge.web.app import Device, Site, WebServer
from edge.web.auth import write_password
from edge.web.live import LiveFeed
from edge.web.recordings import CameraFiles
from export.data import data_file
from tests.detect_models import TRACKER_320

PASSWORD = "correct horse battery"
IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


@dataclass
class Running:
    """The device under test: its page, its metrics endpoint, its folders."""

    url: str
    metrics_url: str
    folder: Path
    process: subprocess.Popen[str]

    def get(self, path: str, cookie: str = "") -> tuple[int, bytes]:
        """GET `path`, sent as is (`../` unresolved), with a session cookie if given."""
        host = self.url.removeprefix("http://").rstrip("/")
        connection = http.client.HTTPConnection(host, timeout=30)
        headers = {"Cookie": f"edge_session={cookie}"} if cookie else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, body


def _config(folder: Path, models: tuple[Path, Path], ports: tuple[int, int, int]) -> str:
    detector, reid = models
    rtsp_port, web_port, metrics_port = ports
    tracker_320 = "\n".join(f"{key} = {value}" for key, value in TRACKER_320.items())
    return f"""
[detector]
model = "{detector}"
[tracker]
reid_model = "{reid}"
{tracker_320}
[colorizer]
mode = "off"
[output]
dir = "{folder}/out"
segment_s = 4.0
[pipeline]
log_every_s = 0
[health]
metrics_port = {metrics_port}
[web]
enabled = true
port = {web_port}
password_file = "{folder}/web/password"
state_dir = "{folder}/web"
[[cameras]]
name = "ball"
uri = "test://"
width = 320
height = 240
fps = 10
[[cameras]]
name = "walk"
uri = "rtsp://127.0.0.1:{rtsp_port}/cam"
"""


def _wait_until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def device(
    tmp_path_factory: pytest.TempPathFactory, detector_320: Path, reid_onnx: Path
) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("web")
    rtsp_port, web_port, metrics_port = free_port(), free_port(), free_port()
    config = folder / "edge.toml"
    config.write_text(
        _config(folder, (detector_320, reid_onnx), (rtsp_port, web_port, metrics_port))
    )
    subprocess.run(
        [sys.executable, "-m", "edge", "web", "passwd", "--stdin", "--config", str(config)],
        input=PASSWORD + "\n", text=True, check=True, capture_output=True,
    )  # fmt: skip
    rtsp = start_rtsp_server(rtsp_port, data_file("vtest.avi"))
    log = (folder / "edge.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(config)], stderr=log, text=True
    )
    running = Running(
        f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{metrics_port}", folder, process
    )
    try:
        try:
            _wait_until(lambda: running.get("/healthz")[0] == 200, 120, "both cameras to deliver")
        except AssertionError as exc:
            log.flush()
            tail = (folder / "edge.log").read_text()[-3000:]
            raise AssertionError(f"{exc}; edge run's log ends:\n{tail}") from None
        yield running
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        rtsp.kill()
        rtsp.wait()
        log.close()


@pytest.fixture(scope="module")
def cookie(device: Running) -> str:
    """A session, logged in over plain HTTP as a form post from the page would."""
    return log_in(device.url, PASSWORD)


@pytest.fixture(scope="module")
def browser(device: Running) -> Iterator[WebDriver]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(browser: WebDriver, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(IMAGES / f"web-{name}.png"))


def _log_in(browser: WebDriver, device: Running, password: str) -> None:
    browser.get(device.url + "/")
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "password"))
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "submit").click()


@pytest.fixture
def page(browser: WebDriver, device: Running) -> WebDriver:
    """The browser, logged in."""
    browser.get(device.url + "/login")
    if browser.get_cookie("edge_session") is None:
        _log_in(browser, device, PASSWORD)
        WebDriverWait(browser, 10).until(lambda b: b.get_cookie("edge_session"))
    return browser


def test_login_refuses_a_wrong_password_and_admits_the_right_one(
    browser: WebDriver, device: Running
) -> None:
    _log_in(browser, device, "not the password")
    WebDriverWait(browser, 10).until(
        lambda b: "Wrong password" in b.find_element(By.ID, "message").text
    )
    assert browser.get_cookie("edge_session") is None
    _screenshot(browser, "login")
    _log_in(browser, device, PASSWORD)
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "live-cameras"))
    session = browser.get_cookie("edge_session")
    assert session is not None
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"


def _api_paths(folder: Path) -> list[str]:
    """Every /api/ route of the page's router, its parameters filled in."""
    write_password(folder / "password", PASSWORD)
    config = WebConfig(password_file=str(folder / "password"), state_dir=str(folder / "state"))
    metrics = {"walk": Metrics()}
    site = Site(config, Device({}, metrics, Health(metrics, None, 10.0), OutputConfig()))
    try:
        paths = {route.resource.canonical for route in site.app().router.routes()}  # type: ignore[union-attr]
    finally:
        site.index.close()
    return sorted(
        p.replace("{camera}", "walk").replace("{name}", "x.jpg") for p in paths if "/api/" in p
    )


def test_every_api_path_answers_401_without_a_session(device: Running, tmp_path: Path) -> None:
    paths = _api_paths(tmp_path)
    assert len(paths) >= 9  # cameras, health, events, clip, recordings, export, segments, ...
    for path in paths:
        assert device.get(path)[0] == 401, path
        assert device.get(path, cookie="forged")[0] == 401, path
    assert device.get("/healthz")[0] == 200  # the one open path, for monitors


@pytest.mark.parametrize(
    "path",
    [
        "/api/snapshots/walk/../../edge.toml",
        "/api/snapshots/walk/..%2F..%2Fedge.toml",
        "/api/segments/walk/..%2F..%2Fweb%2Fpassword",
        "/api/segments/walk/../../../web/password",
        "/api/snapshots/..%2Fwalk/x.jpg",
        "/static/..%2Fapp.py",
        "/static/../app.py",
    ],
)
def test_dot_dot_in_a_file_path_answers_404(device: Running, cookie: str, path: str) -> None:
    status, body = device.get(path, cookie=cookie)
    assert status == 404, body[:200]


def _pixels(browser: WebDriver, camera: str) -> str:
    """The live canvas's pixels, as a data URL (changes when the picture does)."""
    return str(browser.execute_script(f"return $('#live-{camera}').toDataURL();"))


def test_live_view_changes_for_each_camera(page: WebDriver, device: Running) -> None:
    page.get(device.url + "/#live")
    for camera in ("ball", "walk"):
        WebDriverWait(page, 20).until(
            lambda b, c=camera: b.execute_script(f"return (liveStats['{c}'] || {{}}).frames > 0")
        )
    before = {camera: _pixels(page, camera) for camera in ("ball", "walk")}
    time.sleep(2)
    _screenshot(page, "live")
    for camera, pixels in before.items():
        assert _pixels(page, camera) != pixels, f"{camera}'s live view did not change"


def _assert_plays(page: WebDriver, video: WebElement) -> None:
    """The video element loads its source and its time advances, with no media error."""
    state = "return [arguments[0].readyState, arguments[0].currentTime, arguments[0].error && "
    state += "arguments[0].error.code, arguments[0].currentSrc]"
    try:
        WebDriverWait(page, 30).until(lambda b: b.execute_script(state, video)[0] >= 2)
        started = page.execute_script(state, video)[1]
        WebDriverWait(page, 15).until(lambda b: b.execute_script(state, video)[1] > started + 0.5)
    except TimeoutException:
        raise AssertionError(f"video did not play: {page.execute_script(state, video)}") from None
    assert page.execute_script(state, video)[2] is None


def test_event_shows_its_snapshot_and_plays_its_recording(page: WebDriver, device: Running) -> None:
    # A walker of the sample video is tracked within seconds (more on a loaded machine); its
    # segment must exist too.
    def walkers(browser: WebDriver) -> list[WebElement]:
        return [
            item
            for item in browser.find_elements(By.CSS_SELECTOR, "#event-list li")
            if "walk: Normal" in item.text
            and browser.execute_script(
                "return arguments[0].querySelector('img').naturalWidth > 0", item
            )
        ]

    deadline = time.monotonic() + 120
    items: list[WebElement] = []
    while time.monotonic() < deadline and not items:
        page.get(device.url + "/#events")
        # the list and its pictures load after the page: slowly on a loaded machine
        with contextlib.suppress(TimeoutException):
            items = WebDriverWait(page, 10).until(walkers)
    assert items, "no event of the sample video with its snapshot"
    items[-1].click()  # the oldest listed: its segment is closed
    _assert_plays(page, page.find_element(By.ID, "event-video"))
    _screenshot(page, "events")


def test_recordings_timeline_plays_a_segment(page: WebDriver, device: Running) -> None:
    page.get(device.url + "/#recordings")
    WebDriverWait(page, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#timeline div"))
    page.find_elements(By.CSS_SELECTOR, "#segment-list button")[-1].click()  # the oldest
    _assert_plays(page, page.find_element(By.ID, "recording-video"))
    assert "download=1" in page.find_element(By.ID, "download").get_attribute("href")
    _screenshot(page, "recordings")


def _metrics_fps(device: Running) -> dict[str, float]:
    with urllib.request.urlopen(device.metrics_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        sample.labels["camera"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "edge_fps"
        for sample in family.samples
    }


def test_health_panel_fps_matches_metrics(page: WebDriver, device: Running) -> None:
    page.get(device.url + "/#health")
    WebDriverWait(page, 10).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#camera-health td.fps")) == 2
    )
    page.execute_async_script("refreshHealth().then(arguments[0]);")
    shown = {
        row.get_attribute("data-camera"): float(row.find_element(By.CSS_SELECTOR, ".fps").text)
        for row in page.find_elements(By.CSS_SELECTOR, "#camera-health tbody tr")
    }
    exported = _metrics_fps(device)
    assert set(shown) == set(exported) == {"ball", "walk"}
    for camera, fps in shown.items():
        assert fps > 0
        assert abs(fps - exported[camera]) <= 1.0, (camera, fps, exported[camera])
    _screenshot(page, "health")


def test_events_api_filters_by_camera_and_class(device: Running, cookie: str) -> None:
    status, body = device.get("/api/events?camera=walk&class=Normal", cookie=cookie)
    assert status == 200
    events = json.loads(body)["events"]
    assert events
    assert {(e["camera"], e["class"], e["event"]) for e in events} == {
        ("walk", "Normal", "started")
    }
    times = [e["utc"] for e in events]
    assert times == sorted(times, reverse=True)
    status, body = device.get("/api/events?camera=ball&class=Normal", cookie=cookie)
    assert json.loads(body)["events"] == []


def test_live_view_comes_back_after_a_drop_and_logs_in_again_when_the_session_ends(
    tmp_path: Path,
) -> None:
    """A tablet left on Live for months: a socket dropped (network, proxy) opens again by
    itself, and a session that ended (a new password, a restart) shows the login; both left
    the page on "disconnected" for good. The server runs in-process with a fed live feed."""
    write_password(tmp_path / "password", PASSWORD)
    config = WebConfig(
        enabled=True, port=0, password_file=str(tmp_path / "password"),
        state_dir=str(tmp_path / "state"),
    )  # fmt: skip
    metrics = {"cam0": Metrics()}
    feed = LiveFeed("cam0")
    files = {"cam0": CameraFiles("cam0", tmp_path / "out", "recordings", "", False)}
    health = Health(metrics, None, 10.0)
    server = WebServer(config, Device(files, metrics, health, OutputConfig(), feeds={"cam0": feed}))
    stop = threading.Event()

    def camera() -> None:
        image = np.zeros((48, 64, 3), np.uint8)
        while not stop.wait(0.1):
            feed.offer(image, time.time())

    threading.Thread(target=camera, daemon=True).start()
    driver = chromium()
    frames = "return (window.liveStats || {}).cam0 || {}"
    try:
        driver.get(f"http://127.0.0.1:{server.port}/")
        WebDriverWait(driver, 10).until(lambda b: b.find_elements(By.ID, "password"))
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 20).until(lambda b: b.execute_script(frames).get("frames", 0) > 3)
        driver.execute_script("window.liveStats.cam0.dropped = true")
        for socket in list(server.site.sockets):  # as a network drop would
            asyncio.run_coroutine_threadsafe(socket.close(), server._loop).result(10)
        WebDriverWait(driver, 20).until(
            lambda b: (
                not (stats := b.execute_script(frames)).get("dropped")
                and stats.get("frames", 0) > 3
            )
        )
        write_password(tmp_path / "password", "a new password here")  # every session ends
        WebDriverWait(driver, 20).until(lambda b: b.current_url.endswith("/login"))
    finally:
        driver.quit()
        stop.set()
        server.close()
