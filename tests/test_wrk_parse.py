"""benchmarks/wrk.py reads wrk's output, recorded from real runs of benchmarks/wrk_increments.lua,
and checks a read-back count against the acknowledged and in-doubt requests (no wrk, no network)."""

from __future__ import annotations

import pytest

from benchmarks.wrk import parse

# 64 connections against Restate for 10 s, every answer 200.
CLEAN = """\
Running 10s test @ http://127.0.0.1:18080
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    79.22ms   22.46ms 172.90ms   70.44%
    Req/Sec   808.05    205.86     1.31k    71.00%
  8079 requests in 10.04s, 2.15MB read
Requests/sec:    804.74
Transfer/sec:    219.26KB
wrk-json {"duration_us": 10039232, "requests": 8079, "statuses": {"200": 8079}, \
"errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}, \
"latency_us": {"p50": 76154, "p99": 140527, "max": 172904, "mean": 79218.1}}
"""

# 4 connections against a server answering every fifth request 503 and dropping every fiftieth.
MIXED = """\
Running 1s test @ http://127.0.0.1:18998
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    81.37us   93.24us   2.14ms   98.01%
    Req/Sec    49.34k     3.45k   54.81k    63.64%
  53830 requests in 1.10s, 2.73MB read
  Socket errors: connect 0, read 1098, write 0, timeout 0
  Non-2xx or 3xx responses: 9887
Requests/sec:  48964.59
Transfer/sec:      2.48MB
wrk-json {"duration_us": 1099366, "requests": 53830, "statuses": {"200": 43943, "503": 9887}, \
"errors": {"connect": 0, "read": 1098, "write": 0, "status": 9887, "timeout": 0}, \
"latency_us": {"p50": 64, "p99": 293, "max": 2136, "mean": 81.4}}
"""


def test_a_clean_run():
    run = parse(CLEAN, connections=64)
    assert run.requests == run.acknowledged == 8079 and run.non_2xx == 0
    assert run.requests_per_second == pytest.approx(804.74, abs=0.01)
    assert run.latency_ms == {"p50": 76.154, "p99": 140.527, "max": 172.904, "mean": 79.2181}
    assert run.in_doubt == 64 and run.problems == []


def test_error_answers_and_socket_errors():
    run = parse(MIXED, connections=4)
    assert run.statuses == {200: 43943, 503: 9887}
    assert run.acknowledged == 43943 and run.non_2xx == 9887 == run.summary_non_2xx
    assert run.errors["read"] == 1098
    assert run.in_doubt == 4 + 1098  # one request per connection at the end, one per dropped connection
    assert run.problems == []


def test_the_count_check_allows_exactly_the_requests_in_doubt():
    run = parse(CLEAN, connections=64)
    assert run.count_ok is None  # not read back yet
    for counted, ok in ((8078, False), (8079, True), (8079 + 64, True), (8079 + 65, False)):
        run.counted = counted
        assert run.count_ok is ok, counted


def test_the_scripts_counts_are_checked_against_wrks_own():
    edited = MIXED.replace("Non-2xx or 3xx responses: 9887", "Non-2xx or 3xx responses: 9886")
    run = parse(edited, connections=4)
    assert run.problems and "9886" in run.problems[0]


def test_output_without_the_scripts_line_is_an_error():
    with pytest.raises(ValueError, match="no wrk-json line"):
        parse(CLEAN.split("wrk-json")[0], connections=64)
