"""What a run writes, one small sink per output, and the drawing the video sink uses.

A sink has `write(packet, fps)` for each finished frame and `close(final_events)` once at the
end (`base.Sink`): `video` (overlay, mp4, RTSP), `events` (JSONL), `mot` (MOTChallenge rows),
`snapshots` (a JPEG per new track). The runtime builds them from the config and fans frames out.
May import: numpy, OpenCV, `edge.types`, `edge.detections`, `edge.video` (encoders), `edge.files`,
`edge.metrics`, `edge.errors`; never the models or the pipeline.
"""
