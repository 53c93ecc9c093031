"""Configuration accepted by ``open_runtime``: dicts shaped like roost.toml and keywords."""

from __future__ import annotations

import pytest

from runtime import Actor, load_config, open_runtime
from runtime.errors import ConfigError


class Counter(Actor):
    async def hello(self):
        return self.env.GREETING


async def test_dict_config_with_import_paths(data_dir):
    config = {
        "data_dir": data_dir,
        "vars": {"GREETING": "hi"},
        "durable_objects": {"bindings": [{"name": "COUNTERS", "class_name": "examples.counter:Counter"}]},
    }
    async with open_runtime(config, actors={"OTHER": Counter}) as rt:
        assert await rt.namespace("COUNTERS").get_by_name("a").increment() == 1
        assert await rt.namespace("OTHER").get_by_name("a").hello() == "hi"


async def test_load_config_reads_toml_relative_to_the_file(tmp_path, monkeypatch):
    path = tmp_path / "roost.toml"
    path.write_text(
        'data_dir = "state"\n'
        '[vars]\nGREETING = "from file"\nOTHER = "kept"\n'
        '[[durable_objects.bindings]]\nname = "COUNTERS"\nclass_name = "examples.counter:Counter"\n'
    )
    monkeypatch.setenv("GREETING", "from environment")
    config = load_config(path)
    assert config.data_dir == str(tmp_path / "state")
    assert config.vars == {"GREETING": "from environment", "OTHER": "kept"}
    async with open_runtime(config) as rt:
        assert await rt.namespace("COUNTERS").get_by_name("x").increment(5) == 5


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"vars": {"X": 1}}, "[vars] key 'X': expected a string"),
        ({"durable_objects": {"bindings": [{"name": "A"}]}}, "key 'class_name' is required"),
        (
            {"durable_objects": {"bindings": [{"name": "A", "class_name": "nowhere.mod:Thing"}]}},
            "cannot import 'nowhere.mod:Thing'",
        ),
        (
            {"durable_objects": {"bindings": [{"name": "A", "class_name": "examples.counter:Nope"}]}},
            "has no attribute 'Nope'",
        ),
        (
            {
                "durable_objects": {"bindings": [{"name": "A", "class_name": "examples.counter:Counter"}]},
                "vars": {"A": "clash"},
            },
            "binding 'A' is already bound",
        ),
    ],
)
async def test_bad_config_is_refused_with_its_table_and_key(data_dir, config, message):
    with pytest.raises(ConfigError) as info:
        async with open_runtime(config, data_dir=data_dir):
            pass
    assert message in str(info.value)
    assert str(info.value).startswith("<config>:")


async def test_a_class_that_is_not_an_actor_is_refused(data_dir):
    with pytest.raises(ConfigError, match="not a subclass of runtime.Actor"):
        async with open_runtime(data_dir=data_dir, actors={"BAD": dict}):
            pass


async def test_data_dir_is_required():
    with pytest.raises(ConfigError, match="data_dir"):
        async with open_runtime(actors={"C": Counter}):
            pass


@pytest.mark.parametrize(("option", "value"), [("idle_timeout", 0), ("max_inbox", -1), ("idle_timeout", "x")])
async def test_bad_runtime_options_are_refused(data_dir, option, value):
    with pytest.raises(ValueError, match=option):
        async with open_runtime(data_dir=data_dir, **{option: value}):
            pass


QUEUES_TOML = """
data_dir = "data"
[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "examples.counter:Counter"
[[queues.producers]]
queue = "external-api-queue"
binding = "EXTERNAL_API_QUEUE"
[[queues.consumers]]
queue = "external-api-queue"
class_name = "examples.counter:Counter"
max_batch_size = 25
max_batch_timeout = 2.5
max_retries = 5
dead_letter_queue = "external-api-dlq"
max_concurrency = 2
retry_delay = 10
"""


def test_queue_tables_with_their_settings_and_defaults(tmp_path):
    path = tmp_path / "roost.toml"
    path.write_text(QUEUES_TOML)
    config = load_config(path)
    queue = config.queues["external-api-queue"]
    assert queue.binding == "EXTERNAL_API_QUEUE"
    assert queue.consumer.__name__ == "Counter"
    assert (queue.max_batch_size, queue.max_batch_timeout, queue.max_retries) == (25, 2.5, 5)
    assert (queue.dead_letter_queue, queue.max_concurrency, queue.retry_delay) == ("external-api-dlq", 2, 10)
    dlq = config.queues["external-api-dlq"]  # named only as a dead-letter queue: exists too
    assert dlq.consumer is None and dlq.binding is None
    assert (dlq.max_batch_size, dlq.max_batch_timeout, dlq.max_retries, dlq.max_concurrency) == (10, 5, 3, 1)


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        (
            "max_batch_size = 25",
            "max_batch_size = 25\nmax_batch_sise = 3",
            "[queues.consumers[0]] unknown key 'max_batch_sise'",
        ),
        (
            "max_batch_size = 25",
            'max_batch_size = "25"',
            "[queues.consumers[0]] key 'max_batch_size': expected an integer",
        ),
        (
            "max_batch_size = 25",
            "max_batch_size = 101",
            "[queues.consumers[0]] key 'max_batch_size': 101 is out of range 1..100",
        ),
        (
            "max_batch_timeout = 2.5",
            "max_batch_timeout = 61",
            "key 'max_batch_timeout': 61 is out of range 0..60",
        ),
        ("max_retries = 5", "max_retries = -1", "key 'max_retries': -1 is out of range 0..100"),
        ("max_retries = 5", "max_retries = true", "key 'max_retries': expected an integer"),
        (
            'class_name = "examples.counter:Counter"\nmax_batch_size',
            'class_name = "examples.nowhere:Counter"\nmax_batch_size',
            "[queues.consumers[0]] key 'class_name': cannot import 'examples.nowhere:Counter'",
        ),
        (
            '[[queues.consumers]]\nqueue = "external-api-queue"',
            '[[queues.consumers]]\nqueue = "unknown-queue"',
            "[queues.consumers[0]] key 'queue': queue 'unknown-queue' is not declared",
        ),
        ('binding = "EXTERNAL_API_QUEUE"', 'binding = "COUNTERS"', "binding 'COUNTERS' is already bound"),
        ('binding = "EXTERNAL_API_QUEUE"', 'binding = "not valid!"', "is not a valid binding name"),
        (
            'queue = "external-api-queue"\nbinding',
            'queue = "bad queue"\nbinding',
            "is not a valid queue name",
        ),
        (
            'dead_letter_queue = "external-api-dlq"',
            'dead_letter_queue = "external-api-queue"',
            "its own dead-letter queue",
        ),
        ('data_dir = "data"', "data_dir = 5", "key 'data_dir': expected a string"),
        ('data_dir = "data"', 'data_dir = "data"\nsurprise = 1', "unknown key 'surprise'"),
        (
            'name = "COUNTERS"',
            'name = "COUNTERS"\nclass = "x"',
            "[durable_objects.bindings[0]] unknown key 'class'",
        ),
        ('data_dir = "data"', 'data_dir = "data"\n[vars]\nX = 1', "[vars] key 'X': expected a string"),
        ('data_dir = "data"', "data_dir = [", "not valid TOML"),
    ],
)
def test_each_config_mistake_names_file_table_and_key(tmp_path, replace, by, message):
    assert replace in QUEUES_TOML
    path = tmp_path / "roost.toml"
    path.write_text(QUEUES_TOML.replace(replace, by, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_routes_send_a_path_to_one_actor(tmp_path):
    path = tmp_path / "roost.toml"
    base = '[[durable_objects.bindings]]\nname = "SHOP"\nclass_name = "examples.counter:Counter"\n'
    path.write_text(base + '[[routes]]\npath = "/orders"\nbinding = "SHOP"\nname = "front"\n')
    [route] = load_config(path).routes
    assert (route.path, route.binding, route.name) == ("/orders", "SHOP", "front")
    for bad, message in [
        ('path = "orders"\nbinding = "SHOP"\nname = "f"', "must start with '/'"),
        ('path = "/queues/x"\nbinding = "SHOP"\nname = "f"', "Roost's own"),
        ('path = "/o"\nbinding = "NOPE"\nname = "f"', "no durable object binding 'NOPE'"),
        ('path = "/o"\nbinding = "SHOP"', "key 'name' is required"),
    ]:
        path.write_text(base + "[[routes]]\n" + bad + "\n")
        with pytest.raises(ConfigError, match=message):
            load_config(path)
