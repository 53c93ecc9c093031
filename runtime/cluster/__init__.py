"""Roost's cluster on NATS JetStream (docs/cluster.md); nothing here is imported without ``--cluster``.

- ``bridge``: ``AsyncioThread``, the asyncio loop thread that nats-py runs on, reached from trio.
- ``jetstream``: ``JetStream``, the trio-facing stream and KV calls (the only importer of nats-py).
- ``local_nats``: a local nats-server cluster on loopback for tests and benchmarks, never production.
- ``records``: the records of a partition's log (commit, fence), as msgpack maps.
- ``replication``: the cluster's output gate, appending every group commit before it is applied.
- ``shards``: ``ClusterShards``, the node's LMDB environment answering for the partitions it serves.
"""
