"""Benchmarks: they print and save reports under bench/reports; they are not timed tests."""
