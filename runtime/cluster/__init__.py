"""Roost's cluster on NATS JetStream (docs/cluster.md); nothing here is imported without ``--cluster``.

- ``bridge``: ``AsyncioThread``, the asyncio loop thread that nats-py runs on, reached from trio.
- ``forwarding``: calls for actors of partitions another node owns, sent to that owner over TCP.
- ``jetstream``: ``JetStream``, the trio-facing stream and KV calls (the only importer of nats-py).
- ``local_nats``: a local nats-server cluster on loopback for tests and benchmarks, never production.
- ``node``: ``open_cluster_runtime``, the runtime of one ``roost serve --cluster`` node.
- ``options``: the options of ``roost serve --cluster``.
- ``ownership``: which partitions this node owns: membership, leases, takeover, renewal, hand-off.
- ``records``: the records of a partition's log (commit, fence), as msgpack maps.
- ``replication``: the cluster's output gate, appending every group commit before it is applied.
- ``shards``: ``ClusterShards``, the node's LMDB environment answering for the partitions it serves.
"""
