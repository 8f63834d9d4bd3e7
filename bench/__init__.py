"""Benchmarks: run from the clone's root, e.g. `python -m bench.search_efficiency` (segtune installed)."""
