"""Runnable benchmarks. `make bench` runs them all; each also runs alone: `python -m benchmarks.NAME [--quick]`.

Results are JSON files under `benchmarks/results/`, each with the machine it ran on. These machines are shared and
noisy: compare ratios measured within one run, not absolute times across runs.
"""
