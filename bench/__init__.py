"""Benchmarks. Run them as modules, e.g. ``python -m bench.append``; see bench/README.md."""
