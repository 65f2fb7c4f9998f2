"""Benchmarks: timings printed side by side, never asserted; run as modules (``python -m bench.scale ...``)."""
