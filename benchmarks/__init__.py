"""Benchmarks: latency per stage, the naive way side by side, and tracking metrics."""
