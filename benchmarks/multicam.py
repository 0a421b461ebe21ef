"""`python -m benchmarks multicam --cameras 1,2,4`: N cameras in one process against N processes
of one camera each, on the same live sources.

Each camera is a loopback RTSP server replaying the sample video in real time (its walkers give
the embedder and tracker real work). For every N: one `edge run` with N `[[cameras]]`, then N
`edge run`s of one camera each, every run warmed up, then measured over the same window: frames
per camera (aggregate FPS, per-camera min/max), CPU (all processes), resident memory (sum of the
processes' RSS at the end of the window), and, from each camera's summary, capture-to-output
latency p50/p95 against the detector's inference time per call (a batch for one process).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.processes import EdgeProcess, free_port, rss_kib
from benchmarks.report import (
    Report,
    add_output_arguments,
    arguments,
    machine_line,
    table,
)
from benchmarks.rtsp_server import start_rtsp_server
from export.data import data_file

log = logging.getLogger(__name__)
# Each run's settings: detection and tracking with recording, colorization off (color sources).
SETTINGS = '[colorizer]\nmode = "off"\n[pipeline]\nlog_every_s = 0\n'
RTSP = "timeout_s = 5.0\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n"


def camera_table(folder: Path, names: Sequence[tuple[str, str]]) -> str:
    """The config of cameras (name, RTSP URL), each writing into folder/NAME."""
    cameras = "".join(f'[[cameras]]\nname = "{n}"\nuri = "{u}"\n{RTSP}' for n, u in names)
    return f'[output]\ndir = "{folder}"\n{SETTINGS}{cameras}'


def measure(
    configs: Sequence[Path],
    overrides: Sequence[str],
    video: Path,
    ports: Sequence[int],
    timing: tuple[float, float],
    logs: Path,
) -> dict[str, Any]:
    """Serve the video on each port (from its start, so no run outlasts it), start one process
    per config (with the config `overrides`), warm up, measure, stop them all."""
    warmup_s, seconds = timing
    servers = [start_rtsp_server(port, video) for port in ports]
    processes = [
        EdgeProcess(["--config", str(config), *overrides], logs / f"{config.stem}.log")
        for config in configs
    ]
    try:
        for process in processes:
            process.wait_for_frames(1, timeout_s=300)
        time.sleep(warmup_s)
        start = [process.progress("at the start") for process in processes]
        for process in processes:
            process.keep_running(seconds, "while measured")
        end = [process.progress("at the end") for process in processes]
        rss_mib = sum(rss_kib(process.process.pid) for process in processes) / 1024
    finally:
        for process in processes:
            process.stop()
        for process in processes:
            process.finish()
        for server in servers:
            server.kill()
    elapsed = max(e.time - s.time for s, e in zip(start, end, strict=True))
    fps = {
        name: (frames - before.camera_frames[name]) / elapsed
        for before, after in zip(start, end, strict=True)
        for name, frames in after.camera_frames.items()
    }
    cpu = sum(e.cpu_s - s.cpu_s for s, e in zip(start, end, strict=True)) / elapsed
    return {"fps": fps, "cpu_cores": cpu, "rss_mib": rss_mib, "seconds": elapsed}


def latency(folder: Path, names: Sequence[str]) -> dict[str, float]:
    """Worst camera's capture-to-output p50/p95 and the detector's inference time per call
    (p50), from each camera's summary of its run."""
    summaries = []
    for name in names:
        (path,) = sorted((folder / name).glob("runs/*/summary.json"))
        summaries.append(json.loads(path.read_text())["stages_ms"])
    return {
        "total_p50_ms": max(s["total"]["p50"] for s in summaries),
        "total_p95_ms": max(s["total"]["p95"] for s in summaries),
        "infer_p50_ms": max(s["detect_infer"]["p50"] for s in summaries),
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every camera count; write the report."""
    counts = sorted(set(args.cameras))
    report = Report(args.name, args.output, arguments(args))
    video = args.video or data_file("vtest.avi")
    ports = [free_port() for _ in range(max(counts))]
    urls = [(f"cam{i}", f"rtsp://127.0.0.1:{port}/cam") for i, port in enumerate(ports)]
    timing = (args.warmup_s, args.seconds)
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="multicam-") as tmp:
        for count in counts:
            folder, cameras = Path(tmp) / f"n{count}", urls[:count]
            names = [name for name, _ in cameras]
            folder.mkdir()
            together = folder / "together.toml"
            together.write_text(camera_table(folder / "together", cameras))
            apart = [folder / f"{name}.toml" for name in names]
            for config, camera in zip(apart, cameras, strict=True):
                config.write_text(camera_table(folder / "apart", [camera]))
            log.info("%d cameras: one process", count)
            shared = measure([together], args.overrides, video, ports[:count], timing, folder)
            shared |= latency(folder / "together", names)
            log.info("%d cameras: %d processes", count, count)
            alone = measure(apart, args.overrides, video, ports[:count], timing, folder)
            alone |= latency(folder / "apart", names)
            result = {"cameras": count, "one_process": shared, "processes": alone}
            results.append(result)
            report.add("results", results)
            rows += [row(count, "one process", shared), row(count, "a process per camera", alone)]
    header = ["cameras", "run", "FPS (all)", "per-camera FPS min/max (ratio)", "CPU cores",
              "RSS (MiB)", "latency p50/p95 (ms)", "detector call p50 (ms)"]  # fmt: skip
    report.finish(
        f"# Several cameras: one process vs one process each\n\n{machine_line(report.data)}\n"
        f"Sources: loopback RTSP servers replaying {video.name} in real time; "
        f"{args.warmup_s:g} s warm-up, {args.seconds:g} s measured per run.\n\n"
        + table(header, rows)
    )
    return {"results": results}


def row(count: int, label: str, result: dict[str, Any]) -> list[object]:
    """One line of the table."""
    fps = list(result["fps"].values())
    return [
        count,
        label,
        round(sum(fps), 2),
        f"{min(fps):.2f}/{max(fps):.2f} ({min(fps) / max(max(fps), 1e-9):.2f})",
        round(result["cpu_cores"], 2),
        round(result["rss_mib"]),
        f"{result['total_p50_ms']:.0f}/{result['total_p95_ms']:.0f}",
        round(result["infer_p50_ms"]),
    ]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `multicam` command."""
    parser = subparsers.add_parser(
        "multicam", help="N cameras in one process vs N processes (FPS, memory, latency)"
    )
    parser.add_argument(
        "--cameras",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2, 4],
        help="camera counts, comma-separated (default 1,2,4)",
    )
    parser.add_argument("--video", type=Path, help="the video each RTSP camera replays")
    parser.add_argument("--warmup-s", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument(
        "--seconds",
        type=float,
        default=40.0,
        help="seconds measured per run (warm-up and measurement must fit in the video)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config for every run, e.g. detector.model=... (default: the built-in config)",
    )
    add_output_arguments(parser, "multicam")
    parser.set_defaults(func=run_benchmark)
