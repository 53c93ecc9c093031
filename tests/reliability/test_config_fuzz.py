"""Bad ``roost.toml`` files: each one is refused with a ``ConfigError`` whose message names the
file and the problem, never another exception; ``roost serve`` exits 2 with one line.

Two generators: arbitrary text (mostly not TOML at all), and a valid configuration with one
random mutation (a value replaced by another of any type, a key deleted, an unknown key
added) written back as TOML.
"""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_process import ROOST

from actors import MessageBatch
from runtime import Actor, load_config
from runtime.errors import ConfigError

EXAMPLES = int(os.environ.get("ROOST_CONFIG_FUZZ_EXAMPLES", "150"))
NAMES_TABLE_AND_KEY = re.compile(r": \[.+?\] key '[^']+'")


class Counter(Actor):
    async def fetch(self, request):
        return {}


class Consumer(Actor):
    async def queue(self, batch: MessageBatch) -> None:
        return None


VALID = {
    "data_dir": "data",
    "vars": {"SECRET": "s"},
    "durable_objects": {"bindings": [{"name": "COUNTERS", "class_name": "test_config_fuzz:Counter"}]},
    "queues": {
        "producers": [{"queue": "jobs", "binding": "JOBS"}],
        "consumers": [
            {
                "queue": "jobs",
                "class_name": "test_config_fuzz:Consumer",
                "max_batch_size": 10,
                "max_batch_timeout": 5,
                "max_retries": 3,
                "dead_letter_queue": "jobs-dlq",
                "max_concurrency": 1,
                "retry_delay": 0,
            }
        ],
    },
    "routes": [{"path": "/shop", "binding": "COUNTERS", "name": "front"}],
    "webhooks": [{"provider": "stripe", "queue": "jobs", "secret": "SECRET"}],
}

SCALARS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "jobs", "COUNTERS", "SECRET", "test_config_fuzz:Nope", "nope:Counter", "a b", "/x/"]
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 101, 86401, 10**9]),
    st.floats(),
    st.booleans(),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def toml_value(value: object) -> str:
    """``value`` as a TOML value (inline tables and arrays, so any shape fits on one line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(
        f"\\u{ord(ch):04x}" if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text
    )
    return f'"{escaped}"'


def toml_document(config: dict) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in config.items())


@st.composite
def mutated(draw) -> tuple[dict, str]:
    """A copy of VALID with one mutation, and the key it touched."""
    config = copy.deepcopy(VALID)
    node: object = config
    key: object = None
    parent: object = None
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        parent, node = node, node[key]
        if not isinstance(node, (dict, list)) or not node or draw(st.booleans()):
            break
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[key] = draw(VALUES)
    elif action == "delete":
        del parent[key]
    else:
        target = node if isinstance(node, dict) else parent if isinstance(parent, dict) else None
        if target is None:
            parent[key] = draw(VALUES)
        else:
            key = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in target))
            target[key] = draw(VALUES)
    return config, str(key)


def check_refused_or_loaded(path: Path) -> ConfigError | None:
    """Load ``path``: a Config, or a ConfigError naming the file; anything else fails the test."""
    try:
        load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(str(path)), message
        assert "Traceback" not in message and len(message) > len(str(path)) + 5, message
        return exc
    return None


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")))
def test_arbitrary_text_is_refused_clearly_or_loaded(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("config") / "roost.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    check_refused_or_loaded(path)


@FUZZ
@given(mutation=mutated())
def test_a_mutated_config_is_refused_naming_the_problem_or_loaded(tmp_path_factory, mutation):
    config, key = mutation
    path = tmp_path_factory.mktemp("config") / "roost.toml"
    path.write_text(toml_document(config))
    error = check_refused_or_loaded(path)
    if error is not None:
        # The message names the key the mutation touched, or the table and key it broke.
        message = str(error)
        assert key in message or repr(key) in message or NAMES_TABLE_AND_KEY.search(message), (key, message)


def test_the_valid_config_loads(tmp_path):
    path = tmp_path / "roost.toml"
    path.write_text(toml_document(VALID))
    assert check_refused_or_loaded(path) is None


@pytest.mark.parametrize(
    "document, problem",
    [
        ("data_dir = \n", "not valid TOML"),
        ('data_dir = "d"\n[[durable_objects.bindings]]\nname = 7\nclass_name = "x:Y"\n', "name"),
    ],
)
def test_roost_serve_refuses_a_bad_file_with_exit_2_and_one_line(tmp_path, document, problem):
    (tmp_path / "roost.toml").write_text(document)
    done = subprocess.run(
        [ROOST, "serve", "--port", "0"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.startswith("roost: bad configuration: ")
    assert done.stderr.count("\n") == 1 and problem in done.stderr and "Traceback" not in done.stderr
