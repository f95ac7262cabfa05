"""One small name -> object registry, used by every pluggable part (spaces, samplers, hypernetworks,
scalarisations, combiners, objectives, predictor nets, baselines, datasets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names of one kind of thing (``kind`` appears in messages: "unknown sampler 'x'; available: ...")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name``; a second registration of a name is an error."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def check(self, name: str, field: str = "") -> str:
        """``name`` if registered, else a :class:`UserError` naming ``field`` and the known names."""
        if name not in self._items:
            where = f"{field}: " if field else ""
            raise UserError(f"{where}unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return name

    def get(self, name: str) -> T:
        return self._items[self.check(name)]


__all__ = ["Registry"]
