"""A name -> factory registry that refuses mistakes.

Unknown names raise :class:`robust.errors.UnknownNameError` (a ``KeyError``) listing the known ones;
registering a name twice raises :class:`robust.errors.DuplicateNameError` (a ``ValueError``);
keyword arguments are checked against the factory's signature before it is called, so a misspelt or
missing parameter raises :class:`robust.errors.ParameterError` (a ``TypeError`` and ``ValueError``)
naming the parameters the factory takes, instead of being silently dropped.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from robust.errors import DuplicateNameError, ParameterError, UnknownNameError

T = TypeVar("T")


def check_kwargs(factory: Callable[..., Any], label: str, kwargs: dict[str, Any]) -> None:
    """Raise :class:`ParameterError` unless ``factory(**kwargs)`` binds to the factory's signature."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        params = [p for p in sig.parameters if p not in ("self", "args", "kwargs")]
        raise ParameterError(
            f"{label}: got keyword arguments {sorted(kwargs)} ({e}); want parameters among {params}"
        ) from None


class Registry(Generic[T]):
    """Map names to factories (usually classes) of one kind of object."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REG.register("krum")`` on a class or factory function."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise DuplicateNameError(f"{self.kind} {name!r} is registered twice; want a new name")
            self._items[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        if not isinstance(name, str) or name not in self._items:
            known = ", ".join(sorted(self._items))
            raise UnknownNameError(f"unknown {self.kind} {name!r}; want one of: {known}")
        return self._items[name]

    def make(self, name: str, **kwargs: Any) -> T:
        factory = self.get(name)
        check_kwargs(factory, f"{self.kind} {name!r}", kwargs)
        return factory(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
