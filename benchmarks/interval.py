"""`python -m benchmarks interval [--intervals 0,1,2,4]`: what `detector.interval` costs.

Runs `python -m edge run` over the sample video (detect + track, colorization off, MOT rows out)
once per interval, each in a fresh process, and scores each run's tracks against the ground
truth (`--gt`, frames up to its last; IDF1, MOTA, ID switches) and against the interval-0 run's
(agreement; interval 0 is the reference, so its own row is 1.0 by construction). Beside them:
the frame rate and the process's CPU time per frame and CPU use, read from the run's `/metrics`
and `/proc` after the first `--warmup` frames (so model loading does not count).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.mot_metrics import accumulate, load_mot, summarize
from benchmarks.processes import EdgeProcess, Sample
from benchmarks.report import Report, add_output_arguments, arguments, machine_line, table
from benchmarks.tracking import GT, VIDEO, scores
from edge.errors import EdgeError


def intervals(text: str) -> list[int]:
    """`0,1,2,4` as a list; 0 must come first (it is the reference)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers, got {text!r}") from exc
    if values[0] != 0 or any(v < 0 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"distinct intervals from 0 (the reference), got {text!r}")
    return values


def rate(samples: Sequence[Sample], warmup: int) -> dict[str, float]:
    """Frames, FPS, CPU seconds per frame and CPU % (of one core) from the first sample past the
    warm-up to the first one with the final frame count.

    Raises:
        EdgeError: too few frames after the warm-up.
    """
    measured = [s for s in samples if s.frames >= warmup]
    if not measured or measured[-1].frames <= measured[0].frames:
        done = samples[-1].frames if samples else 0
        raise EdgeError(
            f"the run did {done} frames, too few for {warmup} warm-up frames and a measurement: "
            "use more --frames or a smaller --warmup"
        )
    first = measured[0]
    last = next(s for s in measured if s.frames == measured[-1].frames)
    frames, seconds = last.frames - first.frames, last.time - first.time
    cpu_s = last.cpu_s - first.cpu_s
    return {
        "frames": frames,
        "fps": frames / seconds,
        "cpu_s_per_frame": cpu_s / frames,
        "cpu_percent": 100 * cpu_s / seconds,
    }


def run_once(
    args: argparse.Namespace, interval: int, folder: Path
) -> tuple[Path, dict[str, float]]:
    """One run at `interval`; its MOT file and its rate."""
    folder = folder.resolve()  # the child runs in the repository
    folder.mkdir(parents=True, exist_ok=True)
    mot = folder / "tracks.mot.txt"
    overrides = [
        f"source.uri='{args.video.resolve()}'", f"source.max_frames={args.frames}",
        "colorizer.mode='off'", f"output.dir='{folder}'", "output.video=''", "output.events=''",
        "output.snapshots=false", "output.summary=''", f"output.mot='{mot}'",
        "pipeline.log_every_s=0", f"detector.interval={interval}", *args.overrides,
    ]  # fmt: skip
    samples = EdgeProcess(overrides, folder / "edge.log").watch()
    return mot, rate(samples, args.warmup)


def run_interval(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The `interval` command."""
    report = Report(args.name, args.output, arguments(args))
    runs: list[dict[str, Any]] = []
    reference = None
    for interval in args.intervals:
        folder = report.output / f"{args.name}-runs" / str(interval)
        mot, measured = run_once(args, interval, folder)
        tracks = load_mot(mot) if mot.is_file() and mot.stat().st_size else {}
        if reference is None:
            if not tracks:
                raise EdgeError(f"interval 0 gave no tracks ({mot}): nothing to score against")
            reference = tracks
        agreement = summarize({"run": accumulate(reference, tracks)})["run"]
        truth = None
        if args.gt.is_file():  # scored where it has boxes (the sample video's: frames 1-400)
            truth = scores(args.gt, tracks, args.frames or max(load_mot(args.gt)))
        runs.append({"interval": interval, **measured, "mot": agreement, "gt": truth})
        report.add("runs", runs)  # what is measured so far stays on disk
    report.finish(markdown(report.data))
    return runs


def markdown(data: Mapping[str, Any]) -> str:
    """The runs as Markdown."""
    runs = data["runs"]
    reference_fps = runs[0]["fps"]
    rows = [
        [r["interval"], f"1 in {r['interval'] + 1}", r["fps"], f"{r['fps'] / reference_fps:.2f}×",
         r["cpu_s_per_frame"] * 1000, r["cpu_percent"],
         *([r["gt"]["idf1"], r["gt"]["mota"], int(r["gt"]["num_switches"])] if r["gt"]
           else ["-"] * 3),
         r["mot"]["idf1"], r["mot"]["mota"], int(r["mot"]["num_switches"])]
        for r in runs
    ]  # fmt: skip
    return "\n".join([
        f"# detector.interval: {Path(data['config']['video']).name}", "", machine_line(data), "",
        "Tracks of each interval scored against the ground truth "
        f"({Path(data['config']['gt']).name}, where it covers the frames) and against "
        "interval 0's tracks (agreement); FPS and CPU "
        f"after {data['config']['warmup']} warm-up frames, {runs[0]['frames']} frames measured "
        "at interval 0.", "",
        table(["interval", "detector runs on", "FPS", "× interval 0", "CPU ms/frame",
               "CPU % of a core", "IDF1", "MOTA", "ID switches", "IDF1 vs interval 0",
               "MOTA vs interval 0", "ID switches vs interval 0"], rows),
    ])  # fmt: skip


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `interval` command."""
    parser = subparsers.add_parser(
        "interval", help="tracking agreement, FPS and CPU of detector.interval N against 0"
    )
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--gt", type=Path, default=GT, help="its ground truth, when there is one")
    parser.add_argument(
        "--intervals", type=intervals, default=[0, 1, 2, 4], help="from 0 (the reference)"
    )
    parser.add_argument("--frames", type=int, default=0, help="frames per run (0: the whole video)")
    parser.add_argument("--warmup", type=int, default=10, help="frames before FPS and CPU count")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    add_output_arguments(parser, "interval")
    parser.set_defaults(func=run_interval)
