"""Video in and out: `sources` (URIs to GStreamer pipeline strings, pure), `capture` (appsink
frames with reconnection), `encoders` (H.264 mp4 and RTSP out), `gst` (PyGObject helpers, lazy),
`files` (OpenCV reading of recorded files for offline jobs).
May import: numpy, OpenCV, GStreamer (PyGObject), `edge.config`, `edge.types`, `edge.metrics`,
`edge.errors`.
"""
