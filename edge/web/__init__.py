"""The web page served by the runtime: live view, events with snapshots, recordings, health,
behind a login (`app` serves it; `auth`, `live`, `events`, `recordings`, `health` are its parts).

May import: aiohttp, numpy, OpenCV, `edge.config`, `edge.metrics`, `edge.recordings`,
`edge.service`, `edge.video.remux`, `edge.types`, `edge.utc`, `edge.errors`, `edge.files`.
"""
