"""``roost serve --workers N`` as a user runs it: real processes, real sockets.

Counts stay exact under concurrent increments over many connections, calls reach actors of
other workers with the same results and errors as local ones, a queue is consumed across
workers, a killed worker loses nothing acknowledged, N can change between runs, SIGTERM
drains, and a worker that cannot start stops the server with one line.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from serve_process import ROOST, ServeProcess
from workers_app import names_owned_by, owner, write_app


class Client:
    """One kept-alive HTTP connection to the server."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def call(self, method: str, path: str, body: object = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
        data = b"" if body is None else json.dumps(body).encode()
        self._connection.request(method, path, body=data, headers={"content-type": "application/json", **(headers or {})})
        response = self._connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()

    def rpc(self, binding: str, name: str, method: str, *args: object) -> object:
        status, _, body = self.call("POST", f"/rpc/{binding}/{name}/{method}", {"args": list(args)})
        assert status == 200, body
        return json.loads(body)["result"]

    def close(self) -> None:
        self._connection.close()


def hammer(
    url: str,
    names: list[str],
    *,
    connections: int,
    per_connection: int,
    halfway: threading.Event | None = None,
) -> tuple[Counter, Counter]:
    """Increment ``names`` round-robin from ``connections`` threads at once; returns the
    acknowledged increments per name and the other outcomes (status or error) with counts.
    ``halfway`` is set once half of all the calls have been answered."""
    half = connections * per_connection // 2
    answered = 0
    acked: Counter[str] = Counter()
    other: Counter[object] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(connections)

    def run(index: int) -> None:
        nonlocal answered
        client = Client(url)
        start.wait()
        for i in range(per_connection):
            name = names[(index + i) % len(names)]
            try:
                status, _, _ = client.call("POST", f"/rpc/COUNTERS/{name}/increment")
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    other[type(exc).__name__] += 1
                client = Client(url)
                continue
            with lock:
                if status == 200:
                    acked[name] += 1
                else:
                    other[status] += 1
                answered += 1
                if halfway is not None and answered >= half:
                    halfway.set()
        client.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acked, other


def values(url: str, names: list[str]) -> dict[str, int]:
    client = Client(url)
    try:
        return {name: client.rpc("COUNTERS", name, "value") for name in names}
    finally:
        client.close()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def serve(app_dir: Path, workers: int, life: str = "0") -> ServeProcess:
    return ServeProcess(app_dir, app_dir / f"serve-{life}.log", "--workers", str(workers))


@pytest.mark.parametrize("workers", [2, 3])
def test_every_count_is_exact_under_concurrent_increments(app_dir: Path, workers: int) -> None:
    server = serve(app_dir, workers)
    try:
        names = [f"c{n}" for n in range(40)]
        assert {owner("COUNTERS", name, workers) for name in names} == set(range(workers))
        acked, other = hammer(server.url, names, connections=16, per_connection=60)
        assert other == Counter()
        assert sum(acked.values()) == 16 * 60
        assert values(server.url, names) == dict(acked)
    finally:
        assert server.stop() == 0


def test_a_hot_actor_counts_each_acknowledged_increment_once(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    try:
        acked, other = hammer(server.url, ["hot"], connections=16, per_connection=50)
        assert other == Counter()
        assert values(server.url, ["hot"]) == {"hot": 16 * 50}
    finally:
        assert server.stop() == 0


def test_calls_between_actors_of_different_workers(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    client = Client(server.url)
    try:
        relay = names_owned_by("RELAYS", 0, 2)[0]
        target = names_owned_by("COUNTERS", 1, 2)[0]
        status, headers, body = client.call(
            "POST", f"/rpc/RELAYS/{relay}/whoami", {"args": [target]}, {"x-request-id": "req-42"}
        )
        assert status == 200 and headers["x-request-id"] == "req-42"
        found = json.loads(body)["result"]
        assert found["pid"] != found["target"]["pid"]  # two processes
        assert found["target"]["correlation_id"] == "req-42"  # the correlation id travels
        assert [client.rpc("RELAYS", relay, "increment", target) for _ in range(3)] == [1, 2, 3]
        assert client.rpc("COUNTERS", target, "value") == 3
        # The error arrives as its own class with its message, as from a local call.
        assert client.rpc("RELAYS", relay, "fail", target, "no such order") == ["ValueError", "no such order", True]
        # A time limit cancels the call on the other worker.
        outcome = client.rpc("RELAYS", relay, "slow_with_limit", target)
        assert outcome.startswith("CallTimeoutError: slow on actor COUNTERS:"), outcome
        # fetch: the response comes back as it was made.
        status, served_by, answer = client.rpc("RELAYS", relay, "fetch_other", target)
        assert status == 201 and answer == {"path": "/some/path", "query": {"x": "1"}}
        assert served_by == str(client.rpc("RELAYS", relay, "whoami", target)["target"]["pid"])
    finally:
        client.close()
        assert server.stop() == 0


def test_http_forwarded_to_the_owner_answers_as_it_would_locally(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    try:
        # Many connections land on both workers; each request reaches the owner.
        for name in names_owned_by("COUNTERS", 0, 2, 3) + names_owned_by("COUNTERS", 1, 2, 3):
            for _ in range(4):
                client = Client(server.url)
                status, headers, body = client.call("POST", f"/actors/COUNTERS/{name}/p?y=2", None, {"x-request-id": "r1"})
                assert (status, headers["x-request-id"], headers["x-served-by"] != "") == (201, "r1", True)
                assert json.loads(body) == {"path": "/p", "query": {"y": "2"}}
                status, _, body = client.call("POST", f"/rpc/COUNTERS/{name}/fail", {"args": ["bad input"]})
                assert status == 500 and json.loads(body)["type"] == "ValueError"
                assert "bad input" in json.loads(body)["error"]
                status, _, body = client.call("POST", f"/rpc/COUNTERS/{name}/nope")
                assert status == 404 and json.loads(body)["type"] == "MethodNotFoundError"
                client.close()
        metrics = Client(server.url).call("GET", "/metrics")[2].decode()
        assert 'roost_worker_up{worker="0"} 1' in metrics and 'roost_worker_up{worker="1"} 1' in metrics
        assert 'roost_events_delivered_total{worker="1"}' in metrics
    finally:
        assert server.stop() == 0


def test_a_queue_is_consumed_across_workers(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    client = Client(server.url)
    try:
        names = [f"q{n}" for n in range(10)]
        for n in range(200):
            status, _, body = client.call("POST", "/queues/work/messages", {"body": {"counter": names[n % 10]}})
            assert status == 202, body
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if json.loads(client.call("GET", "/queues/work")[2])["backlog"] == 0:
                break
            time.sleep(0.05)
        assert values(server.url, names) == {name: 20 for name in names}
        listed = json.loads(client.call("GET", "/queues")[2])
        assert "work" in json.dumps(listed)
    finally:
        client.close()
        assert server.stop() == 0


def test_kill_9_of_one_worker_loses_nothing_acknowledged(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    try:
        names = [f"k{n}" for n in range(20)]
        result: list[tuple[Counter, Counter]] = []
        halfway = threading.Event()
        load = threading.Thread(
            target=lambda: result.append(
                hammer(server.url, names, connections=8, per_connection=300, halfway=halfway)
            )
        )
        load.start()
        assert halfway.wait(60)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        load.join()
        acked, other = result[0]
        in_doubt = sum(other.values())
        # Read back once the replacement serves: a read forwarded to the victim before then
        # would itself be an unknown outcome.
        wait_until_serving_again(server, workers=2)
        found = values(server.url, names)
        for name in names:
            assert acked[name] <= found[name] <= acked[name] + in_doubt, (name, acked[name], found[name])
        # Connections to the killed worker were cut; calls to its actors meanwhile got 503.
        assert {outcome for outcome in other if isinstance(outcome, int)} <= {503}, other
        assert victim not in server.worker_pids() and len(server.worker_pids()) == 2
        assert "worker 0 exited with status -9; starting it again" in server.log() or (
            "worker 1 exited with status -9; starting it again" in server.log()
        )
    finally:
        assert server.stop() == 0


def test_a_worker_killed_while_it_starts_is_started_again(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    try:
        client = Client(server.url)
        names = [f"s{n}" for n in range(10)]
        for name in names:
            client.rpc("COUNTERS", name, "increment")
        client.close()
        first = server.worker_pids()
        os.kill(first[0], signal.SIGKILL)
        replacement = _new_pid(server, set(first))
        os.kill(replacement, signal.SIGKILL)  # before it serves: it is still importing
        wait_until_serving_again(server, workers=2)
        assert "cannot serve" not in server.log()
        assert values(server.url, names) == {name: 1 for name in names}
    finally:
        assert server.stop() == 0


def wait_until_serving_again(server: ServeProcess, *, workers: int) -> None:
    """Wait until the supervisor has all ``workers`` running and says a restarted one serves."""
    deadline = time.monotonic() + 30
    while len(server.worker_pids()) < workers or "serves again" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


def _new_pid(server: ServeProcess, known: set[int]) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fresh = set(server.worker_pids()) - known
        if fresh:
            return fresh.pop()
        time.sleep(0.001)
    raise AssertionError(f"no worker was started again:\n{server.log()}")


def test_changing_the_number_of_workers_keeps_every_actor(app_dir: Path) -> None:
    names = [f"n{n}" for n in range(30)]
    expected: Counter[str] = Counter()
    for life, workers in enumerate([1, 2, 3, 1, 2]):
        server = serve(app_dir, workers, str(life))
        try:
            assert values(server.url, names) == {name: expected[name] for name in names}
            acked, other = hammer(server.url, names[life:], connections=4, per_connection=10)
            assert other == Counter()
            expected.update(acked)
        finally:
            assert server.stop() == 0
        if life == 1:
            assert "laid out for 2 workers (64 partitions, " in server.log()
    assert not (app_dir / "state" / "data.mdb").exists()  # the root environment was moved
    assert [p.name for p in (app_dir / "state").glob("generation-*")] == ["generation-2"]


def test_sigterm_drains_in_flight_requests_and_exits_0(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    answers: list[tuple[int, bytes]] = []
    names = names_owned_by("COUNTERS", 0, 2) + names_owned_by("COUNTERS", 1, 2)

    def slow(name: str) -> None:
        status, _, body = Client(server.url).call("POST", f"/rpc/COUNTERS/{name}/slow")
        answers.append((status, body))

    threads = [threading.Thread(target=slow, args=(name,)) for name in names for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)
    assert server.stop() == 0
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in answers) == [200] * 6
    server = serve(app_dir, 2, "again")
    try:
        assert values(server.url, names) == {name: 3 for name in names}
    finally:
        assert server.stop() == 0


def test_a_worker_that_cannot_start_stops_the_server_with_one_line(app_dir: Path) -> None:
    (app_dir / "roost.toml").write_text(
        (app_dir / "roost.toml").read_text().replace("workers_app:Relay", "workers_app:Missing")
    )
    done = subprocess.run(
        [ROOST, "serve", "--port", "0", "--workers", "2"], cwd=app_dir, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("roost: bad configuration:")
    assert "workers_app:Missing" in done.stderr


def test_a_second_server_on_the_data_directory_exits_2(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    try:
        done = subprocess.run(
            [ROOST, "serve", "--port", "0", "--workers", "2"], cwd=app_dir, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("roost: cannot serve: data directory") and "is in use by another" in last
        assert values(server.url, ["c"]) == {"c": 0}
    finally:
        assert server.stop() == 0


def test_workers_outlive_neither_a_long_run_nor_their_supervisor(app_dir: Path) -> None:
    server = serve(app_dir, 2)
    try:
        workers = server.worker_pids()
        time.sleep(12)  # past the life of an idle thread of trio's (which started them)
        assert server.worker_pids() == workers
        assert values(server.url, ["c"]) == {"c": 0}
    finally:
        server.kill_9()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert "the supervisor is gone; exiting" in server.log()
    serve(app_dir, 2, "after").stop()  # nothing is left holding the data directory


def test_workers_is_checked() -> None:
    done = subprocess.run([ROOST, "serve", "--workers", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and "--workers" in done.stderr


def test_a_worker_whose_partition_is_held_stops_the_server_with_one_line(app_dir: Path) -> None:
    serve(app_dir, 2).stop()  # the data directory now has its partitions
    holder = os.open(app_dir / "state" / "generation-0" / "worker-1" / "roost.lock", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = subprocess.run(
            [ROOST, "serve", "--port", "0", "--workers", "2"], cwd=app_dir, capture_output=True, text=True, timeout=60
        )
    finally:
        os.close(holder)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("roost: cannot serve: data directory") and "generation-0/worker-1" in last, done.stderr
