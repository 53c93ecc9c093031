"""Actor storage through the public API (API.md section 3): values, limits, list order and
bounds, long keys, transactions, delete_all, sync, alarms' stored times, atomicity, restarts.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import pytest
import trio
import trio.testing

from runtime import (
    Actor,
    ActorResetError,
    DataCloneError,
    StorageLimitError,
    now,
    open_runtime,
)
from runtime.testing import evict, inject_commit_failure, list_actor_ids, run_in_actor

MAX_KEY_BYTES = 2048
MAX_VALUE_BYTES = 131072
MAX_KEYS_PER_CALL = 128
# msgpack's bin 32 header: a bytes value of n >= 65536 bytes encodes to n + 5 bytes.
BIN32_HEADER_BYTES = 5
# Alarms are set far in the future so that no alarm handler could ever run in these tests.
FAR_FUTURE_SECONDS = 10 * 365 * 86400.0


class Box(Actor):
    """An actor whose storage the tests drive through ``run_in_actor``."""


class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0)
        await self.storage.put("n", n + 1)
        return n + 1

    async def slow_increment(self) -> int:
        n = await self.storage.get("n", 0)
        await trio.sleep(0.1)
        await self.storage.put("n", n + 1)
        return n + 1

    async def value(self) -> int:
        return await self.storage.get("n", 0)


class Notes(Actor):
    async def write(self, entries: dict) -> None:
        await self.storage.put_many(entries)

    async def read_all(self) -> dict:
        return await self.storage.list()


@asynccontextmanager
async def running(data_dir):
    async with open_runtime(data_dir=data_dir, actors={"BOX": Box, "COUNTER": Counter, "NOTES": Notes}) as rt:
        yield rt


def box(rt, name: str = "a"):
    return rt.namespace("BOX").get_by_name(name)


def utf8(key: str) -> bytes:
    return key.encode("utf-8")


def expected_list(
    model: dict, *, prefix=None, start=None, start_after=None, end=None, reverse=False, limit=None
):
    """The reference semantics of ``list``: byte order, start inclusive, end exclusive."""
    keys = sorted(model, key=utf8)
    if prefix is not None:
        keys = [k for k in keys if utf8(k).startswith(utf8(prefix))]
    if start is not None:
        keys = [k for k in keys if utf8(k) >= utf8(start)]
    if start_after is not None:
        keys = [k for k in keys if utf8(k) > utf8(start_after)]
    if end is not None:
        keys = [k for k in keys if utf8(k) < utf8(end)]
    if reverse:
        keys.reverse()
    if limit is not None:
        keys = keys[:limit]
    return {k: model[k] for k in keys}


def short(key: str) -> str:
    """A readable name for a possibly 2 KB key in assertion messages."""
    data = utf8(key)
    if len(data) <= 24:
        return repr(key)
    return f"<{len(data)}B {key[:6]!r}..{key[-6:]!r}>"


def describe(kwargs: dict) -> str:
    return ", ".join(f"{k}={short(v) if isinstance(v, str) else v!r}" for k, v in kwargs.items())


async def assert_listing(storage, model: dict, cases) -> None:
    for kwargs in cases:
        got = await storage.list(**kwargs)
        want = expected_list(model, **kwargs)
        assert [short(k) for k in got] == [short(k) for k in want], describe(kwargs)
        assert list(got.items()) == list(want.items()), describe(kwargs)


# -- 1. the basic operations and their return values ------------------------------------------


async def test_get_put_round_trip_and_default(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            assert await s.get("missing") is None
            assert await s.get("missing", 42) == 42
            assert await s.put("k", {"a": [1, 2]}) is None
            assert await s.get("k") == {"a": [1, 2]}
            assert await s.get("k", "default") == {"a": [1, 2]}
            await s.put("k", "replaced")
            assert await s.get("k") == "replaced"
            await s.put("none", None)
            # A stored None is still a stored key: it lists, and delete finds it.
            assert await s.list() == {"k": "replaced", "none": None}

        await run_in_actor(box(rt), body)

        async def later(actor):
            assert await actor.storage.get("k") == "replaced"
            assert await actor.storage.delete("none") is True

        await evict(box(rt))
        await run_in_actor(box(rt), later)


async def test_get_many_returns_only_existing_keys(data_dir):
    async with running(data_dir) as rt:

        async def stored(actor):
            await actor.storage.put_many({"a": 1, "b": 2})

        await run_in_actor(box(rt), stored)
        await evict(box(rt))

        async def body(actor):
            s = actor.storage
            await s.put("c", 3)  # buffered, not yet committed
            await s.delete("b")  # stored, deleted in this event
            assert await s.get_many(["a", "b", "c", "nope"]) == {"a": 1, "c": 3}
            assert await s.get_many([]) == {}
            assert await s.get_many(iter(["c"])) == {"c": 3}

        await run_in_actor(box(rt), body)


async def test_put_many_stores_every_entry(data_dir):
    async with running(data_dir) as rt:
        entries = {f"key{i:03}": i for i in range(MAX_KEYS_PER_CALL)}

        async def body(actor):
            assert await actor.storage.put_many(entries) is None
            assert await actor.storage.get_many(list(entries)) == entries

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def after(actor):
            assert await actor.storage.list() == entries

        await run_in_actor(box(rt), after)


async def test_delete_returns_whether_the_key_existed(data_dir):
    async with running(data_dir) as rt:

        async def stored(actor):
            await actor.storage.put("durable", 1)

        await run_in_actor(box(rt), stored)
        await evict(box(rt))

        async def body(actor):
            s = actor.storage
            assert await s.delete("durable") is True  # found in LMDB
            assert await s.delete("durable") is False  # deleted earlier in this event
            assert await s.get("durable") is None
            await s.put("buffered", 2)
            assert await s.delete("buffered") is True  # found in the write buffer
            assert await s.delete("never") is False
            assert await s.list() == {}

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def after(actor):
            assert await actor.storage.get("durable") is None
            assert await actor.storage.delete("durable") is False

        await run_in_actor(box(rt), after)


async def test_delete_many_returns_how_many_existed(data_dir):
    async with running(data_dir) as rt:

        async def stored(actor):
            await actor.storage.put_many({"a": 1, "b": 2, "c": 3})

        await run_in_actor(box(rt), stored)
        await evict(box(rt))

        async def body(actor):
            s = actor.storage
            await s.put("d", 4)
            assert await s.delete_many(["a", "d", "x", "y"]) == 2
            assert await s.delete_many(["a", "d"]) == 0
            assert await s.delete_many([]) == 0
            assert await s.list() == {"b": 2, "c": 3}

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def after(actor):
            assert await actor.storage.list() == {"b": 2, "c": 3}

        await run_in_actor(box(rt), after)


async def test_list_returns_every_entry_in_order(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            await actor.storage.put_many({"b": 2, "a": 1, "c": [3]})
            listed = await actor.storage.list()
            assert list(listed.items()) == [("a", 1), ("b", 2), ("c", [3])]

        await run_in_actor(box(rt), body)


async def test_delete_all_empties_storage(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            await actor.storage.put_many({"a": 1, "b": 2})
            assert await actor.storage.delete_all() is None
            assert await actor.storage.list() == {}
            assert await actor.storage.get("a") is None

        await run_in_actor(box(rt), body)


async def test_actors_have_separate_storage(data_dir):
    async with running(data_dir) as rt:

        async def put_a(actor):
            await actor.storage.put("k", "a")

        async def read(actor):
            return await actor.storage.list()

        await run_in_actor(box(rt, "a"), put_a)
        assert await run_in_actor(box(rt, "b"), read) == {}
        assert await run_in_actor(box(rt, "a"), read) == {"k": "a"}


# -- 2. limits, bad keys and bad values -------------------------------------------------------


async def test_key_length_limit_counts_utf8_bytes(data_dir):
    ok_keys = ["k" * MAX_KEY_BYTES, "\u00e9" * 1024, "\U0001f600" * 512, "\u00e9" * 1000]
    too_long = ["k" * (MAX_KEY_BYTES + 1), "\u00e9" * 1025, "\U0001f600" * 513, "a" + "\u00e9" * 1024]
    for key in ok_keys:
        assert len(utf8(key)) <= MAX_KEY_BYTES
    for key in too_long:
        assert len(utf8(key)) > MAX_KEY_BYTES

    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            for i, key in enumerate(ok_keys):
                await s.put(key, i)
                assert await s.get(key) == i
            for key in too_long:
                for call in (
                    s.get(key),
                    s.put(key, 1),
                    s.delete(key),
                    s.get_many([key]),
                    s.put_many({key: 1}),
                    s.delete_many([key]),
                    s.list(prefix=key),
                    s.list(start=key),
                    s.list(start_after=key),
                    s.list(end=key),
                ):
                    with pytest.raises(StorageLimitError):
                        await call
            assert await s.list() == {key: i for i, key in enumerate(ok_keys)}

        await run_in_actor(box(rt), body)


def test_storage_limit_error_is_a_value_error():
    assert issubclass(StorageLimitError, ValueError)
    assert issubclass(DataCloneError, TypeError)


async def test_value_size_limit_counts_encoded_bytes(data_dir):
    largest = b"v" * (MAX_VALUE_BYTES - BIN32_HEADER_BYTES)
    too_big = b"v" * (MAX_VALUE_BYTES - BIN32_HEADER_BYTES + 1)
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put("largest", largest)
            assert await s.get("largest") == largest
            await s.put("k", "old")
            with pytest.raises(StorageLimitError):
                await s.put("k", too_big)
            with pytest.raises(StorageLimitError):
                await s.put("big-str", "s" * MAX_VALUE_BYTES)
            with pytest.raises(StorageLimitError):
                await s.put("big-list", [b"v" * 60000, b"v" * 60000, b"v" * 60000])
            assert await s.get("k") == "old"
            assert sorted(await s.list()) == ["k", "largest"]

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def after(actor):
            assert await actor.storage.get("largest") == largest
            assert await actor.storage.get("k") == "old"
            assert sorted(await actor.storage.list()) == ["k", "largest"]

        await run_in_actor(box(rt), after)


async def test_batch_calls_take_at_most_128_keys(data_dir):
    keys = [f"k{i:03}" for i in range(MAX_KEYS_PER_CALL + 1)]
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put_many({k: 1 for k in keys[:MAX_KEYS_PER_CALL]})
            with pytest.raises(StorageLimitError):
                await s.put_many({k: 2 for k in keys})
            with pytest.raises(StorageLimitError):
                await s.get_many(keys)
            with pytest.raises(StorageLimitError):
                await s.delete_many(keys)
            # Nothing of the refused calls happened: values unchanged, nothing deleted.
            assert await s.list() == {k: 1 for k in keys[:MAX_KEYS_PER_CALL]}
            assert await s.get_many(keys[:MAX_KEYS_PER_CALL]) == {k: 1 for k in keys[:MAX_KEYS_PER_CALL]}

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def after(actor):
            assert await actor.storage.list() == {k: 1 for k in keys[:MAX_KEYS_PER_CALL]}
            assert await actor.storage.delete_many(keys[:MAX_KEYS_PER_CALL]) == MAX_KEYS_PER_CALL

        await run_in_actor(box(rt), after)


async def test_put_many_over_a_limit_writes_nothing(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put("a", "old")
            bad_batches = [
                {"a": "new", "b": 1, "k" * (MAX_KEY_BYTES + 1): 1},
                {"a": "new", "b": 1, "big": b"v" * MAX_VALUE_BYTES},
                {"a": "new", "b": 1, "bad": {1, 2}},
            ]
            for batch in bad_batches:
                with pytest.raises((StorageLimitError, DataCloneError)):
                    await s.put_many(batch)
                assert await s.get("a") == "old"
                assert await s.get("b") is None
            assert await s.list() == {"a": "old"}

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def after(actor):
            assert await actor.storage.list() == {"a": "old"}

        await run_in_actor(box(rt), after)


async def test_non_str_keys_raise_type_error(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            for key in (1, b"bytes", None, ("t",)):
                for call in (s.get(key), s.put(key, 1), s.delete(key)):
                    with pytest.raises(TypeError):
                        await call
                with pytest.raises(TypeError):
                    await s.get_many(["ok", key])
                with pytest.raises(TypeError):
                    await s.delete_many(["ok", key])
            with pytest.raises(TypeError):
                await s.put_many({"ok": 1, 2: 2})
            with pytest.raises(TypeError):
                await s.list(prefix=b"a")
            with pytest.raises(TypeError):
                await s.list(start=1)
            with pytest.raises(TypeError):
                await s.get_many("ab")  # one str is not a list of keys
            assert await s.list() == {}

        await run_in_actor(box(rt), body)


async def test_unencodable_values_raise_data_clone_error_and_write_nothing(data_dir):
    naive = datetime(2024, 1, 1, 12, 0)
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put("k", "old")
            for value in ({1, 2}, object(), naive, {"nested": [naive]}, [1, {2}], 2**70):
                with pytest.raises(DataCloneError):
                    await s.put("k", value)
                with pytest.raises(DataCloneError):
                    await s.put("new", value)
                with pytest.raises(DataCloneError):
                    await s.put_many({"other": 1, "new": value})
            assert await s.list() == {"k": "old"}

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def after(actor):
            assert await actor.storage.list() == {"k": "old"}

        await run_in_actor(box(rt), after)


async def test_dict_with_tuple_keys_reads_back(data_dir):
    # A tuple dict key is packed as an array; reading the value back must give a usable dict
    # (tuple keys), not an unhashable-list error that would poison every later list().
    value = {(1, (2, 3)): "v", "plain": [(4, 5)]}
    expected = {(1, (2, 3)): "v", "plain": [[4, 5]]}
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put("ok", 1)
            await s.put("t", value)
            assert await s.get("t") == expected
            assert await s.list() == {"ok": 1, "t": expected}

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def after(actor):
            assert await actor.storage.get_many(["t"]) == {"t": expected}
            assert await actor.storage.list() == {"ok": 1, "t": expected}

        await run_in_actor(box(rt), after)


# -- 3. values are copies ---------------------------------------------------------------------


async def test_values_are_copied_on_put_and_on_get(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            value = {"list": [1, 2], "dict": {"x": 1}}
            await s.put("k", value)
            value["list"].append(3)
            value["dict"]["y"] = 2
            value["new"] = True
            assert await s.get("k") == {"list": [1, 2], "dict": {"x": 1}}

            got = await s.get("k")
            got["list"].append(99)
            got["dict"].clear()
            assert await s.get("k") == {"list": [1, 2], "dict": {"x": 1}}

            many = await s.get_many(["k"])
            many["k"]["list"].append(5)
            listed = await s.list()
            listed["k"]["dict"]["z"] = 1
            assert await s.get("k") == {"list": [1, 2], "dict": {"x": 1}}

            batch = {"m": [1]}
            await s.put_many(batch)
            batch["m"].append(2)
            assert await s.get("m") == [1]

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def from_lmdb(actor):
            s = actor.storage
            got = await s.get("k")
            got["list"].append(3)
            assert await s.get("k") == {"list": [1, 2], "dict": {"x": 1}}
            assert await s.get("m") == [1]

        await run_in_actor(box(rt), from_lmdb)


async def test_value_types_round_trip(data_dir):
    plus_five = timezone(timedelta(hours=5, minutes=30))
    aware = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=plus_five)
    utc = datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    values = {
        "aware": aware,
        "utc": utc,
        "tuple": (1, "two", (3, 4)),
        "bytes": b"\x00\xffraw",
        "nested": {"when": aware, "pair": (b"x", None), "n": -(2**63), "f": 1.5, "t": True},
        "big": 2**64 - 1,
        "unicode": "\u00e9\U0001f600\uffff",
    }
    expected = {
        "aware": aware,
        "utc": utc,
        "tuple": [1, "two", [3, 4]],
        "bytes": b"\x00\xffraw",
        "nested": {"when": aware, "pair": [b"x", None], "n": -(2**63), "f": 1.5, "t": True},
        "big": 2**64 - 1,
        "unicode": "\u00e9\U0001f600\uffff",
    }

    def check(got: dict) -> None:
        assert got == expected
        assert isinstance(got["bytes"], bytes)
        assert isinstance(got["nested"]["pair"][0], bytes)
        assert isinstance(got["tuple"], list) and isinstance(got["tuple"][2], list)
        assert got["aware"].tzinfo is not None
        assert got["aware"].timestamp() == aware.timestamp()

    async with running(data_dir) as rt:

        async def body(actor):
            await actor.storage.put_many(values)
            check(await actor.storage.get_many(list(values)))

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def after(actor):
            check(await actor.storage.list())

        await run_in_actor(box(rt), after)


# -- 4. list order and bounds -----------------------------------------------------------------

ORDER_KEYS = [
    "b",
    "aa",
    "a",
    "ab",
    "a\x00",
    "A",
    "z",
    "\u00e9",
    "\u00e9a",
    "\ue000",
    "\uffff",
    "\U0001f600",
    "\U0001f600a",
    "\U00010000",
    "~",
]


def bound_cases(keys: list[str], extra_bounds: list[str]) -> list[dict]:
    """Many combinations of list's options over bounds that are keys and bounds that are not."""
    bounds = list(keys) + list(extra_bounds)
    cases: list[dict] = [{}]
    for b in bounds:
        cases += [{"start": b}, {"start_after": b}, {"end": b}, {"prefix": b}]
    for i, lo in enumerate(bounds):
        for hi in bounds[i::3]:
            cases += [{"start": lo, "end": hi}, {"start_after": lo, "end": hi}]
    for p in {k[:1] for k in keys} | {k[:2] for k in keys}:
        cases += [{"prefix": p, "start": bounds[0]}, {"prefix": p, "end": bounds[-1]}]
        for b in bounds[::2]:
            cases += [{"prefix": p, "start_after": b}, {"prefix": p, "start": b, "end": p + "b"}]
    out = []
    for case in cases:
        for reverse in (False, True):
            for limit in (None, 1, 2, 5):
                out.append({**case, "reverse": reverse, "limit": limit})
    return out


async def test_list_orders_keys_by_utf8_bytes(data_dir):
    # UTF-8 byte order is code-point order; UTF-16 order (JavaScript's) would put U+1F600
    # (surrogates D83D..) before U+E000 and U+FFFF.
    byte_order = [
        "A",
        "a",
        "a\x00",
        "aa",
        "ab",
        "b",
        "z",
        "~",
        "\u00e9",
        "\u00e9a",
        "\ue000",
        "\uffff",
        "\U00010000",
        "\U0001f600",
        "\U0001f600a",
    ]
    assert byte_order == sorted(ORDER_KEYS, key=utf8)
    async with running(data_dir) as rt:

        async def body(actor):
            await actor.storage.put_many({k: i for i, k in enumerate(ORDER_KEYS)})
            assert list(await actor.storage.list()) == byte_order
            assert list(await actor.storage.list(reverse=True)) == byte_order[::-1]

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def durable(actor):
            assert list(await actor.storage.list()) == byte_order
            assert list(await actor.storage.list(reverse=True)) == byte_order[::-1]

        await run_in_actor(box(rt), durable)


async def test_list_bounds_examples(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put_many({k: k for k in ["a", "aa", "ab", "b", "ba", "c", "\u00e9", "\U0001f600"]})

            async def keys(**kwargs):
                return list(await s.list(**kwargs))

            assert await keys(prefix="a") == ["a", "aa", "ab"]
            assert await keys(prefix="b") == ["b", "ba"]
            assert await keys(prefix="\u00e9") == ["\u00e9"]
            assert await keys(prefix="q") == []
            assert await keys(prefix="") == ["a", "aa", "ab", "b", "ba", "c", "\u00e9", "\U0001f600"]
            assert await keys(start="aa") == ["aa", "ab", "b", "ba", "c", "\u00e9", "\U0001f600"]
            assert await keys(start_after="aa") == ["ab", "b", "ba", "c", "\u00e9", "\U0001f600"]
            assert await keys(start_after="a") == ["aa", "ab", "b", "ba", "c", "\u00e9", "\U0001f600"]
            assert await keys(start_after="ac") == ["b", "ba", "c", "\u00e9", "\U0001f600"]
            assert await keys(end="b") == ["a", "aa", "ab"]
            assert await keys(start="aa", end="ba") == ["aa", "ab", "b"]
            assert await keys(start="b", end="b") == []
            assert await keys(start="c", end="a") == []
            assert await keys(reverse=True, limit=2) == ["\U0001f600", "\u00e9"]
            assert await keys(limit=2) == ["a", "aa"]
            assert await keys(start="aa", end="c", reverse=True) == ["ba", "b", "ab", "aa"]
            assert await keys(start_after="aa", end="c", reverse=True, limit=3) == ["ba", "b", "ab"]
            assert await keys(prefix="a", start_after="a") == ["aa", "ab"]
            assert await keys(prefix="a", end="ab") == ["a", "aa"]
            assert await keys(prefix="a", reverse=True) == ["ab", "aa", "a"]
            assert await keys(prefix="a", reverse=True, limit=1) == ["ab"]
            assert await keys(prefix="a", start="b") == []
            assert await keys(prefix="b", start="a") == ["b", "ba"]
            assert await keys(end="\U0001f600", reverse=True, limit=1) == ["\u00e9"]

        await run_in_actor(box(rt), body)


async def test_list_option_combinations_match_reference(data_dir):
    model = {k: i for i, k in enumerate(ORDER_KEYS)}
    cases = bound_cases(ORDER_KEYS, ["", "a\x00\x00", "ac", "\u00e8", "\U0001f5ff", "zz"])
    async with running(data_dir) as rt:

        async def buffered(actor):
            await actor.storage.put_many(model)
            await assert_listing(actor.storage, model, cases)

        await run_in_actor(box(rt), buffered)
        await evict(box(rt))

        async def durable(actor):
            await assert_listing(actor.storage, model, cases)

        await run_in_actor(box(rt), durable)


async def test_list_merges_buffered_writes_with_stored_ones(data_dir):
    stored = {f"k{i:02}": i for i in range(20)}
    async with running(data_dir) as rt:

        async def put_stored(actor):
            await actor.storage.put_many(stored)

        await run_in_actor(box(rt), put_stored)
        await evict(box(rt))

        async def body(actor):
            s = actor.storage
            model = dict(stored)
            # Delete the first three stored keys: a limited list must look past them.
            assert await s.delete_many(["k00", "k01", "k02"]) == 3
            for k in ("k00", "k01", "k02"):
                del model[k]
            assert list(await s.list(limit=3)) == ["k03", "k04", "k05"]
            assert list(await s.list(reverse=True, limit=2)) == ["k19", "k18"]
            await s.delete("k19")
            del model["k19"]
            assert list(await s.list(reverse=True, limit=2)) == ["k18", "k17"]
            # New keys between and around stored ones, and overwrites.
            new = {"k05a": "new", "k10": "over", "a": "first", "z": "last", "k00": "back"}
            await s.put_many(new)
            model.update(new)
            await s.delete("k07")
            del model["k07"]
            cases = bound_cases(sorted(model), ["k", "k0", "k1", "k05", "k99", "j"])
            await assert_listing(s, model, cases)
            return model

        model = await run_in_actor(box(rt), body)

        async def committed(actor):
            await assert_listing(actor.storage, model, [{}, {"reverse": True}, {"prefix": "k0", "limit": 4}])

        await run_in_actor(box(rt), committed)

    async with running(data_dir) as rt:

        async def reopened(actor):
            await assert_listing(
                actor.storage, model, bound_cases(sorted(model), ["k", "k0", "k1", "k05", "k99", "j"])
            )

        await run_in_actor(box(rt), reopened)


async def test_list_after_delete_all_and_new_puts_in_one_event(data_dir):
    async with running(data_dir) as rt:

        async def put_stored(actor):
            await actor.storage.put_many({"a": 1, "b": 2, "c": 3})

        await run_in_actor(box(rt), put_stored)
        await evict(box(rt))

        async def body(actor):
            s = actor.storage
            await s.delete_all()
            await s.put("b", "new")
            assert await s.list() == {"b": "new"}
            assert await s.list(limit=1) == {"b": "new"}
            assert await s.get("a") is None
            assert await s.delete("c") is False

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def after(actor):
            assert await actor.storage.list() == {"b": "new"}

        await run_in_actor(box(rt), after)


async def test_list_rejects_start_with_start_after_and_bad_limits(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put("a", 1)
            with pytest.raises(ValueError):
                await s.list(start="a", start_after="a")
            with pytest.raises(ValueError):
                await s.list(start="a", start_after="b", end="c")
            for limit in (0, -1, -100):
                with pytest.raises(ValueError):
                    await s.list(limit=limit)
            assert await s.list(limit=1) == {"a": 1}

        await run_in_actor(box(rt), body)


# -- 5. keys longer than LMDB's own limit -----------------------------------------------------


def long_keys() -> list[str]:
    keys = []
    # Each of these is a prefix of the longer ones; they straddle LMDB's 511-byte limit.
    for n in (400, 447, 448, 449, 450, 500, 510, 511, 512, 1000, 2047, 2048):
        keys.append("k" * n)
    shared = "x" * 1500  # many keys sharing their first 1500 bytes, differing at the end
    for suffix in [
        "",
        "a",
        "b",
        "c",
        "aa",
        "ab",
        "ba",
        "b\u00e9",
        "\u00e9",
        "\U0001f600",
        "\uffff",
        "0",
        "~",
    ]:
        keys.append(shared + suffix)
    keys += [shared + "z" * 548, shared + "a" * 548, shared + "m" + "a" * 547]
    keys += ["x" * 448, "x" * 449, "x" * 500, "x" * 1499 + "a", "x" * 1499 + "y", "x" * 500 + "y" * 1000]
    # Heads of multi-byte characters, one split across the 448th byte.
    keys += ["\u00e9" * 224, "\u00e9" * 224 + "a", "\u00e9" * 250 + "b", "\u00e9" * 250 + "a"]
    keys += ["a" + "\u00e9" * 300, "a" + "\u00e9" * 300 + "x", "a" + "\u00e9" * 299 + "f"]
    keys += ["w", "x", "y", "xx"]
    for key in keys:
        assert len(utf8(key)) <= MAX_KEY_BYTES
    assert len(set(keys)) == len(keys)
    return keys


def long_key_cases(keys: list[str]) -> list[dict]:
    shared = "x" * 1500
    ordered = sorted(keys, key=utf8)
    bounds = ordered[::2] + [shared + "b\x00", shared + "bb", "x" * 1499, "k" * 449 + "a", "x" * 448 + "\x00"]
    prefixes = [
        "x",
        "x" * 448,
        "x" * 449,
        "x" * 500,
        shared,
        shared + "a",
        shared + "b",
        "k" * 448,
        "k" * 511,
        "\u00e9" * 224,
        "\u00e9" * 250,
        "a" + "\u00e9" * 299,
    ]
    cases: list[dict] = [{}]
    for b in bounds:
        cases += [{"start": b}, {"start_after": b}, {"end": b}]
    for lo, hi in zip(bounds, bounds[3:], strict=False):
        cases += [{"start": lo, "end": hi}, {"start_after": lo, "end": hi}]
    for p in prefixes:
        cases += [
            {"prefix": p},
            {"prefix": p, "start": shared + "a"},
            {"prefix": p, "end": shared + "b"},
            {"prefix": p, "start_after": shared},
        ]
    out = []
    for case in cases:
        for reverse in (False, True):
            for limit in (None, 1, 3):
                out.append({**case, "reverse": reverse, "limit": limit})
    return out


async def test_long_keys_get_put_delete(data_dir):
    keys = long_keys()
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            for i, key in enumerate(keys):
                await s.put(key, [i, len(utf8(key))])
            for i, key in enumerate(keys):
                assert await s.get(key) == [i, len(utf8(key))], short(key)

        await run_in_actor(box(rt), body)
        await evict(box(rt))

        async def durable(actor):
            s = actor.storage
            for i, key in enumerate(keys):
                assert await s.get(key) == [i, len(utf8(key))], short(key)
            # Keys sharing a long head with stored keys, but not stored themselves.
            for absent in ["x" * 1500 + "q", "x" * 1501, "k" * 2046, "x" * 500 + "y" * 999]:
                assert await s.get(absent) is None, short(absent)
                assert await s.delete(absent) is False, short(absent)
            assert await s.get_many(keys[:MAX_KEYS_PER_CALL]) == {
                k: [i, len(utf8(k))] for i, k in enumerate(keys[:MAX_KEYS_PER_CALL])
            }
            for key in keys[::2]:
                assert await s.delete(key) is True, short(key)
            assert await s.delete_many(keys[1::2]) == len(keys[1::2])
            assert await s.list() == {}

        await run_in_actor(box(rt), durable)

    async with running(data_dir) as rt:

        async def reopened(actor):
            assert await actor.storage.list() == {}
            for key in keys:
                assert await actor.storage.get(key) is None, short(key)

        await run_in_actor(box(rt), reopened)


async def test_long_keys_list_in_byte_order_with_bounds(data_dir):
    keys = long_keys()
    cases = long_key_cases(keys)
    model = {k: i for i, k in enumerate(keys)}
    async with running(data_dir) as rt:

        async def buffered(actor):
            await actor.storage.put_many(model)
            await assert_listing(actor.storage, model, cases)

        await run_in_actor(box(rt), buffered)
        await evict(box(rt))

        async def durable(actor):
            await assert_listing(actor.storage, model, cases)

        await run_in_actor(box(rt), durable)

        async def mixed(actor):
            s = actor.storage
            for key in keys[::3]:
                await s.delete(key)
                del model[key]
            for key in keys[1::3]:
                await s.put(key, "over")
                model[key] = "over"
            extra = ["x" * 1500 + "bb", "x" * 1500 + "a\x00", "k" * 449 + "a", "x" * 448 + "\x00" + "y" * 100]
            for key in extra:
                await s.put(key, "extra")
                model[key] = "extra"
            await assert_listing(s, model, cases)

        await run_in_actor(box(rt), mixed)

        async def committed(actor):
            await assert_listing(actor.storage, model, cases)

        await run_in_actor(box(rt), committed)

    async with running(data_dir) as rt:

        async def reopened(actor):
            await assert_listing(actor.storage, model, cases)

        await run_in_actor(box(rt), reopened)


async def test_long_keys_survive_restart(data_dir):
    keys = long_keys()
    model = {k: f"value of {short(k)}" for k in keys}
    async with running(data_dir) as rt:

        async def body(actor):
            for key, value in model.items():
                await actor.storage.put(key, value)

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def reopened(actor):
            s = actor.storage
            for key, value in model.items():
                assert await s.get(key) == value, short(key)
            assert list(await s.list()) == sorted(keys, key=utf8)
            assert list(await s.list(reverse=True)) == sorted(keys, key=utf8, reverse=True)
            shared = "x" * 1500
            assert list(await s.list(prefix=shared)) == sorted(
                [k for k in keys if k.startswith(shared)], key=utf8
            )

        await run_in_actor(box(rt), reopened)


# -- 6. transactions --------------------------------------------------------------------------


async def test_transaction_reads_its_own_writes_and_commits(data_dir):
    async with running(data_dir) as rt:

        async def setup(actor):
            await actor.storage.put_many({"a": 1, "b": 2, "c": 3})

        await run_in_actor(box(rt), setup)
        await evict(box(rt))

        async def body(actor):
            s = actor.storage
            async with s.transaction() as txn:
                assert await txn.get("a") == 1
                await txn.put("a", 10)
                assert await txn.get("a") == 10
                await txn.put_many({"d": 4, "e": 5})
                assert await txn.get_many(["a", "d", "x"]) == {"a": 10, "d": 4}
                assert await txn.delete("b") is True
                assert await txn.delete("b") is False
                assert await txn.get("b") is None
                assert await txn.get("b", "gone") == "gone"
                assert await txn.delete_many(["c", "e", "zz"]) == 2
                assert await txn.list() == {"a": 10, "d": 4}
                assert await txn.list(reverse=True, limit=1) == {"d": 4}
            assert await s.list() == {"a": 10, "d": 4}

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def after(actor):
            assert await actor.storage.list() == {"a": 10, "d": 4}

        await run_in_actor(box(rt), after)


class Abandon(Exception):
    pass


async def test_transaction_exception_discards_its_writes(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put_many({"a": 1, "b": 2})
            with pytest.raises(Abandon):
                async with s.transaction() as txn:
                    await txn.put("a", 100)
                    await txn.delete("b")
                    await txn.put("new", 1)
                    assert await txn.list() == {"a": 100, "new": 1}
                    raise Abandon("give up")
            assert await s.list() == {"a": 1, "b": 2}

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def after(actor):
            assert await actor.storage.list() == {"a": 1, "b": 2}

        await run_in_actor(box(rt), after)


async def test_transaction_rollback_discards_its_writes(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.put_many({"a": 1, "b": 2})
            async with s.transaction() as txn:
                await txn.put("a", 100)
                await txn.delete("b")
                await txn.put_many({"x": 1, "y": 2})
                await txn.delete_many(["a"])
                assert txn.rollback() is None
            assert await s.list() == {"a": 1, "b": 2}

            async with s.transaction() as txn:
                await txn.put("c", 3)
            assert await s.list() == {"a": 1, "b": 2, "c": 3}

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def after(actor):
            assert await actor.storage.list() == {"a": 1, "b": 2, "c": 3}

        await run_in_actor(box(rt), after)


async def test_transaction_alarm_changes_commit_and_roll_back(data_dir):
    base = now() + FAR_FUTURE_SECONDS
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.set_alarm(base)
            async with s.transaction() as txn:
                assert await txn.get_alarm() == base
                await txn.set_alarm(base + 1)
                assert await txn.get_alarm() == base + 1
                await txn.put("k", 1)
                txn.rollback()
            assert await s.get_alarm() == base

            async with s.transaction() as txn:
                await txn.delete_alarm()
                assert await txn.get_alarm() is None
                txn.rollback()
            assert await s.get_alarm() == base

            with pytest.raises(Abandon):
                async with s.transaction() as txn:
                    await txn.set_alarm(base + 2)
                    raise Abandon()
            assert await s.get_alarm() == base

            async with s.transaction() as txn:
                await txn.set_alarm(base + 3)
            assert await s.get_alarm() == base + 3
            assert await s.list() == {}

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def after(actor):
            assert await actor.storage.get_alarm() == base + 3

            async with actor.storage.transaction() as txn:
                await txn.delete_alarm()
            assert await actor.storage.get_alarm() is None

        await run_in_actor(box(rt), after)

    async with running(data_dir) as rt:

        async def deleted(actor):
            assert await actor.storage.get_alarm() is None

        await run_in_actor(box(rt), deleted)


async def test_transaction_checks_limits(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            async with s.transaction() as txn:
                await txn.put("ok", 1)
                with pytest.raises(StorageLimitError):
                    await txn.put("k" * (MAX_KEY_BYTES + 1), 1)
                with pytest.raises(StorageLimitError):
                    await txn.put_many({"a": 1, "big": b"v" * MAX_VALUE_BYTES})
                with pytest.raises(DataCloneError):
                    await txn.put("bad", {1})
                with pytest.raises(TypeError):
                    await txn.get(1)
                with pytest.raises(ValueError):
                    await txn.list(start="a", start_after="a")
            assert await s.list() == {"ok": 1}

        await run_in_actor(box(rt), body)


# -- 7. delete_all and the actors that have data ----------------------------------------------


async def test_delete_all_removes_keys_and_alarm_across_restart(data_dir):
    when = now() + FAR_FUTURE_SECONDS
    async with running(data_dir) as rt:
        ns = rt.namespace("BOX")

        async def setup(actor):
            await actor.storage.put_many({"a": 1, "x" * 1000: 2, "\u00e9": 3})
            await actor.storage.set_alarm(when)

        await run_in_actor(box(rt, "doomed"), setup)
        await run_in_actor(box(rt, "kept"), setup)
        assert {i.name for i in await list_actor_ids(ns)} == {"doomed", "kept"}
        await evict(box(rt, "doomed"))

        async def wipe(actor):
            s = actor.storage
            await s.delete_all()
            assert await s.list() == {}
            assert await s.get("a") is None
            assert await s.get("x" * 1000) is None
            assert await s.get_alarm() is None

        await run_in_actor(box(rt, "doomed"), wipe)
        assert {i.name for i in await list_actor_ids(ns)} == {"kept"}

    async with running(data_dir) as rt:
        ns = rt.namespace("BOX")
        assert [i.name for i in await list_actor_ids(ns)] == ["kept"]
        assert [i for i in await list_actor_ids(ns)] == [box(rt, "kept").id]

        async def after(actor):
            return await actor.storage.list(), await actor.storage.get_alarm()

        assert await run_in_actor(box(rt, "doomed"), after) == ({}, None)
        assert await run_in_actor(box(rt, "kept"), after) == (
            {"a": 1, "\u00e9": 3, "x" * 1000: 2},
            when,
        )


async def test_list_actor_ids_lists_actors_with_stored_data(data_dir):
    async with running(data_dir) as rt:
        ns = rt.namespace("BOX")
        assert await list_actor_ids(ns) == []

        async def read_only(actor):
            await actor.storage.get("k")

        await run_in_actor(box(rt, "reader"), read_only)

        async def write(actor):
            await actor.storage.put("k", 1)

        await run_in_actor(box(rt, "writer"), write)
        unique = ns.get(ns.new_unique_id())
        await run_in_actor(unique, write)

        async def alarm_only(actor):
            await actor.storage.set_alarm(now() + FAR_FUTURE_SECONDS)

        await run_in_actor(box(rt, "alarmed"), alarm_only)
        ids = await list_actor_ids(ns)
        assert sorted(str(i) for i in ids) == sorted(
            str(i) for i in (box(rt, "writer").id, unique.id, box(rt, "alarmed").id)
        )
        assert await list_actor_ids(rt.namespace("COUNTER")) == []

    async with running(data_dir) as rt:
        ns = rt.namespace("BOX")
        ids = await list_actor_ids(ns)
        assert {i.name for i in ids} == {"writer", "alarmed", None}

        async def wipe(actor):
            await actor.storage.delete_all()

        for stub in (box(rt, "writer"), box(rt, "alarmed")):
            await run_in_actor(stub, wipe)
        assert [str(i) for i in await list_actor_ids(ns)] == [str(unique.id)]

    async with running(data_dir) as rt:
        assert [str(i) for i in await list_actor_ids(rt.namespace("BOX"))] == [str(unique.id)]


async def test_list_actor_ids_omits_actors_left_without_data(data_dir):
    async with running(data_dir) as rt:
        ns = rt.namespace("BOX")

        async def put_key(actor):
            await actor.storage.put("k", 1)

        async def delete_key(actor):
            assert await actor.storage.delete("k") is True

        async def set_alarm(actor):
            await actor.storage.set_alarm(now() + FAR_FUTURE_SECONDS)

        async def delete_alarm(actor):
            await actor.storage.delete_alarm()

        await run_in_actor(box(rt, "keys"), put_key)
        await run_in_actor(box(rt, "alarm"), set_alarm)
        await run_in_actor(box(rt, "kept"), put_key)
        assert {i.name for i in await list_actor_ids(ns)} == {"keys", "alarm", "kept"}
        await run_in_actor(box(rt, "keys"), delete_key)
        await run_in_actor(box(rt, "alarm"), delete_alarm)

    async with running(data_dir) as rt:
        # Neither has a key or an alarm left: they have no stored data.
        assert [i.name for i in await list_actor_ids(rt.namespace("BOX"))] == ["kept"]


async def test_delete_all_then_put_keeps_actor_listed(data_dir):
    async with running(data_dir) as rt:

        async def setup(actor):
            await actor.storage.put("a", 1)

        await run_in_actor(box(rt), setup)

        async def body(actor):
            await actor.storage.delete_all()
            await actor.storage.put("b", 2)

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:
        assert [i.name for i in await list_actor_ids(rt.namespace("BOX"))] == ["a"]

        async def after(actor):
            return await actor.storage.list()

        assert await run_in_actor(box(rt), after) == {"b": 2}


# -- 8. sync ----------------------------------------------------------------------------------


async def test_sync_returns_once_writes_are_durable(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            await actor.storage.put_many({"a": 1, "x" * 600: 2})
            await actor.storage.sync()
            await actor.storage.sync()  # nothing new: returns too

        await run_in_actor(box(rt), body)

    async with running(data_dir) as rt:

        async def after(actor):
            return await actor.storage.list()

        assert await run_in_actor(box(rt), after) == {"a": 1, "x" * 600: 2}


async def test_sync_waits_for_the_commit_and_reports_its_failure(data_dir):
    async with running(data_dir) as rt:
        stub = box(rt)

        async def first(actor):
            await actor.storage.put("kept", 1)
            await actor.storage.sync()

        await run_in_actor(stub, first)
        inject_commit_failure(stub)

        async def doomed(actor):
            await actor.storage.put("lost", 1)
            await actor.storage.sync()

        with pytest.raises(ActorResetError):
            await run_in_actor(stub, doomed)

        async def after(actor):
            return await actor.storage.list()

        assert await run_in_actor(stub, after) == {"kept": 1}

    async with running(data_dir) as rt:
        assert await run_in_actor(box(rt), after) == {"kept": 1}


# -- 9. storage calls never yield -------------------------------------------------------------


async def test_storage_calls_never_checkpoint(data_dir):
    async with running(data_dir) as rt:

        async def setup(actor):
            await actor.storage.put_many({"a": 1, "b": 2, "x" * 1000 + "a": 3, "x" * 1000 + "b": 4})

        await run_in_actor(box(rt), setup)
        await evict(box(rt))

        async def body(actor):
            s = actor.storage
            with trio.testing.assert_no_checkpoints():
                assert await s.get("a") == 1  # from LMDB
                assert await s.get("x" * 1000 + "b") == 4
                assert await s.get("missing") is None
                await s.put("c", 3)
                assert await s.get("c") == 3  # from the write buffer
                assert await s.get_many(["a", "c", "zz"]) == {"a": 1, "c": 3}
                await s.put_many({"d": 4, "e": 5})
                assert await s.delete("b") is True
                assert await s.delete_many(["d", "e", "zz"]) == 2
                assert list(await s.list()) == ["a", "c", "x" * 1000 + "a", "x" * 1000 + "b"]
                assert list(await s.list(prefix="x", reverse=True, limit=1)) == ["x" * 1000 + "b"]
                await s.set_alarm(now() + FAR_FUTURE_SECONDS)
                assert await s.get_alarm() is not None
                await s.delete_alarm()
                assert await s.get_alarm() is None
                async with s.transaction() as txn:
                    await txn.put("t", 1)
                    assert await txn.get("t") == 1
                    assert await txn.get_many(["t", "a"]) == {"t": 1, "a": 1}
                    await txn.put_many({"u": 2})
                    await txn.delete("a")
                    await txn.delete_many(["u"])
                    assert list(await txn.list()) == ["c", "t", "x" * 1000 + "a", "x" * 1000 + "b"]
                    await txn.set_alarm(now() + FAR_FUTURE_SECONDS)
                    await txn.get_alarm()
                    await txn.delete_alarm()
                async with s.transaction() as txn:
                    await txn.put("rolled", 1)
                    txn.rollback()
                with pytest.raises(Abandon):
                    async with s.transaction() as txn:
                        await txn.put("raised", 1)
                        raise Abandon()
                with pytest.raises(StorageLimitError):
                    await s.put("k" * (MAX_KEY_BYTES + 1), 1)
                await s.delete_all()
                assert await s.list() == {}

        await run_in_actor(box(rt), body)


# -- 10. atomicity without yields, interleaving across real awaits ----------------------------


async def test_read_modify_write_without_await_is_atomic(data_dir):
    async with running(data_dir) as rt:
        stub = rt.namespace("COUNTER").get_by_name("c")
        results = []

        async def call():
            results.append(await stub.increment())

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(call)
        assert await stub.value() == 100
        assert sorted(results) == list(range(1, 101))

    async with running(data_dir) as rt:
        assert await rt.namespace("COUNTER").get_by_name("c").value() == 100


async def test_updates_interleave_across_a_sleep(data_dir, autojump_clock):
    async with running(data_dir) as rt:
        stub = rt.namespace("COUNTER").get_by_name("c")
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(stub.slow_increment)
        final = await stub.value()
        # Every call read before any wrote: updates were lost, as on Cloudflare.
        assert 1 <= final < 10


# -- 11. persistence across restarts ----------------------------------------------------------


async def test_writes_of_a_returned_rpc_survive_restart(data_dir):
    entries = {
        "n": 1,
        "when": datetime(2024, 5, 1, tzinfo=timezone.utc),
        "blob": b"\x00\x01",
        "x" * 700: "long",
    }
    async with running(data_dir) as rt:
        notes = rt.namespace("NOTES")
        await notes.get_by_name("alice").write(entries)
        await notes.get_by_name("bob").write({"n": 2})
        unique_id = notes.new_unique_id()
        await notes.get(unique_id).write({"n": 3})

    async with running(data_dir) as rt:
        notes = rt.namespace("NOTES")
        assert await notes.get_by_name("alice").read_all() == entries
        assert await notes.get_by_name("bob").read_all() == {"n": 2}
        assert await notes.get(unique_id).read_all() == {"n": 3}
        assert await notes.get_by_name("carol").read_all() == {}


async def test_counter_survives_several_restarts(data_dir):
    for expected in range(1, 4):
        async with running(data_dir) as rt:
            stub = rt.namespace("COUNTER").get_by_name("c")
            assert await stub.increment() == expected
    async with running(data_dir) as rt:
        assert await rt.namespace("COUNTER").get_by_name("c").value() == 3


# -- 12. the alarm's stored time --------------------------------------------------------------


async def test_alarm_set_get_delete(data_dir):
    base = now() + FAR_FUTURE_SECONDS
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            assert await s.get_alarm() is None
            assert await s.set_alarm(base) is None
            assert await s.get_alarm() == base
            await s.set_alarm(base + 5.25)  # replaces the earlier one
            assert await s.get_alarm() == base + 5.25
            await s.set_alarm(int(base))
            got = await s.get_alarm()
            assert got == int(base) and isinstance(got, float)
            assert await s.delete_alarm() is None
            assert await s.get_alarm() is None
            await s.delete_alarm()  # deleting no alarm is fine
            assert await s.get_alarm() is None

        await run_in_actor(box(rt), body)


async def test_alarm_from_aware_datetime_is_epoch_seconds(data_dir):
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            when_utc = datetime(2200, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)
            await s.set_alarm(when_utc)
            assert await s.get_alarm() == when_utc.timestamp()
            assert await s.get_alarm() == 7258118400.5
            when_local = datetime(2200, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
            await s.set_alarm(when_local)
            assert await s.get_alarm() == 7258118400.0

        await run_in_actor(box(rt), body)


async def test_alarm_rejects_naive_datetimes_and_non_numbers(data_dir):
    base = now() + FAR_FUTURE_SECONDS
    async with running(data_dir) as rt:

        async def body(actor):
            s = actor.storage
            await s.set_alarm(base)
            with pytest.raises(ValueError):
                await s.set_alarm(datetime(2200, 1, 1))
            for bad in ("2200-01-01", None, [base], b"1"):
                with pytest.raises(TypeError):
                    await s.set_alarm(bad)
            assert await s.get_alarm() == base

        await run_in_actor(box(rt), body)


async def test_alarm_survives_restart(data_dir):
    base = now() + FAR_FUTURE_SECONDS
    async with running(data_dir) as rt:

        async def body(actor):
            await actor.storage.set_alarm(base)

        await run_in_actor(box(rt, "a"), body)
        await run_in_actor(box(rt, "b"), body)

    async with running(data_dir) as rt:

        async def check_and_change(actor):
            assert await actor.storage.get_alarm() == base
            await actor.storage.set_alarm(base + 60)

        async def check_and_delete(actor):
            assert await actor.storage.get_alarm() == base
            await actor.storage.delete_alarm()

        await run_in_actor(box(rt, "a"), check_and_change)
        await run_in_actor(box(rt, "b"), check_and_delete)

    async with running(data_dir) as rt:

        async def get(actor):
            return await actor.storage.get_alarm()

        assert await run_in_actor(box(rt, "a"), get) == base + 60
        assert await run_in_actor(box(rt, "b"), get) is None
