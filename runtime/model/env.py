"""``Env``: the bindings an actor sees by name (namespaces, queue producers, vars).

A read-only mapping, and nothing else: it knows none of the things it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class Env:
    """The bindings by name: namespaces, queue producers, vars (``env.NAME``, ``env["NAME"]``)."""

    __slots__ = ("_bindings",)

    def __init__(self, bindings: dict[str, Any]) -> None:
        object.__setattr__(self, "_bindings", dict(bindings))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._bindings[name]
        except KeyError:
            raise AttributeError(f"no binding named {name!r}; bindings: {sorted(self._bindings)}") from None

    def __getitem__(self, name: str) -> Any:
        try:
            return self._bindings[name]
        except KeyError:
            raise KeyError(f"no binding named {name!r}; bindings: {sorted(self._bindings)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Env is read-only")

    def __contains__(self, name: object) -> bool:
        return name in self._bindings

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._bindings))

    def get(self, name: str, default: Any = None) -> Any:
        return self._bindings.get(name, default)

    def __repr__(self) -> str:
        return f"<Env {sorted(self._bindings)}>"
