"""Name -> constructor registries, so that a config can name its components (as timm does)."""

from __future__ import annotations

from typing import Callable

from edgevpr.errors import ConfigError


class Registry:
    """A named table of constructors filled by the ``register`` decorator."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, *names: str) -> Callable:
        def decorate(constructor: Callable) -> Callable:
            for name in names:
                if name in self._entries:
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
                self._entries[name] = constructor
            return constructor

        return decorate

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
