"""RPC through stubs: copying, ordering, errors, method rules (API.md section 2)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runtime import (
    Actor,
    ActorResetError,
    DataCloneError,
    MethodNotFoundError,
    RemoteError,
    open_runtime,
)


class AppError(Exception):
    """Importable and constructible from its message: arrives as itself."""


class Echo(Actor):
    async def echo(self, *args, **kwargs):
        return [list(args), kwargs]

    async def same(self, value):
        return value

    async def big(self):
        return 2**64

    async def mutate(self, value: dict) -> dict:
        value["touched"] = True
        return value

    async def bad_result(self):
        return {1, 2}

    async def fail_builtin(self):
        raise KeyError("missing")

    async def fail_app(self):
        raise AppError("app went wrong")

    async def fail_local(self):
        class Local(Exception):
            pass

        raise Local("cannot travel")

    async def fail_roost(self):
        raise ActorResetError("on purpose")

    def sync_method(self):
        return 1

    async def _private(self):
        return 1

    async def who(self):
        return self.id.name

    async def log(self, item):
        seen = await self.storage.get("seen", [])
        seen.append(item)
        await self.storage.put("seen", seen)

    async def seen(self):
        return await self.storage.get("seen", [])


@pytest.fixture
async def rt(data_dir):
    async with open_runtime(data_dir=data_dir, actors={"ECHO": Echo}) as runtime:
        yield runtime


async def test_arguments_and_results_are_copies(rt):
    stub = rt.namespace("ECHO").get_by_name("a")
    original = {"nested": [1, 2]}
    result = await stub.mutate(original)
    assert result == {"nested": [1, 2], "touched": True}
    assert original == {"nested": [1, 2]}


async def test_supported_values_round_trip(rt):
    stub = rt.namespace("ECHO").get_by_name("a")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    args, kwargs = await stub.echo(None, True, 7, 1.5, "s", b"b", (1, 2), {"k": [1]}, when=when)
    assert args == [None, True, 7, 1.5, "s", b"b", [1, 2], {"k": [1]}]
    assert kwargs["when"] == when


async def test_plain_scalars_arrive_equal_and_the_limits_of_a_copy_still_hold(rt):
    stub = rt.namespace("ECHO").get_by_name("a")
    for value in (None, True, False, 0, -(2**63), 2**64 - 1, 1.5, float("inf"), "", "ascii", "ünï"):
        assert await stub.same(value) == value
        assert type(await stub.same(value)) is type(value)
    assert await stub.echo(1, "x", None, 2.5, True) == [[1, "x", None, 2.5, True], {}]
    for unclonable in (2**64, -(2**63) - 1, "lone \ud800 surrogate"):
        with pytest.raises(DataCloneError) as info:
            await stub.same(unclonable)
        assert info.value.remote is False
    with pytest.raises(DataCloneError) as info:
        await stub.big()
    assert info.value.remote is True


async def test_unclonable_argument_raises_in_caller_before_delivery(rt):
    stub = rt.namespace("ECHO").get_by_name("a")
    with pytest.raises(DataCloneError) as info:
        await stub.log({1, 2})
    assert info.value.remote is False
    assert await stub.seen() == []
    with pytest.raises(DataCloneError):
        await stub.echo(datetime(2026, 1, 1))  # naive datetimes cannot travel


async def test_unclonable_result_raises_remote_data_clone_error(rt):
    with pytest.raises(DataCloneError) as info:
        await rt.namespace("ECHO").get_by_name("a").bad_result()
    assert info.value.remote is True


async def test_errors_arrive_as_their_class_or_remote_error(rt):
    stub = rt.namespace("ECHO").get_by_name("a")
    with pytest.raises(KeyError) as builtin:
        await stub.fail_builtin()
    assert builtin.value.remote is True and builtin.value.args == ("missing",)
    with pytest.raises(AppError, match="app went wrong") as app:
        await stub.fail_app()
    assert app.value.remote is True
    with pytest.raises(RemoteError) as remote:
        await stub.fail_local()
    assert remote.value.remote is True
    assert remote.value.remote_type.endswith("Local")
    assert remote.value.remote_message == "cannot travel"
    with pytest.raises(ActorResetError, match="on purpose") as roost:
        await stub.fail_roost()
    assert roost.value.remote is True


@pytest.mark.parametrize("name", ["missing", "_private", "sync_method", "alarm", "on_start"])
async def test_only_public_async_methods_are_callable(rt, name):
    with pytest.raises(MethodNotFoundError) as info:
        await getattr(rt.namespace("ECHO").get_by_name("a"), name)()
    assert info.value.remote is True


async def test_named_actor_knows_its_name(rt):
    assert await rt.namespace("ECHO").get_by_name("alice").who() == "alice"


async def test_tuple_dict_keys_round_trip_as_tuples(rt):
    stub = rt.namespace("ECHO").get_by_name("a")
    args, kwargs = await stub.echo({(1, (2, 3)): "v"}, nested=[(1, 2)])
    assert args == [{(1, (2, 3)): "v"}]
    assert kwargs == {"nested": [[1, 2]]}
