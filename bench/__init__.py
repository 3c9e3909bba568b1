"""Benchmarks, not part of the test suite: `make bench` runs `python -m bench.run_all`."""
