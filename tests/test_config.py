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
