"""``roost serve`` and the operator's command line (DESIGN.md layer 8)."""
