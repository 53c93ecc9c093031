"""Placement across the worker processes of ``roost serve --workers N``: which worker owns an
actor's partition, and the local channel that forwards a call to it."""
