"""``roost serve`` as a real subprocess on a free loopback port: serving, SIGTERM, restart."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOST = str(Path(sys.executable).with_name("roost"))

APP = """
import trio
from runtime import Actor, Response

class Counter(Actor):
    async def increment(self, by: int = 1) -> int:
        n = await self.storage.get("n", 0) + by
        await self.storage.put("n", n)
        return n

    async def fetch(self, request):
        if request.path == "/slow":
            await trio.sleep(1)
            return Response({"value": await self.increment()})
        return Response({"value": await self.storage.get("n", 0)})
"""

CONFIG = """
data_dir = "state"
[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "serve_app:Counter"
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "serve_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "roost.toml").write_text(textwrap.dedent(CONFIG))
    return tmp_path


class Server:
    """A running ``roost serve`` and the base URL it printed."""

    def __init__(self, cwd: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [ROOST, "serve", "--port", "0", *extra],
            cwd=cwd,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            found = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found.group(1)
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.process.kill()
        raise AssertionError("roost serve did not start:\n" + "".join(self.lines))

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)


def test_serve_persist_sigterm_restart(app_dir: Path) -> None:
    server = Server(app_dir)
    try:
        with httpx.Client(base_url=server.url) as client:
            for expected in (1, 2, 3):
                response = client.post("/rpc/COUNTERS/alice/increment")
                assert response.json() == {"result": expected}
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        assert server.stop() == 0
    log = "".join(server.lines)
    assert "roost.toml" in log and "state" in log
    assert "Traceback" not in log
    again = Server(app_dir)
    try:
        with httpx.Client(base_url=again.url) as client:
            assert client.get("/actors/COUNTERS/alice/").json() == {"value": 3}
    finally:
        assert again.stop(signal.SIGINT) == 0


def test_sigterm_lets_in_flight_requests_finish(app_dir: Path) -> None:
    server = Server(app_dir)
    results: list[httpx.Response] = []

    def slow_request() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            results.append(client.get("/actors/COUNTERS/bob/slow"))

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)  # the request is in flight, inside its one-second handler
    assert server.stop() == 0
    worker.join(timeout=30)
    assert [r.status_code for r in results] == [200]
    assert results[0].json() == {"value": 1}
    again = Server(app_dir)
    try:
        with httpx.Client(base_url=again.url) as client:
            assert client.get("/actors/COUNTERS/bob/").json() == {"value": 1}
    finally:
        again.stop()


def test_a_second_signal_exits_at_once(app_dir: Path) -> None:
    server = Server(app_dir)
    outcome: list[str] = []

    def slow_request() -> None:
        try:
            httpx.get(server.url + "/actors/COUNTERS/c/slow", timeout=30)
            outcome.append("answered")
        except httpx.HTTPError:
            outcome.append("cut off")  # the process is gone: the expected end of this request

    worker = threading.Thread(target=slow_request, daemon=True)
    worker.start()
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    assert server.stop(signal.SIGTERM) == 3
    assert "exiting now" in "".join(server.lines)
    worker.join(timeout=30)
    assert outcome == ["cut off"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "[[durable_objects.bindings]]\nname = 'X'\n",
            "[durable_objects.bindings[0]] key 'class_name' is required",
        ),
        ("data_dir = 5\n", "key 'data_dir': expected a string"),
        ("this is not toml\n", "not valid TOML"),
    ],
)
def test_bad_config_exits_non_zero_with_a_message(tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "roost.toml").write_text(config)
    done = subprocess.run([ROOST, "serve"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "roost.toml" in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [ROOST, "serve", "--config", "nope.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "nope.toml: cannot read" in done.stderr


def test_environment_overrides_vars(app_dir: Path) -> None:
    (app_dir / "serve_app.py").write_text(
        textwrap.dedent(APP)
        + "\n\nclass Greeter(Actor):\n    async def greet(self):\n        return self.env.GREETING\n"
    )
    (app_dir / "roost.toml").write_text(
        textwrap.dedent(CONFIG)
        + '\n[vars]\nGREETING = "from file"\n'
        + '[[durable_objects.bindings]]\nname = "G"\nclass_name = "serve_app:Greeter"\n'
    )
    os.environ["GREETING"] = "from environment"
    try:
        server = Server(app_dir)
    finally:
        del os.environ["GREETING"]
    try:
        assert httpx.post(server.url + "/rpc/G/g/greet").json() == {"result": "from environment"}
    finally:
        server.stop()


@pytest.fixture
def root_logger():
    """``roost serve`` replaces the root logger's handlers: put them back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_serve_passes_its_timeouts_to_the_runtime(app_dir: Path, monkeypatch, root_logger) -> None:
    from runtime.serving import cli

    seen = {}

    async def fake_serve_forever(config, **options) -> None:
        seen.update(options)

    monkeypatch.chdir(app_dir)
    monkeypatch.setattr(cli, "serve_forever", fake_serve_forever)
    assert cli.main(["serve", "--idle-timeout", "5", "--request-timeout", "7"]) == 0
    assert seen["idle_timeout"] == 5 and seen["request_timeout"] == 7


@pytest.mark.parametrize("flag", ["--idle-timeout", "--request-timeout"])
def test_a_timeout_that_is_not_positive_is_refused(flag: str, capsys) -> None:
    from runtime.serving import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", flag, "0"])
    assert exited.value.code == 2
    assert f"{flag} must be a positive number of seconds" in capsys.readouterr().err
