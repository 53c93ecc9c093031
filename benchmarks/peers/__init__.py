"""Roost side by side with the systems users would pick instead: ``make bench-peers``.

Runs Roost's own HTTP, queue and alarm benchmarks (``benchmarks.suite``) and the same
workloads against Miniflare (Cloudflare's workerd, with Durable Objects and Queues), Huey
on SQLite and RQ on Redis, alternating the systems, and reports medians and ratios. The
modules here other than the job modules import Roost's benchmark code; the job modules
(``huey_jobs``, ``rq_jobs``, ``records``) run inside the peers' worker processes and
import only the peers' packages.
"""
