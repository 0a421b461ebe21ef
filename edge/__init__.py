"""On-device runtime of the edge vision toolkit (no torch, tensorflow or ultralytics here)."""
