"""A small named registry with a decorator, duplicate checks and "did you mean" lookups."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from edgepack.errors import SpecError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(
                f"unknown {self.kind} {name!r} (choose from: {', '.join(self.names())}){guess}"
            ) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
