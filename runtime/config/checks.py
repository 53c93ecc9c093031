"""The checks of single values: types, ranges, names, import paths, and ``Where`` a mistake is.

Every check raises ``ConfigError`` naming the source, the table and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..extensions import load_object

BINDING_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# (type, low, high) of a numeric setting; None bounds are open.
Range = tuple[type | tuple[type, ...], float | None, float | None]


class Where:
    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, table: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{table}] {message}" if table else f"{self.source}: {message}")


def ranged(
    entry: Mapping[str, Any],
    spec: Mapping[str, Range],
    where: Where,
    table: str,
) -> dict[str, Any]:
    """The numeric keys of ``entry`` that ``spec`` names, checked against its types and ranges."""
    out: dict[str, Any] = {}
    for key, (kind, low, high) in spec.items():
        if key not in entry:
            continue
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = "an integer" if kind is int else "a number"
            raise where.error(table, f"key {key!r}: expected {expected}, got {value!r}")
        # Written so that NaN is out of every range.
        if not ((low is None or value >= low) and (high is None or value <= high)):
            raise where.error(table, f"key {key!r}: {value!r} is out of range {low}..{high}")
        out[key] = value
    return out


def expect(value: Any, kind: Any, where: Where, key: str, description: str) -> Any:
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        table, _, leaf = key.rpartition(".")
        raise where.error(
            table, f"key {leaf!r}: expected {description}, got {type(value).__name__} {value!r}"
        )
    return value


def required(entry: Mapping[str, Any], key: str, where: Where, table: str) -> Any:
    if key not in entry:
        raise where.error(table, f"key {key!r} is required")
    return entry[key]


def unknown(entry: Mapping[str, Any], allowed: set[str], where: Where, table: str) -> None:
    for key in entry:
        if key not in allowed:
            raise where.error(table, f"unknown key {key!r} (expected one of: {', '.join(sorted(allowed))})")


def binding_name(name: Any, where: Where, key: str) -> str:
    expect(name, str, where, key, "a string")
    if not name or not set(name) <= BINDING_CHARS or name[0].isdigit():
        table, _, leaf = key.rpartition(".")
        raise where.error(table, f"key {leaf!r}: {name!r} is not a valid binding name (letters, digits, _)")
    return name


def queue_name(name: Any, where: Where, key: str) -> str:
    expect(name, str, where, key, "a string")
    if not name or len(name) > 63 or not all(c.isalnum() or c in "-_" for c in name) or not name.isascii():
        table, _, leaf = key.rpartition(".")
        raise where.error(
            table, f"key {leaf!r}: {name!r} is not a valid queue name (1-63 of a-z, 0-9, - and _)"
        )
    return name


def import_class(value: Any, where: Where, key: str) -> type:
    """Resolve an import path to a class (the runtime checks that it is an Actor)."""
    table, _, leaf = key.rpartition(".")
    if isinstance(value, str):
        try:
            value = load_object(value)
        except ImportError as exc:
            raise where.error(table, f"key {leaf!r}: cannot import {value!r}: {exc}") from None
        except Exception as exc:  # the user's module raised while importing
            raise where.error(
                table, f"key {leaf!r}: importing {value!r} raised {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(value, type):
        raise where.error(table, f"key {leaf!r}: {value!r} is not a class")
    return value
