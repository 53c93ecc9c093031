"""``[[triggers.crons]]`` in roost.toml and ``triggers=[...]`` of ``open_runtime``: every
mistake is a ``ConfigError`` naming the file, the table and the key, and nothing starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import Actor, load_config, open_runtime
from runtime.errors import ConfigError


class Ticker(Actor):
    async def scheduled(self, event) -> None:
        return None


class NoHandler(Actor):
    async def fetch(self, request):
        return {}


class SyncHandler(Actor):
    def scheduled(self, event) -> None:  # not async: refused
        return None


HEAD = """data_dir = "data"
[[durable_objects.bindings]]
name = "TICKS"
class_name = "test_cron_config:Ticker"
[[durable_objects.bindings]]
name = "PLAIN"
class_name = "test_cron_config:NoHandler"
[[durable_objects.bindings]]
name = "SYNC"
class_name = "test_cron_config:SyncHandler"
"""


def toml(tmp_path, triggers: str):
    path = tmp_path / "roost.toml"
    path.write_text(HEAD + triggers)
    return path


def test_a_good_table_loads(tmp_path):
    path = toml(
        tmp_path,
        '[[triggers.crons]]\ncron = "*/5 * * * *"\nbinding = "TICKS"\nname = "tick"\n'
        '[[triggers.crons]]\ncron = "59 23 LW * *"\nbinding = "TICKS"\nname = "tick"\n',
    )
    config = load_config(path)
    assert [(t.cron.text, t.binding, t.name) for t in config.triggers] == [
        ("*/5 * * * *", "TICKS", "tick"),
        ("59 23 LW * *", "TICKS", "tick"),
    ]


CRON = "[[triggers.crons]]\n"


@pytest.mark.parametrize(
    "table, names",
    [
        (
            CRON + 'cron = "*/5 * * *"\nbinding = "TICKS"\nname = "a"\n',
            ["[triggers.crons[0]] key 'cron'", "4 fields; expected 5"],
        ),
        (CRON + 'cron = "0 0 * * * *"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'", "6 fields"]),
        (CRON + 'cron = "61 * * * *"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'", "minute"]),
        (CRON + 'cron = "* 24 * * *"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'", "hour"]),
        (CRON + 'cron = "* * 32 * *"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'", "day-of-month"]),
        (CRON + 'cron = "* * * 13 *"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'", "month"]),
        (CRON + 'cron = "0 0 * * 0"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'", "1-7 from Sunday"]),
        (CRON + 'cron = "0 0 * * 8"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'", "day-of-week"]),
        (CRON + 'cron = "0 0 30 2 *"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'"]),
        (CRON + 'cron = "*/0 * * * *"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'"]),
        (CRON + 'cron = "@daily"\nbinding = "TICKS"\nname = "a"\n', ["key 'cron'"]),
        (CRON + "cron = 5\nbinding = \"TICKS\"\nname = \"a\"\n", ["key 'cron'", "a string"]),
        (CRON + 'binding = "TICKS"\nname = "a"\n', ["[triggers.crons[0]] key 'cron' is required"]),
        (CRON + 'cron = "* * * * *"\nname = "a"\n', ["key 'binding' is required"]),
        (CRON + 'cron = "* * * * *"\nbinding = "TICKS"\n', ["key 'name' is required"]),
        (CRON + 'cron = "* * * * *"\nbinding = "TICKS"\nname = 3\n', ["key 'name'", "a string"]),
        (CRON + 'cron = "* * * * *"\nbinding = "NOPE"\nname = "a"\n', ["key 'binding'", "'NOPE'"]),
        (CRON + 'cron = "* * * * *"\nbinding = "PLAIN"\nname = "a"\n', ["key 'binding'", "scheduled"]),
        (CRON + 'cron = "* * * * *"\nbinding = "SYNC"\nname = "a"\n', ["key 'binding'", "scheduled"]),
        (CRON + 'cron = "* * * * *"\nbinding = "TICKS"\nname = "a"\nevery = 5\n', ["unknown key 'every'"]),
        ('[triggers]\ncrons = "* * * * *"\n', ["key 'crons'", "an array"]),
        ("[triggers]\nschedules = []\n", ["[triggers] unknown key 'schedules'"]),
        (
            CRON + 'cron = "* * * * *"\nbinding = "TICKS"\nname = "a"\n'
            + CRON + 'cron = "*  *  * * *"\nbinding = "TICKS"\nname = "a"\n',
            ["[triggers.crons[1]] key 'cron'", "given already, by [triggers.crons[0]]"],
        ),
    ],
)
def test_a_bad_table_is_a_config_error_naming_table_and_key(tmp_path, table, names):
    path = toml(tmp_path, table)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for part in names:
        assert part in message, message


@pytest.mark.parametrize(
    "triggers, names",
    [
        ([{"cron": "* * * *", "binding": "TICKS", "name": "a"}], ["[triggers[0]] key 'cron'"]),
        ([{"cron": "* * * * *", "binding": "NOPE", "name": "a"}], ["[triggers[0]] key 'binding'"]),
        ([{"cron": "* * * * *", "binding": "TICKS"}], ["[triggers[0]] key 'name' is required"]),
        ("* * * * *", ["key 'triggers'", "a list"]),
    ],
)
async def test_bad_triggers_given_to_open_runtime_refuse_to_start(data_dir, triggers, names):
    with pytest.raises(ConfigError) as caught:
        async with open_runtime(data_dir=data_dir, actors={"TICKS": Ticker}, triggers=triggers):
            pytest.fail("the runtime started")
    for part in names:
        assert part in str(caught.value)


@pytest.mark.parametrize(
    "triggers, names",
    [
        ("x", "key 'triggers': expected a table"),
        ([], "key 'triggers': expected a table"),
        ({"crons": [7]}, "[triggers] key 'crons[0]': expected a table"),
        ({"crons": {"cron": "* * * * *"}}, "[triggers] key 'crons': expected an array of tables"),
    ],
)
async def test_a_triggers_value_of_another_shape_is_refused(data_dir, triggers, names):
    with pytest.raises(ConfigError) as caught:
        async with open_runtime({"data_dir": data_dir, "triggers": triggers}):
            pytest.fail("the runtime started")
    assert names in str(caught.value)


def test_roost_serve_refuses_a_bad_cron_with_exit_2_and_one_line(tmp_path):
    toml(tmp_path, CRON + 'cron = "*/5 * * *"\nbinding = "TICKS"\nname = "a"\n')
    roost = str(Path(sys.executable).parent / "roost")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run(
        [roost, "serve", "--port", "0"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "[triggers.crons[0]] key 'cron'" in done.stderr
