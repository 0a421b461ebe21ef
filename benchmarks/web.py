"""`python -m benchmarks web`: what the web page's live view costs the pipeline, and how old the
frame on screen is.

Runs `python -m edge run` with the page on over one live camera (`test://`, 640×480 at 15 FPS,
the real detector and ReID models, recording on) and reads its frame rate and CPU time from
`/metrics` and `/proc` in windows with 0, 1 and 4 live viewers, each window repeated `--rounds`
times in turn (other work on a shared machine shifts windows; the median of each is reported).
A viewer is a WebSocket client that takes every frame the page would (aiohttp, in this process:
its decoding is the browser's cost, not the device's). Then one real page (Debian's Chromium,
headless) shows the Live tab for a window: its latency is the page's own, the capture time sent
beside each JPEG against the browser's clock (same machine, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import re
import statistics
import struct
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.processes import EdgeProcess, free_port
from benchmarks.report import Report, add_output_arguments, arguments, machine_line, stats, table
from edge.errors import EdgeError
from edge.web.auth import write_password

PASSWORD = "benchmark password"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CAMERA = "cam0"
# The pipeline's own latency, capture to the last stage (recent median), from /metrics.
PIPELINE_P50 = re.compile(
    r'^edge_stage_latency_recent_seconds\{camera="[^"]*",stage="total",quantile="0.5"\} (\S+)$',
    re.MULTILINE,
)


def log_in(url: str, password: str) -> str:
    """A session cookie's value, logged in as the page's form does (same Origin).

    Raises:
        EdgeError: the page refused the password.
    """
    host = url.removeprefix("http://").rstrip("/")
    connection = http.client.HTTPConnection(host, timeout=30)
    connection.request(
        "POST",
        "/login",
        body="password=" + password.replace(" ", "+"),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": url},
    )
    response = connection.getresponse()
    match = re.search(r"edge_session=([^;]+)", response.getheader("Set-Cookie") or "")
    connection.close()
    if response.status != 303 or match is None:
        raise EdgeError(f"the web page at {url} refused the login ({response.status})")
    return match[1]


def chromium() -> Any:
    """Debian's Chromium, headless, through chromedriver (Selenium); `quit()` it after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
        "--autoplay-policy=no-user-gesture-required",
    ):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(30)
    return driver


class Viewers:
    """`count` WebSocket viewers of one camera's live view, in a thread of their own until
    `stop()`; each frame's age on arrival (ms) is kept."""

    def __init__(self, url: str, cookie: str, count: int) -> None:
        self.url, self.cookie, self.count = url, cookie, count
        self.ages_ms: list[float] = []
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        headers = {"Origin": self.url, "Cookie": f"edge_session={self.cookie}"}
        address = self.url.replace("http", "ws", 1) + f"/api/live/{CAMERA}"
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(self._view(session, address, headers) for _ in range(self.count))
            )

    async def _view(
        self, session: aiohttp.ClientSession, address: str, headers: dict[str, str]
    ) -> None:
        async with session.ws_connect(address, headers=headers) as socket:
            while not self._stop.is_set():
                try:
                    message = await socket.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if message.type != aiohttp.WSMsgType.BINARY:
                    raise EdgeError(f"the live view sent {message.type.name}, not a frame")
                (captured_ms,) = struct.unpack(">d", message.data[:8])
                self.ages_ms.append(time.time() * 1000 - captured_ms)
                self.frames += 1

    def stop(self) -> None:
        """Close the viewers."""
        self._stop.set()
        self._thread.join(timeout=10)


def window(edge: EdgeProcess, seconds: float, what: str) -> dict[str, float]:
    """The run's FPS and CPU (% of one core) over `seconds` from now."""
    start = edge.progress(what)
    edge.keep_running(seconds, what)
    end = edge.progress(what)
    elapsed = end.time - start.time
    frames = max(end.frames - start.frames, 1)
    with urllib.request.urlopen(f"http://127.0.0.1:{edge.port}/metrics", timeout=10) as reply:
        found = PIPELINE_P50.search(reply.read().decode())
    return {
        "fps": (end.frames - start.frames) / elapsed,
        "cpu_percent": 100 * (end.cpu_s - start.cpu_s) / elapsed,
        # CPU per frame shifts less than FPS when other work takes the cores
        "cpu_ms_per_frame": 1000 * (end.cpu_s - start.cpu_s) / frames,
        "pipeline_p50_ms": 1000 * float(found[1]) if found else float("nan"),
        "seconds": elapsed,
    }


def measure_viewers(edge: EdgeProcess, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Windows with each number of viewers, in turn, `args.rounds` times."""
    cookie = log_in(url, PASSWORD)
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in args.viewers}
    for _ in range(args.rounds):
        for count in args.viewers:
            viewers = Viewers(url, cookie, count) if count else None
            try:
                time.sleep(1.0)  # the viewers connected, the encoder running
                got = viewers.frames if viewers else 0
                row = window(edge, args.window_s, f"with {count} viewers")
                if viewers:
                    row["viewer_fps"] = (viewers.frames - got) / row["seconds"] / count
                    row["age_ms"] = stats(viewers.ages_ms)["p50"]
            finally:
                if viewers:
                    viewers.stop()
            rows[count].append(row)
    return {str(count): _median(found) for count, found in rows.items()}


def _median(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Each value's median over the windows, and every window's FPS."""
    median: dict[str, Any] = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    return median | {"fps_each": [row["fps"] for row in rows]}


def measure_page(edge: EdgeProcess, url: str, seconds: float) -> dict[str, Any]:
    """The Live tab in Chromium for `seconds`: the run's FPS and CPU, the page's frames per
    second and latency (capture time against the browser's clock)."""
    driver = chromium()
    try:
        driver.get(url + "/login")
        driver.find_element("id", "password").send_keys(PASSWORD)
        driver.find_element("id", "submit").click()
        driver.get(url + "/#live")
        deadline = time.monotonic() + 30
        while not driver.execute_script(f"return (liveStats['{CAMERA}'] || {{}}).frames > 0"):
            if time.monotonic() > deadline:
                raise EdgeError("the page showed no live frame within 30 s")
            time.sleep(0.2)
        driver.execute_script(
            f"liveStats['{CAMERA}'].latencies = []; liveStats['{CAMERA}'].frames = 0"
        )
        row = window(edge, seconds, "with the page open")
        shown = driver.execute_script(f"return liveStats['{CAMERA}']")
    finally:
        driver.quit()
    return {**row, "page_fps": shown["frames"] / row["seconds"],
            "latency_ms": stats(shown["latencies"])}  # fmt: skip


def run_web(args: argparse.Namespace) -> dict[str, Any]:
    """The `web` command."""
    report = Report(args.name, args.output, arguments(args))
    log = report.output / f"{args.name}.edge.log"
    with tempfile.TemporaryDirectory(prefix="edge-bench-web-") as scratch:
        folder = Path(scratch)
        write_password(folder / "password", PASSWORD)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        overrides = [
            "source.uri='test://'", f"source.name='{CAMERA}'", "source.width=640",
            "source.height=480", f"source.fps={args.fps}", "colorizer.mode='off'",
            f"output.dir='{folder / 'out'}'", "pipeline.log_every_s=0", "web.enabled=true",
            f"web.port={port}", f"web.password_file='{folder / 'password'}'",
            f"web.state_dir='{folder / 'web'}'", *args.overrides,
        ]  # fmt: skip
        edge = EdgeProcess(overrides, log)
        try:
            edge.wait_for_frames(args.warmup)
            result = {"viewers": measure_viewers(edge, url, args)}
            report.add("result", result)
            if args.page_s:
                result["page"] = measure_page(edge, url, args.page_s)
        finally:
            edge.stop()
        edge.finish()
    base = result["viewers"][str(args.viewers[0])]["fps"]
    for row in result["viewers"].values():
        row["fps_ratio"] = row["fps"] / base
    report.add("result", result)
    report.finish(markdown(report.data))
    return result


def markdown(data: dict[str, Any]) -> str:
    """The result as Markdown."""
    result = data["result"]
    rows = [
        [count, row["fps"], f"{row['fps_ratio']:.3f}", row["cpu_percent"],
         row["cpu_ms_per_frame"], row.get("viewer_fps", "-"), row.get("age_ms", "-"),
         row["pipeline_p50_ms"], ", ".join(f"{v:.2f}" for v in row["fps_each"])]
        for count, row in result["viewers"].items()
    ]  # fmt: skip
    config = data["config"]
    lines = [
        "# Web page: the live view's cost and latency", "", machine_line(data), "",
        f"One `test://` camera, 640×480 at {config['fps']} FPS, the real detector and ReID models,"
        f" recording on; medians of {config['rounds']} windows of {config['window_s']:g} s per "
        "row, taken in turn. A viewer is a WebSocket client taking every frame sent to it.", "",
        table(["live viewers", "pipeline FPS", "× no viewer", "CPU % of a core",
               "CPU ms per frame", "frames/s to each viewer", "frame age on arrival p50 (ms)",
               "of which the pipeline p50 (ms)", "FPS of each window"], rows),
    ]  # fmt: skip
    page = result.get("page")
    if page:
        latency = page["latency_ms"]
        lines += [
            f"The Live tab in headless Chromium (same machine) for {page['seconds']:.0f} s: the "
            f"page drew {page['page_fps']:.2f} frames/s; the frame on screen was captured "
            f"{latency['p50']:.0f} ms (p50), {latency['p95']:.0f} ms (p95) before it was drawn, "
            f"by the browser's clock (the pipeline's own p50: {page['pipeline_p50_ms']:.0f} ms). "
            f"Pipeline {page['fps']:.2f} FPS, CPU {page['cpu_percent']:.0f}% of a core "
            "meanwhile.", "",
        ]  # fmt: skip
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `web` command."""
    parser = subparsers.add_parser(
        "web", help="the live view's cost in FPS and CPU (0, 1, 4 viewers) and its latency"
    )
    parser.add_argument("--fps", type=int, default=15, help="the test camera's frame rate")
    parser.add_argument("--viewers", type=int, nargs="+", default=[0, 1, 4])
    parser.add_argument("--window-s", type=float, default=20.0, help="seconds per window")
    parser.add_argument("--rounds", type=int, default=2, help="windows per viewer count")
    parser.add_argument("--warmup", type=int, default=20, help="frames before the first window")
    parser.add_argument("--page-s", type=float, default=15.0, help="Chromium window (0: none)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    add_output_arguments(parser, "web")
    parser.set_defaults(func=run_web)
