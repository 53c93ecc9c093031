"""Identities and addressing (API.md section 2)."""

from __future__ import annotations

import pytest

from runtime import Actor, ActorId, open_runtime


class Thing(Actor):
    async def name(self):
        return self.ctx.id.name

    async def touch(self):
        await self.storage.put("touched", True)


async def test_id_from_name_is_deterministic_across_restarts(data_dir):
    async with open_runtime(data_dir=data_dir, actors={"THINGS": Thing}) as rt:
        first = rt.namespace("THINGS").id_from_name("alice")
    async with open_runtime(data_dir=data_dir, actors={"THINGS": Thing}) as rt:
        again = rt.namespace("THINGS").id_from_name("alice")
        other = rt.namespace("THINGS").id_from_name("bob")
    assert first == again and hash(first) == hash(again)
    assert first != other
    assert str(first) == first.hex and len(first.hex) == 64
    assert first.hex == first.hex.lower() and int(first.hex, 16) >= 0
    assert first.name == "alice"


async def test_unique_ids_differ_and_have_no_name(data_dir):
    async with open_runtime(data_dir=data_dir, actors={"THINGS": Thing}) as rt:
        ns = rt.namespace("THINGS")
        ids = {ns.new_unique_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.name is None for i in ids)


async def test_id_from_string_round_trips_and_validates(data_dir):
    async with open_runtime(data_dir=data_dir, actors={"A": Thing, "B": Thing}) as rt:
        a, b = rt.namespace("A"), rt.namespace("B")
        made = a.new_unique_id()
        parsed = a.id_from_string(str(made))
        assert parsed == made
        assert isinstance(parsed, ActorId)
        for bad in ["", "xyz", "0" * 63, "g" * 64, made.hex + "00"]:
            with pytest.raises(ValueError):
                a.id_from_string(bad)
        with pytest.raises(ValueError, match="not made by namespace"):
            b.id_from_string(made.hex)
        with pytest.raises(ValueError):
            b.get(made)
        with pytest.raises(ValueError):
            a.id_from_string(made.hex.upper()[:-1] + "Z")


async def test_stub_creation_does_no_io_and_instance_starts_on_first_event(data_dir):
    started = []

    class Watched(Actor):
        async def on_start(self):
            started.append(self.id.name)

        async def hello(self):
            return "hi"

    async with open_runtime(data_dir=data_dir, actors={"W": Watched}) as rt:
        stub = rt.namespace("W").get_by_name("x")
        assert stub.id.name == "x"
        assert started == [] and rt.statistics()["live_actors"] == 0
        assert await stub.hello() == "hi"
        assert started == ["x"]


async def test_name_survives_eviction_and_restart(data_dir):
    from runtime.testing import evict

    async with open_runtime(data_dir=data_dir, actors={"THINGS": Thing}) as rt:
        ns = rt.namespace("THINGS")
        stub = ns.get_by_name("carol")
        await stub.touch()
        await evict(stub)
        # An id parsed from its hex does not know the name; the actor does, from its data.
        by_hex = ns.get(ns.id_from_string(stub.id.hex))
        assert by_hex.id.name is None
        assert await by_hex.name() == "carol"
    async with open_runtime(data_dir=data_dir, actors={"THINGS": Thing}) as rt:
        ns = rt.namespace("THINGS")
        assert await ns.get(ns.id_from_string(stub.id.hex)).name() == "carol"


async def test_env_exposes_bindings_by_attribute_and_key(data_dir):
    async with open_runtime(data_dir=data_dir, actors={"THINGS": Thing}, vars={"GREETING": "hello"}) as rt:
        assert rt.env.THINGS is rt.env["THINGS"]
        assert rt.env.GREETING == "hello" and rt.env["GREETING"] == "hello"
        with pytest.raises(AttributeError, match="NOPE"):
            _ = rt.env.NOPE
        with pytest.raises(KeyError):
            rt.env["NOPE"]
        with pytest.raises(KeyError, match="NOPE"):
            rt.namespace("NOPE")


async def test_a_name_over_the_limit_is_refused_over_python_and_http(data_dir):
    import httpx

    from runtime.testing import list_actor_ids

    async with open_runtime(data_dir=data_dir, actors={"THINGS": Thing}) as rt:
        ns = rt.namespace("THINGS")
        longest = "é" * 1024  # 2,048 bytes of UTF-8: the limit, as for a storage key
        assert await ns.get_by_name(longest).name() == longest
        await ns.get_by_name(longest).touch()
        with pytest.raises(ValueError, match="2049 bytes UTF-8, over the limit of 2048"):
            ns.get_by_name(longest + "x")
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            for path in (f"/rpc/THINGS/{'n' * 10_000}/name", f"/actors/THINGS/{'n' * 10_000}/"):
                response = await http.post(path)
                assert response.status_code == 400, response.text
                assert "over the limit of 2048" in response.json()["error"]
        assert [actor_id.name for actor_id in await list_actor_ids(ns)] == [longest]
