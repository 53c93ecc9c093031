"""Storage against a dict model: random programs of puts, deletes, lists, transactions,
alarms, evictions and restarts, checked after every operation (API.md section 3).

Hypothesis cannot drive async rules (STYLE.md rule 9), so each example is one program, a
list of steps, run inside one pytest-trio test on the real clock: commits then run on the
writer thread, and a ``checkpoint`` step lets one go in flight while the actor reads and
writes on top of it. Keys come from a small pool with non-ASCII characters and keys past
LMDB's 511-byte key limit sharing long prefixes, so the order of long keys is exercised too.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import Actor, DataCloneError, StorageLimitError, now, open_runtime
from runtime.testing import evict, list_actor_ids, run_in_actor

MAX_KEY_BYTES = 2048
MAX_VALUE_BYTES = 131072
# Alarms are far in the future so that no alarm handler could ever run here.
FAR_FUTURE_SECONDS = 10 * 365 * 86400.0

# Keys on both sides of 448 bytes (where Roost starts hashing a key's tail), of LMDB's
# 511-byte limit and up to the 2048-byte maximum, many of them sharing their first 500 bytes
# and differing only at the end; short ones include non-ASCII characters.
LONG = "x" * 500
KEY_POOL = [
    "a",
    "ab",
    "b",
    "x",
    "xa",
    "\u00e9",
    "\u00e9a",
    "\U0001f600",
    "x" * 446 + "a",
    "x" * 446 + "\u00e9",
    "x" * 447 + "\u00e9",
    "x" * 448,
    "x" * 449,
    "x" * 450,
    LONG,
    LONG + "a",
    LONG + "aa",
    LONG + "ab",
    LONG + "b",
    LONG + "\u00e9",
    LONG + "\U0001f600",
    LONG + "a" * 1000,
    LONG + "a" * 999 + "b",
    "x" * 2047 + "a",
    "x" * 2048,
    "x" * 2044 + "\U0001f600",
]
KEYS = st.sampled_from(KEY_POOL)
# Bounds: every key, and strings between or around them.
BOUNDS = st.sampled_from(
    KEY_POOL + ["", "a\x00", "c", "x" * 447, "x" * 448 + "\x00", LONG + "a\x00", LONG + "c", "x" * 1000, "y"]
)
PREFIXES = st.sampled_from(
    ["a", "x", "\u00e9", "x" * 446, "x" * 448, "x" * 449, LONG, LONG + "a", "x" * 2000]
)
VALUES = st.one_of(st.integers(-3, 3), st.lists(st.integers(0, 3), max_size=2), st.text("ab", max_size=2))
ALARM_OFFSETS = st.integers(0, 5)


class Box(Actor):
    """The actor whose storage the programs drive."""


class Abandon(Exception):
    """Raised inside a transaction block to discard it."""


def utf8(key: str) -> bytes:
    return key.encode("utf-8")


@st.composite
def list_options(draw) -> dict:
    options: dict = {}
    if draw(st.booleans()):
        options["prefix"] = draw(PREFIXES)
    lower = draw(st.sampled_from([None, "start", "start_after"]))
    if lower is not None:
        options[lower] = draw(BOUNDS)
    if draw(st.booleans()):
        options["end"] = draw(BOUNDS)
    if draw(st.booleans()):
        options["reverse"] = True
    if draw(st.booleans()):
        options["limit"] = draw(st.integers(1, 4))
    return options


KEY_LISTS = st.lists(KEYS, max_size=4, unique=True)
ENTRIES = st.dictionaries(KEYS, VALUES, min_size=1, max_size=6)

# Each operation's arguments; the kinds below are weighted so that programs store enough keys
# (many of them long) for lists, deletes and restarts to have something to get wrong.
ARGUMENTS = {
    "put": st.tuples(KEYS, VALUES),
    "put_many": st.tuples(ENTRIES),
    "delete": st.tuples(KEYS),
    "delete_many": st.tuples(KEY_LISTS),
    "get": st.tuples(KEYS),
    "get_many": st.tuples(KEY_LISTS),
    "list": st.tuples(list_options()),
    "set_alarm": st.tuples(ALARM_OFFSETS),
    "delete_alarm": st.just(()),
    "bad_put_many": st.tuples(ENTRIES, st.sampled_from(["long_key", "big_value", "unencodable"])),
    "checkpoint": st.just(()),
    "delete_all": st.just(()),
}
COMMON_KINDS = (
    ["put"] * 4
    + ["put_many"] * 3
    + ["delete"] * 2
    + ["delete_many", "get", "get_many"]
    + ["list"] * 3
    + ["set_alarm", "delete_alarm", "bad_put_many"]
    + ["checkpoint"] * 2
)


@st.composite
def operations(draw, kinds: list[str]) -> tuple:
    kind = draw(st.sampled_from(kinds))
    if kind == "transaction":
        body = draw(st.lists(operations(COMMON_KINDS), max_size=6))
        return (kind, body, draw(st.sampled_from(["commit", "rollback", "raise"])))
    return (kind, *draw(ARGUMENTS[kind]))


EVENT_KINDS = ["put", *COMMON_KINDS, "delete_all", "transaction", "transaction"]
STEPS = st.one_of(
    st.tuples(st.just("event"), st.lists(operations(EVENT_KINDS), min_size=1, max_size=12)),
    st.tuples(st.sampled_from(["evict", "reopen"])),
)
PROGRAMS = st.lists(STEPS, min_size=1, max_size=12)


class Model:
    """What the storage must hold: keys to values, and the alarm."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.alarm: float | None = None

    def copy(self) -> Model:
        twin = Model()
        twin.data = dict(self.data)
        twin.alarm = self.alarm
        return twin

    def listing(self, *, prefix=None, start=None, start_after=None, end=None, reverse=False, limit=None):
        keys = sorted(self.data, key=utf8)
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
        return [(k, self.data[k]) for k in keys]


def short(key: str) -> str:
    data = utf8(key)
    return repr(key) if len(data) <= 16 else f"<{len(data)}B ..{key[-4:]!r}>"


def bad_entries(entries: dict, kind: str) -> dict:
    bad = dict(entries)
    if kind == "long_key":
        bad["y" * (MAX_KEY_BYTES + 1)] = 1
    elif kind == "big_value":
        bad["big"] = b"v" * MAX_VALUE_BYTES
    else:
        bad["set"] = {1, 2}
    return bad


async def check_state(ops, model: Model, where: str) -> None:
    """``ops`` (a storage or a transaction) holds exactly what ``model`` does."""
    listed = list((await ops.list()).items())
    expected = model.listing()
    assert [short(k) for k, _ in listed] == [short(k) for k, _ in expected], where
    assert listed == expected, where
    # Limited lists from both ends: buffered deletes must not make them stop short.
    for options in ({"limit": 1}, {"limit": 2}, {"reverse": True, "limit": 1}, {"reverse": True, "limit": 2}):
        assert list((await ops.list(**options)).items()) == model.listing(**options), (where, options)
    assert await ops.get_alarm() == model.alarm, where


async def apply(ops, op: tuple, model: Model, base_alarm: float) -> None:
    """Run one operation on ``ops`` and on ``model``, comparing what each returns."""
    kind = op[0]
    if kind == "put":
        _, key, value = op
        await ops.put(key, value)
        model.data[key] = value
    elif kind == "put_many":
        await ops.put_many(op[1])
        model.data.update(op[1])
    elif kind == "delete":
        existed = op[1] in model.data
        assert await ops.delete(op[1]) is existed, short(op[1])
        model.data.pop(op[1], None)
    elif kind == "delete_many":
        existed = sum(1 for k in op[1] if k in model.data)
        assert await ops.delete_many(op[1]) == existed
        for key in op[1]:
            model.data.pop(key, None)
    elif kind == "delete_all":
        await ops.delete_all()
        model.data.clear()
        model.alarm = None
    elif kind == "get":
        assert await ops.get(op[1], "absent") == model.data.get(op[1], "absent"), short(op[1])
    elif kind == "get_many":
        assert await ops.get_many(op[1]) == {k: model.data[k] for k in op[1] if k in model.data}
    elif kind == "list":
        listed = list((await ops.list(**op[1])).items())
        expected = model.listing(**op[1])
        assert [short(k) for k, _ in listed] == [short(k) for k, _ in expected], op[1]
        assert listed == expected
    elif kind == "set_alarm":
        await ops.set_alarm(base_alarm + op[1])
        model.alarm = base_alarm + op[1]
    elif kind == "delete_alarm":
        await ops.delete_alarm()
        model.alarm = None
    elif kind == "bad_put_many":
        with pytest.raises((StorageLimitError, DataCloneError)):
            await ops.put_many(bad_entries(op[1], op[2]))
    elif kind == "checkpoint":
        # A real yield: the committer may take the writes so far and commit them on its
        # thread while the next operations read and write on top of the commit in flight.
        await trio.lowlevel.checkpoint()
    else:
        raise AssertionError(f"unknown operation {op!r}")


async def run_transaction(storage, ops: list, outcome: str, model: Model, base_alarm: float) -> Model:
    """Run a transaction; return the model after it (``model`` itself if it was discarded)."""
    inside = model.copy()
    try:
        async with storage.transaction() as txn:
            await check_state(txn, inside, "transaction start")
            for i, op in enumerate(ops):
                await apply(txn, op, inside, base_alarm)
                await check_state(txn, inside, f"transaction op {i}: {op[0]}")
            if outcome == "rollback":
                txn.rollback()
            elif outcome == "raise":
                raise Abandon()
    except Abandon:
        assert outcome == "raise"
    return inside if outcome == "commit" else model


async def run_program(data_dir: str, program: list) -> None:
    model = Model()
    base_alarm = now() + FAR_FUTURE_SECONDS

    async def event(actor, ops: list) -> None:
        storage = actor.storage
        await check_state(storage, model, "event start")
        for i, op in enumerate(ops):
            if op[0] == "transaction":
                after = await run_transaction(storage, op[1], op[2], model, base_alarm)
                model.data, model.alarm = after.data, after.alarm
            else:
                await apply(storage, op, model, base_alarm)
            await check_state(storage, model, f"op {i}: {op[0]}")

    async def verify(actor) -> None:
        await check_state(actor.storage, model, "after the step")

    # A "reopen" step closes the runtime and opens it again on the same data directory.
    sessions: list[list] = [[]]
    for step in program:
        if step[0] == "reopen":
            sessions.append([])
        else:
            sessions[-1].append(step)
    sessions.append([])  # a last reopen checks everything once more
    for steps in sessions:
        async with open_runtime(data_dir=data_dir, actors={"BOX": Box}) as rt:
            namespace = rt.namespace("BOX")
            stub = namespace.get_by_name("model")
            await run_in_actor(stub, verify)
            for step in steps:
                if step[0] == "event":
                    await run_in_actor(stub, lambda actor, ops=step[1]: event(actor, ops))
                else:
                    await evict(stub)
                await run_in_actor(stub, verify)
                # Every write is durable now: the actor is listed exactly when it has data.
                has_data = bool(model.data) or model.alarm is not None
                assert await list_actor_ids(namespace) == ([stub.id] if has_data else [])


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=PROGRAMS)
async def test_storage_matches_dict_model(program):
    data_dir = tempfile.mkdtemp(prefix="roost-storage-model-")
    try:
        await run_program(data_dir, program)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
