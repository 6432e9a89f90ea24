"""Measurements, not tests: ``python -m bench.run`` (``make bench``, ``make bench-quick``)."""
