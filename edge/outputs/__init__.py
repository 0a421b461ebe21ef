"""What a run writes, one small sink per output, and the drawing the video sink uses.

A sink has `write(packet, fps)` for each finished frame and `close(final_events)` once at the
end (`base.Sink`): `video` (overlay, then `segments` recording and/or RTSP), `events` (JSONL,
appended across runs), `mot` (MOTChallenge rows), `snapshots` (a JPEG per new track), and the
`run`'s track-id ledger. `disk` pauses every file output while the disk is full or read-only.
The runtime builds them from the config and fans frames out.
May import: numpy, OpenCV, `edge.types`, `edge.detections`, `edge.video` (encoders),
`edge.recordings`, `edge.utc`, `edge.files`, `edge.metrics`, `edge.errors`, `edge.config`;
never the models or the pipeline.
"""
