"""Primitives every layer uses: units, limits, statistics and the process probes."""
