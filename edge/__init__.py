"""On-device runtime of the edge vision toolkit (no torch, tensorflow or ultralytics here)."""

import os

# numpy's OpenBLAS threads busy-wait after each call and steal the cores the inference engines
# need (measured: tracker update 30 ms -> 2 ms, detector faster too); the runtime's numpy work is
# small matrices, so one BLAS thread costs nothing. It only takes effect if set before numpy
# loads: entry points import `edge` before anything that imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
