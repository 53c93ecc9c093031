"""Roost's benchmark harness: ``python -m benchmarks`` (or ``make bench``).

Measures the disk's physical limits, durable and read-only RPC through the public runtime
API, and memory per resident actor, then prints a table with targets and writes JSON to
``benchmarks/results/latest.json``. Figures only: nothing here asserts timings, and nothing
in ``runtime`` or ``actors`` imports this package.
"""
