"""Measured latency: timing a module on a runtime (runtimes.py) and the per-piece table that
predicts a spec's latency from its pieces (table.py)."""
