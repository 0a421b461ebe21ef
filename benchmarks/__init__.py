"""Benchmarks: latency per stage, the naive way side by side, and tracking metrics."""

# Imported before any benchmark module loads numpy, so the runtime's one-OpenBLAS-thread setting
# (edge/__init__.py) holds in benchmark processes too.
import edge  # noqa: F401
