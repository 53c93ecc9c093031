"""The LMDB environment: key layout, reads, and the group committer."""
