"""Reproducible measurements (not tests): `python -m benchmarks.bench_images` and friends."""
