"""Benchmarks that print same-run ratios (`make bench`). Speed targets live here, not in timed tests."""
