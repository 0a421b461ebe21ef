"""The three models around their engines, and the tracker: `detector` (YOLOv8 letterbox, decode,
NMS), `embedder` (ReID, all crops in one call), `tracker` (deep-sort-realtime fed our
embeddings), `colorizer` (chroma at 128×128, full-resolution luminance kept).
May import: numpy, OpenCV, deep-sort-realtime, `edge.engines`, `edge.detections`, `edge.types`,
`edge.config` (defaults), `edge.errors`. No I/O and no drawing.
"""
