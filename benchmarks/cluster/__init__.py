"""The cluster spike of docs/cluster.md (issue 21, phase 1): 3 nats-server nodes on loopback,
the trio bridge measurement and the JetStream append, fencing and lease figures. Run with
``benchmarks/cluster/.venv/bin/python -m benchmarks.cluster`` after ``install.sh``."""
