"""Palfrey's benchmark harness: ``python -m benchmarks --help``. See README "Benchmarks"."""
