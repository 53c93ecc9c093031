"""Real ``roost serve --cluster`` nodes against a local NATS cluster, for the end-to-end tests.

Each node is its own process with its own data directory and a log file per life (so a log
survives ``kill -9``). ``RoostCluster`` starts them, waits until the 64 partitions are served
once in total, kills, pauses, resumes and restarts a node (same name, same data directory,
same advertised address), and ``Load`` drives increments over keep-alive connections to every
live node at once, telling acknowledged calls from unknown outcomes and calls not delivered.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from serve_process import ServeProcess  # noqa: E402

from runtime.cluster.ownership import rank  # noqa: E402
from runtime.durability.partitions import DEFAULT_PARTITIONS, partition_of  # noqa: E402
from runtime.model.ids import IdScheme, namespace_key  # noqa: E402

LEASE_SECONDS = 3.0
SETTLE_TIMEOUT_SECONDS = 40.0
LOG_TAIL_CHARS = 6000

APP = '''
import trio
from actors import MessageBatch, execute_idempotent, get_job_status, schedule_job, update_job_status
from runtime import Actor, now


class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n

    async def value(self) -> int:
        return await self.storage.get("n", 0)

    async def increment_slowly(self, seconds: float) -> int:
        """An increment whose call goes on for ``seconds`` after its write."""
        n = await self.increment()
        await trio.sleep(seconds)
        return n


class Payments(Actor):
    """A payment made once per idempotency key, whichever node it is asked through: the
    charge is an increment of the counter named after the key, with its job status kept."""

    async def charge(self, key: str) -> dict:
        async def charge_once() -> int:
            await update_job_status(self.env, key, status="processing", progress=50)
            charged = await self.env.COUNTERS.get_by_name("charged-" + key).increment()
            await update_job_status(self.env, key, status="completed", progress=100, result=charged)
            return charged

        done = await execute_idempotent(self.env, key, charge_once)
        return {"result": done.result, "cached": done.cached}

    async def status(self, key: str) -> dict | None:
        return await get_job_status(self.env, key)

    async def schedule(self, tag: str, queue: str, delay: float) -> str:
        """A scheduled job whose message (tagged) goes to ``queue`` ``delay`` s from now."""
        return await schedule_job(self.env, {"tag": tag}, now() + delay, queue=queue)


class Ledger(Actor):
    """How many times each queue message id was delivered."""

    async def record(self, ids: list) -> None:
        for message_id in ids:
            key = "seen:" + message_id
            await self.storage.put(key, await self.storage.get(key, 0) + 1)

    async def seen(self) -> dict:
        found = await self.storage.list(prefix="seen:")
        return {key[len("seen:"):]: n for key, n in found.items()}


class Ticker(Actor):
    """The cron trigger's actor: how many times each slot ran."""

    async def scheduled(self, event) -> None:
        key = "slot:%d" % event.scheduled_time
        await self.storage.put(key, await self.storage.get(key, 0) + 1)

    async def slots(self) -> dict:
        return await self.storage.list(prefix="slot:")


class Recorder(Actor):
    """The queue's consumer: every message id of a batch goes to the ledger before the ack."""

    async def queue(self, batch: MessageBatch) -> None:
        tags = [m.body["tag"] if isinstance(m.body, dict) and "tag" in m.body else m.id for m in batch.messages]
        await self.env.LEDGER.get_by_name("ledger").record(tags)
'''

# The nodes prove it to each other on their channel, and every call here carries it.
TOKEN = "cluster-test-token"
WEBHOOK_SECRET = "whsec_cluster_test"

CONFIG = """
[vars]
ROOST_TOKEN = "cluster-test-token"
WEBHOOK_SECRET = "{webhook_secret}"

[http]
internal_token = "ROOST_TOKEN"

[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "cluster_app:Counter"

[[durable_objects.bindings]]
name = "PAYMENTS"
class_name = "cluster_app:Payments"

[[durable_objects.bindings]]
name = "LEDGER"
class_name = "cluster_app:Ledger"

[[durable_objects.bindings]]
name = "TICKER"
class_name = "cluster_app:Ticker"

[[triggers.crons]]
cron = "* * * * *"
binding = "TICKER"
name = "ticker"

[[webhooks]]
provider = "stripe"
queue = "{queue}"
secret = "WEBHOOK_SECRET"

[[queues.producers]]
queue = "{queue}"
binding = "JOBS"

[[queues.consumers]]
queue = "{queue}"
class_name = "cluster_app:Recorder"
max_batch_size = 10
max_batch_timeout = 0.05
"""


def write_app(directory: Path, queue: str) -> None:
    (directory / "cluster_app.py").write_text(APP)
    (directory / "roost.toml").write_text(CONFIG.format(queue=queue, webhook_secret=WEBHOOK_SECRET))


def partition_of_actor(binding: str, name: str) -> int:
    prefix = namespace_key(binding) + IdScheme(binding).from_name(name).raw
    return partition_of(prefix, DEFAULT_PARTITIONS)


def home(partition: int, nodes: list[str]) -> str:
    """Where rendezvous hashing places ``partition`` among ``nodes`` once settled."""
    return max(nodes, key=lambda node: rank(partition, node))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RoostNode:
    """One node: its name, data directory and advertised address stay across lives."""

    def __init__(self, root: Path, name: str, nats_urls: list[str], options: tuple[str, ...] = ()) -> None:
        self.root = root
        self.options = options  # more flags of roost serve
        self.name = name
        self.data_dir = root / f"data-{name}"
        self.advertise = f"127.0.0.1:{free_port()}"
        self.nats_urls = nats_urls
        self.lives = 0
        self.process: ServeProcess | None = None
        self.paused = False
        self.start()

    def start(self) -> None:
        self.lives += 1
        self.paused = False
        self.process = ServeProcess(
            self.root,
            self.root / f"{self.name}-{self.lives}.log",
            "--config", "roost.toml",
            "--data-dir", str(self.data_dir),
            "--cluster", ",".join(self.nats_urls),
            "--node-name", self.name,
            "--advertise", self.advertise,
            "--lease-seconds", f"{LEASE_SECONDS:g}",
            *self.options,
        )  # fmt: skip

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.url

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.process.poll() is None

    def kill_9(self) -> None:
        assert self.process is not None
        self.resume()
        self.process.kill_9()

    def pause(self) -> None:
        assert self.process is not None and not self.paused
        self.process.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused and self.alive:
            assert self.process is not None
            self.process.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> int | None:
        if not self.alive:
            return None
        self.resume()
        assert self.process is not None
        try:
            return self.process.stop()
        except Exception:
            self.process.kill_9()
            raise

    def status(self) -> dict:
        return get_json(self.url, "/cluster")

    def logs(self) -> str:
        return "\n".join(
            f"--- node {self.name}, life {life} ---\n{_tail((self.root / f'{self.name}-{life}.log').read_text())}"
            for life in range(1, self.lives + 1)
        )


class RoostCluster:
    def __init__(self, root: Path, names: list[str], nats_urls: list[str], options: tuple[str, ...] = ()) -> None:
        self.nodes: dict[str, RoostNode] = {}
        try:
            for name in names:
                self.nodes[name] = RoostNode(root, name, nats_urls, options)
        except BaseException:
            self.stop()
            raise

    def __getitem__(self, name: str) -> RoostNode:
        return self.nodes[name]

    def live(self) -> list[RoostNode]:
        """The nodes running and not paused."""
        return [n for n in self.nodes.values() if n.alive and not n.paused]

    def urls(self) -> list[str]:
        return [n.url for n in self.live()]

    def logs(self) -> str:
        return "\n".join(n.logs() for n in self.nodes.values())

    def views(self) -> dict[str, dict | str]:
        found: dict[str, dict | str] = {}
        for node in self.live():
            try:
                found[node.name] = node.status()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                found[node.name] = f"{type(exc).__name__}: {exc}"
        return found

    def wait_settled(self, *, every_node_serves: bool = False, timeout: float = SETTLE_TIMEOUT_SECONDS) -> dict:
        """Wait until the live nodes serve the 64 partitions once in total and every node's
        owner table names only live nodes, each partition's rendezvous home; the views then. ``every_node_serves``: and each
        live node serves at least one partition."""
        deadline = time.monotonic() + timeout
        views: dict = {}
        while time.monotonic() < deadline:
            views = self.views()
            if _settled(views, {n.name for n in self.live()}, every_node_serves):
                return views
            time.sleep(0.2)
        summary = {
            name: view if isinstance(view, str) else {"serving": len(view["serving"]), "owners": sorted(set(view["owners"].values()), key=str)}
            for name, view in views.items()
        }
        raise AssertionError(f"not settled within {timeout} s: {summary}\n{self.logs()}")

    def owner_of(self, partition: int) -> str:
        view = self.live()[0].status()
        return view["owners"][str(partition)]

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                try:
                    node.stop()
                except Exception:
                    pass  # already killed above: the test's own failure is the one to see


def _settled(views: dict, live: set[str], every_node_serves: bool) -> bool:
    if set(views) != live or any(isinstance(v, str) for v in views.values()):
        return False
    # Balanced too: every partition with its rendezvous home among the live nodes, so that
    # which node owns what is known to the test beforehand.
    names = sorted(live)
    if any(view["owners"][str(p)] != home(p, names) for view in views.values() for p in range(DEFAULT_PARTITIONS)):
        return False
    served = [p for view in views.values() for p in view["serving"]]
    if len(served) != DEFAULT_PARTITIONS or set(served) != set(range(DEFAULT_PARTITIONS)):
        return False
    if every_node_serves and not all(view["serving"] for view in views.values()):
        return False
    return all(owner in live for view in views.values() for owner in view["owners"].values())


def _tail(text: str) -> str:
    return text if len(text) <= LOG_TAIL_CHARS else "[...]\n" + text[-LOG_TAIL_CHARS:]


# -- HTTP -----------------------------------------------------------------------------------


class Client:
    """One kept-alive HTTP connection to a node."""

    def __init__(self, url: str, timeout: float = 20.0) -> None:
        parts = urlsplit(url)
        self.url = url
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def call(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """``body`` goes as JSON, or as it is if it is bytes."""
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        sent = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}", **(headers or {})}
        self._connection.request(method, path, body=data, headers=sent)
        response = self._connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._connection.close()


def get_json(url: str, path: str) -> dict:
    client = Client(url, timeout=5)
    try:
        status, body = client.call("GET", path)
    finally:
        client.close()
    assert status == 200, (url, path, status, body)
    return json.loads(body)


def rpc(url: str, binding: str, name: str, method: str, *args: object, timeout: float = 20.0) -> object:
    """An RPC's result, retried while it is not delivered (503 WorkerUnavailableError or
    ActorResetError of a read) for up to ``timeout`` seconds: only for reads."""
    deadline = time.monotonic() + timeout
    while True:
        client = Client(url)
        try:
            status, body = client.call("POST", f"/rpc/{binding}/{name}/{method}", {"args": list(args)})
        except (OSError, http.client.HTTPException) as exc:
            status, body = 0, repr(exc).encode()
        finally:
            client.close()
        if status == 200:
            return json.loads(body)["result"]
        if status not in (0, 503) or time.monotonic() > deadline:
            raise AssertionError(f"{url} {binding}:{name}.{method}: {status} {body[:300]!r}")
        time.sleep(0.2)


def values(url: str, names: list[str]) -> dict[str, int]:
    return {name: rpc(url, "COUNTERS", name, "value") for name in names}


def outcome_of(status: int, body: bytes) -> str:
    """``acked``, ``not_delivered`` (nothing ran: WorkerUnavailableError) or ``unknown``."""
    if status == 200:
        return "acked"
    if status == 503:
        try:
            kind = json.loads(body).get("type")
        except ValueError:
            kind = None
        if kind == "WorkerUnavailableError":
            return "not_delivered"
    return "unknown"


# -- load -----------------------------------------------------------------------------------


@dataclass
class LoadResult:
    acked: Counter = field(default_factory=Counter)  # name -> acknowledged increments
    unknown: Counter = field(default_factory=Counter)  # name -> calls of unknown outcome
    not_delivered: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)  # (status, error type) -> count
    acked_at: list[float] = field(default_factory=list)  # time.monotonic() of each ack
    # every call not acknowledged: (node url, name, status or error, message, seconds it took)
    failures: list[tuple[str, str, object, str, float]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"acked {sum(self.acked.values())}, unknown {sum(self.unknown.values())},"
            f" not delivered {sum(self.not_delivered.values())}, answers {dict(self.answers)}"
        )


class Load:
    """Increments ``names`` from ``connections`` threads, each starting on a node of its own
    (round-robin over the live nodes) and moving to the next live node after a connection
    error. ``halfway`` is set once half of the calls were answered, ``done`` once all were."""

    def __init__(self, cluster: RoostCluster, names: list[str], *, connections: int, per_connection: int) -> None:
        self.cluster = cluster
        self.names = names
        self.connections = connections
        self.per_connection = per_connection
        self.result = LoadResult()
        self.halfway = threading.Event()
        self.done = threading.Event()
        self._answered = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(connections)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float = 120.0) -> LoadResult:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), f"the load did not finish within {timeout} s: {self.result.summary()}"
        return self.result

    def run(self) -> LoadResult:
        return self.start().join()

    def _client(self, index: int) -> Client:
        urls = self.cluster.urls()
        return Client(urls[index % len(urls)])

    def _run(self, index: int) -> None:
        client = self._client(index)
        half = self.connections * self.per_connection // 2
        r = self.result
        for i in range(self.per_connection):
            name = self.names[(index * 7 + i) % len(self.names)]
            started = time.monotonic()
            body = b""
            try:
                status, body = client.call("POST", f"/rpc/COUNTERS/{name}/increment")
            except ConnectionRefusedError:
                outcome, key = "not_delivered", ("refused", "")
            except (OSError, http.client.HTTPException) as exc:
                outcome, key = "unknown", (0, type(exc).__name__)
            else:
                outcome = outcome_of(status, body)
                key = (status, "" if status == 200 else _error_type(body))
            with self._lock:
                r.answers[key] += 1
                if outcome != "acked":
                    message = body[:300].decode(errors="replace")
                    r.failures.append((client.url, name, key, message, round(time.monotonic() - started, 2)))
                if outcome == "acked":
                    r.acked[name] += 1
                    r.acked_at.append(time.monotonic())
                elif outcome == "unknown":
                    r.unknown[name] += 1
                else:
                    r.not_delivered[name] += 1
                self._answered += 1
                if self._answered >= half:
                    self.halfway.set()
                if self._answered == self.connections * self.per_connection:
                    self.done.set()
            if key[0] in (0, "refused"):
                client.close()
                index += 1
                client = self._client(index)
        client.close()


def _error_type(body: bytes) -> str:
    try:
        return str(json.loads(body).get("type"))
    except (ValueError, AttributeError):
        return body[:60].decode(errors="replace")


def assert_calm_again(cluster: RoostCluster, names: list[str]) -> dict[str, int]:
    """Once a fault has settled: a calm load through every node counts each increment
    exactly, read back through every node. The values before that load."""
    before = values(cluster.live()[0].url, names)
    again = Load(cluster, names, connections=6, per_connection=50).run()
    assert again.unknown == Counter() and again.not_delivered == Counter(), f"{again.summary()}\n{cluster.logs()}"
    for node in cluster.live():
        assert values(node.url, names) == {n: before[n] + again.acked[n] for n in names}, node.name
    return before


def check_counts(found: dict[str, int], result: LoadResult) -> list[str]:
    """Each counter holds at least its acknowledged increments and at most those plus its
    calls of unknown outcome; the counters that do not, with their figures."""
    wrong = []
    for name, value in found.items():
        low, high = result.acked[name], result.acked[name] + result.unknown[name]
        if not low <= value <= high:
            wrong.append(f"{name}: found {value}, acked {low}, unknown {result.unknown[name]}")
    return wrong
