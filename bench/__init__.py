"""Benchmarks: the real gateway process against loopback provider peers. Not tests: run `python -m bench`."""
