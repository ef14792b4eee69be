"""Comparing runs: held-out eval, sweeps, reports, statistics, the probe, FLOP counting."""
