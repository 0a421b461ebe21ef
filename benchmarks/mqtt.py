"""`python -m benchmarks mqtt [--host H] [--port P]`: event latency and rate through a broker.

Runs the runtime over the sample video with `[mqtt]` on, subscribes to its events on the same
broker and reports per event message (p50/p95/p99): the time from its entering the spool to its
arrival at the subscriber (what MQTT delivery adds), and from the capture of the frame the event
happened in to its arrival (which includes the pipeline's own latency); and the messages per
second the run published. The broker is the user's (mosquitto on localhost by default); nothing
is started here.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.report import Report, add_output_arguments, arguments, machine_line, stats, table
from edge import paths
from edge.config import load
from edge.errors import EdgeError
from edge.runtime import run

DEVICE = "bench"


def subscribe(host: str, port: int, topic: str) -> tuple[paho.Client, list[tuple[float, bytes]]]:
    """A client recording (arrival time, payload) of every message on `topic`."""
    arrivals: list[tuple[float, bytes]] = []
    ready = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="edge-bench-subscriber")
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _c, _u, m: arrivals.append((time.time(), bytes(m.payload)))
    try:
        client.connect(host, port)
    except OSError as exc:
        raise EdgeError(
            f"no MQTT broker at {host}:{port} ({exc}): start one or give --host"
        ) from exc
    client.loop_start()
    if not ready.wait(10):
        raise EdgeError(f"could not subscribe at {host}:{port}")
    return client, arrivals


def run_mqtt(args: argparse.Namespace) -> dict[str, Any]:
    """The `mqtt` command."""
    report = Report(args.name, args.output, arguments(args))
    client, arrivals = subscribe(args.host, args.port, f"edge/{DEVICE}/+/events")
    overrides = [
        f"source.uri='{args.video}'", f"source.max_frames={args.frames}", "colorizer.mode='off'",
        f"output.dir='{report.output / 'mqtt-run'}'", "output.video=''", "mqtt.enabled=true",
        f"mqtt.host='{args.host}'", f"mqtt.port={args.port}", f"mqtt.device='{DEVICE}'",
        f"mqtt.spool_dir='{report.output / 'mqtt-spool'}'", *args.overrides,
    ]  # fmt: skip
    summary = run(load(None, overrides))
    time.sleep(1.0)  # the last acknowledgements and deliveries
    client.loop_stop()
    client.disconnect()
    events = [(arrived, json.loads(payload)) for arrived, payload in arrivals]
    if not events:
        raise EdgeError("no event arrived: is the broker the one the runtime published to?")
    result = {
        "messages": len(events),
        "messages_per_s": len(events) / max(float(summary["seconds"]), 1e-9),
        "delivery_ms": stats([(arrived - e["queued"]) * 1000 for arrived, e in events]),
        "capture_to_arrival_ms": stats(
            [(arrived - datetime.fromisoformat(e["utc"]).timestamp()) * 1000
             for arrived, e in events if "utc" in e]
        ),
        "run": summary,
    }  # fmt: skip
    report.add("result", result)
    report.finish(markdown(report.data))
    return result


def markdown(data: dict[str, Any]) -> str:
    """The result as Markdown."""
    result = data["result"]
    rows = [
        [label, result[key]["p50"], result[key]["p95"], result[key]["p99"]]
        for label, key in (
            ("event queued → arrival (spool, broker, network)", "delivery_ms"),
            ("frame captured → arrival (includes the pipeline)", "capture_to_arrival_ms"),
        )
    ]
    return "\n".join([
        "# MQTT event latency", "", machine_line(data), "",
        f"{result['messages']} event messages, {result['messages_per_s']:.1f} per second; "
        f"the run: {result['run']['frames']} frames at {result['run']['fps']} FPS.", "",
        table(["latency (ms)", "p50", "p95", "p99"], rows),
    ])  # fmt: skip


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `mqtt` command."""
    parser = subparsers.add_parser("mqtt", help="event latency and rate through an MQTT broker")
    parser.add_argument("--host", default="localhost", help="the broker (none is started)")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--video", type=Path, default=paths.DATA / "opencv" / "vtest.avi")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    add_output_arguments(parser, "mqtt")
    parser.set_defaults(func=run_mqtt)
