"""`python -m benchmarks mqtt`: event latency and rate through a broker, and the frame rate while
the broker is away.

Starts mosquitto on a loopback port (or uses the user's broker, `--host`), runs `python -m edge
run` over the sample video with `[mqtt]` on in a child process, and subscribes to its events. The
run's frame rate is read from its `/metrics` in three windows: the broker up (`--window-s`),
stopped (`--outage-s`), and started again (`--window-s`); publishing must not slow the pipeline
while the broker is away (the issue's goal: within 10%). Then the run is stopped (SIGTERM) and
checked: every event of its `events.jsonl` must have arrived (repeats after a reconnect, as QoS 1
allows, carry the same id). Reported per event message queued while the publisher was connected
(p50/p95/p99): the time from its entering the spool to its arrival at the subscriber (what MQTT
delivery adds), and from the capture of the frame the event happened in to its arrival (which
includes the pipeline's own latency); and how long after the broker's restart the publisher was
back and the last event queued while it was away arrived. Our broker keeps sessions across its
restart (persistence), so the subscriber, out during the outage, misses nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.processes import Broker, EdgeProcess, free_port
from benchmarks.report import Report, add_output_arguments, arguments, machine_line, stats, table
from edge import paths
from edge.errors import EdgeError
from edge.outputs.events import read_events

DEVICE = "bench"


def subscribe(
    host: str, port: int, topic: str, durable: bool
) -> tuple[paho.Client, list[tuple[float, bytes]]]:
    """A client recording (arrival time, payload) of every message on `topic`; `durable` keeps
    its session on the broker while it is disconnected (QoS 1 messages are queued for it)."""
    arrivals: list[tuple[float, bytes]] = []
    ready = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="edge-bench-subscriber", clean_session=not durable
    )
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _c, _u, m: arrivals.append((time.time(), bytes(m.payload)))
    try:
        client.connect(host, port)
    except OSError as exc:
        raise EdgeError(
            f"no MQTT broker at {host}:{port} ({exc}): check --host and --port, or drop --host "
            "to use a mosquitto started here"
        ) from exc
    client.loop_start()
    if not ready.wait(10):
        raise EdgeError(f"could not subscribe at {host}:{port}")
    return client, arrivals


@dataclass
class Outage:
    """Stops our broker and starts it again. The subscriber leaves just before and is back just
    after (the broker keeps its session, with what is published meanwhile), so arrival times
    after the restart are set by the publisher's reconnection, not the subscriber's."""

    broker: Broker
    subscriber: paho.Client

    def begin(self) -> None:
        """Subscriber out, broker stopped."""
        self.subscriber.disconnect()
        self.subscriber.loop_stop()
        self.broker.stop()

    def end(self) -> None:
        """Broker started, subscriber back."""
        self.broker.start()
        self.subscriber.reconnect()
        self.subscriber.loop_start()


def measure_phases(
    edge: EdgeProcess, outage: Outage | None, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """The run's frames and FPS with the broker `up`, then (with an outage) `away` and `back`;
    each with its start and end in UTC epoch seconds."""
    steps = [("up", args.window_s, None)]
    if outage is not None:
        steps += [("away", args.outage_s, outage.begin), ("back", args.window_s, outage.end)]
    edge.wait_for_frames(args.warmup)
    phases = {}
    for name, seconds, action in steps:
        start_utc = time.time()  # before the broker's stop or start
        if action is not None:
            action()
        when = f"in the '{name}' window (give more --frames, or shorter windows)"
        start = edge.progress(when)
        edge.keep_running(seconds, when)
        end = edge.progress(when)
        frames, elapsed = end.frames - start.frames, end.time - start.time
        detect_s = sum(end.stage_s.get(s, 0) - start.stage_s.get(s, 0) for s in ("detect", "embed"))
        phases[name] = {
            "start_utc": start_utc,
            "end_utc": time.time(),
            "seconds": elapsed,
            "frames": frames,
            "fps": frames / elapsed,
            "cpu_percent": 100 * (end.cpu_s - start.cpu_s) / elapsed,
            # The detect thread (detector + embedder) is the slowest stage: when its time per
            # frame is the window's whole time per frame, a slower window is slower inference
            # (less CPU for it), not a stage waiting on publishing.
            "detect_embed_ms_per_frame": 1000 * detect_s / max(frames, 1),
        }
    return phases


def run_edge(
    args: argparse.Namespace, host: str, port: int, outage: Outage | None, folder: Path, log: Path
) -> dict[str, dict[str, float]]:
    """Run the runtime with MQTT on through the phases, then stop it; return the phases."""
    overrides = [
        f"source.uri='{args.video.resolve()}'", f"source.max_frames={args.frames}",
        "colorizer.mode='off'", f"output.dir='{folder / 'out'}'", "output.video=''",
        "pipeline.log_every_s=0", "mqtt.enabled=true", f"mqtt.host='{host}'", f"mqtt.port={port}",
        f"mqtt.device='{DEVICE}'", f"mqtt.spool_dir='{folder / 'spool'}'", *args.overrides,
    ]  # fmt: skip
    edge = EdgeProcess(overrides, log)
    try:
        phases = measure_phases(edge, outage, args)
    finally:
        edge.stop()  # SIGTERM: drain, publish what is spooled, say offline
    edge.finish()
    return phases


def delivery(
    arrivals: list[tuple[float, bytes]], written: list[dict[str, Any]], phases: dict[str, Any]
) -> dict[str, Any]:
    """What arrived of the run's events: losses, repeats, latency, the backlog after an outage."""
    run = written[0]["run"]
    events = [(arrived, e) for arrived, e in ((a, json.loads(p)) for a, p in arrivals)
              if e.get("run") == run]  # fmt: skip
    if not events:
        raise EdgeError("no event arrived: is the broker the one the runtime published to?")
    received = {e["id"] for _, e in events}
    arrived = [a for a, _ in events]
    # The outage: from the broker's stop to the publisher's reconnection (the first arrival of
    # a message queued since the stop); messages queued then wait in the spool by design.
    away, never = phases.get("away"), float("inf")
    stop, restart = (away["start_utc"], away["end_utc"]) if away else (never, never)
    reconnected = min((a for a, e in events if e["queued"] >= stop), default=never)
    connected = [(a, e) for a, e in events if not stop <= e["queued"] < reconnected]
    during = [a for a, e in events if stop <= e["queued"] < restart]
    return {
        "messages": len(events),
        "repeated": len(events) - len(received),
        "events_written": len(written),
        "lost": sum(1 for w in written if w["id"] not in received),
        "messages_per_s": len(events) / max(max(arrived) - min(arrived), 1e-9),
        "queued_while_away": len(during),
        "reconnected_s": reconnected - restart if away and reconnected < never else None,
        "backlog_delivered_s": max(during) - restart if during else None,
        "delivery_ms": stats([(a - e["queued"]) * 1000 for a, e in connected]),
        "capture_to_arrival_ms": stats(
            [(a - datetime.fromisoformat(e["utc"]).timestamp()) * 1000
             for a, e in connected if "utc" in e]
        ),
    }  # fmt: skip


def run_mqtt(args: argparse.Namespace) -> dict[str, Any]:
    """The `mqtt` command."""
    if args.host is not None and args.outage_s:
        raise EdgeError(
            "--outage-s stops the broker mid-run, so it needs the one this benchmark starts: "
            "drop --host, or give --outage-s 0"
        )
    report = Report(args.name, args.output, arguments(args))
    log = report.output / f"{args.name}.edge.log"
    with tempfile.TemporaryDirectory(prefix="edge-bench-mqtt-") as scratch:
        folder = Path(scratch)
        broker = None if args.host else Broker(folder, free_port(), persistent=True)
        host, port = (args.host, args.port) if broker is None else ("127.0.0.1", broker.port)
        if broker is not None:
            broker.start()
        try:
            client, arrivals = subscribe(host, port, f"edge/{DEVICE}/+/events", broker is not None)
            outage = Outage(broker, client) if broker is not None and args.outage_s else None
            phases = run_edge(args, host, port, outage, folder, log)
            time.sleep(1.0)  # the last acknowledgements and deliveries
            client.loop_stop()
            client.disconnect()
            written = list(read_events(folder / "out" / "events.jsonl"))
        finally:
            if broker is not None:
                broker.stop()
    if not written:
        raise EdgeError(f"the run wrote no events (log: {log}): nothing to deliver")
    result = {"phases": phases, **delivery(arrivals, written, phases)}
    if "away" in phases:
        result["away_over_up"] = phases["away"]["fps"] / phases["up"]["fps"]
    report.add("result", result)
    report.finish(markdown(report.data))
    return result


def markdown(data: dict[str, Any]) -> str:
    """The result as Markdown."""
    result, phases = data["result"], data["result"]["phases"]
    labels = {"up": "up", "away": "stopped", "back": "started again"}
    frame_rate = [
        [labels[name], p["seconds"], p["frames"], p["fps"], f"{p['fps'] / phases['up']['fps']:.2f}",
         p["cpu_percent"], 1000 / p["fps"], p["detect_embed_ms_per_frame"]]
        for name, p in phases.items()
    ]  # fmt: skip
    latency = [
        [label, result[key]["p50"], result[key]["p95"], result[key]["p99"]]
        for label, key in (
            ("event queued → arrival (spool, broker, network)", "delivery_ms"),
            ("frame captured → arrival (includes the pipeline)", "capture_to_arrival_ms"),
        )
    ]
    lines = [
        "# MQTT: event latency, and the frame rate with the broker away", "", machine_line(data),
        "", f"{result['messages']} event messages ({result['repeated']} repeated after a "
        f"reconnect), {result['messages_per_s']:.1f} per second; {result['lost']} of the "
        f"{result['events_written']} events of events.jsonl never arrived.", "",
        table(["broker", "seconds", "frames", "FPS", "× up", "CPU % of a core", "ms/frame",
               "detect + embed ms/frame"], frame_rate),
    ]  # fmt: skip
    if "away_over_up" in result:
        ratio = result["away_over_up"]
        lines += [f"Frame rate with the broker away / up: **{ratio:.2f}** (goal ≥ 0.9).", ""]
    if result["backlog_delivered_s"] is not None:
        backlog, queued = result["backlog_delivered_s"], result["queued_while_away"]
        lines += [f"After the broker's restart the publisher reconnected in "
                  f"{result['reconnected_s']:.1f} s (its backoff), and the {queued} event "
                  f"messages queued while it was away had arrived {backlog:.1f} s after the "
                  "restart.", ""]  # fmt: skip
    lines += ["Latency of the event messages queued while the publisher was connected:", "",
              table(["latency (ms)", "p50", "p95", "p99"], latency)]  # fmt: skip
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `mqtt` command."""
    parser = subparsers.add_parser(
        "mqtt", help="event latency through an MQTT broker, and the frame rate while it is away"
    )
    parser.add_argument("--host", help="the user's broker (default: start mosquitto on loopback)")
    parser.add_argument("--port", type=int, default=1883, help="the user's broker's port")
    parser.add_argument("--video", type=Path, default=paths.DATA / "opencv" / "vtest.avi")
    parser.add_argument(
        "--frames", type=int, default=0, help="most frames (0: all; it stops after the windows)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="frames before the first window")
    parser.add_argument(
        "--window-s", type=float, default=20.0, help="FPS window with the broker up, and back"
    )
    parser.add_argument(
        "--outage-s", type=float, default=20.0, help="the broker stopped (0: never; ours only)"
    )
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    add_output_arguments(parser, "mqtt")
    parser.set_defaults(func=run_mqtt)
