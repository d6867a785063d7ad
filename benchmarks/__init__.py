"""Benchmarks of ttft_exporter against the built-in simulator (see README.md)."""
