"""Name -> constructor registries, so that a config can name its components (as timm does).

``REGISTRY.register("name", "alias", ...)``: the first name is the component's, the others
are aliases that configs may use too. ``declared`` reads the same registrations from the
source as text, so that ``edgevpr list`` answers without importing torch.

Plug-ins (the research package's mixed precision and ``--keep-float`` ranking) register
explicitly: each entry point of the group ``edgevpr.plugins`` names a function that fills the
registries, and a registry calls them the first time it is asked for a name it lacks, in any
process (a sweep's worker too). Nothing registers by being imported."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable

from edgevpr.errors import ConfigError

PLUGIN_GROUP = "edgevpr.plugins"
_plugins = {"loaded": False}


def load_plugins() -> None:
    """Call every ``edgevpr.plugins`` entry point once (they register components)."""
    if _plugins["loaded"]:
        return
    _plugins["loaded"] = True  # before the calls: a plug-in's own lookups must not load again
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        entry.load()()


class Registry:
    """A named table of constructors filled by the ``register`` decorator."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}
        self._canonical: dict[str, str] = {}  # every registered name -> the component's own name
        self._params: dict[str, type] = {}  # every registered name -> its options' dataclass, if it has options

    def register(self, *names: str, params: type | None = None) -> Callable:
        """``params``: the dataclass of the component's options (``model.backbone.params`` in a
        config); it checks its own values in ``__post_init__``."""

        def decorate(constructor: Callable) -> Callable:
            for name in names:
                if name in self._entries:
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
                self._entries[name] = constructor
                self._canonical[name] = names[0]
                if params is not None:
                    self._params[name] = params
            return constructor

        return decorate

    def get(self, name: str) -> Callable:
        if name not in self:
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._entries[name]

    def params_type(self, name: str) -> type | None:
        """The dataclass of ``name``'s options, or None for a component without options."""
        self.get(name)
        return self._params.get(name)

    def names(self) -> list[str]:
        """The components' own names (aliases left out)."""
        return sorted({canonical for canonical in self._canonical.values()})

    def aliases(self) -> dict[str, list[str]]:
        """Each component's own name -> its aliases."""
        table: dict[str, list[str]] = {name: [] for name in self.names()}
        for name, canonical in sorted(self._canonical.items()):
            if name != canonical:
                table[canonical].append(name)
        return table

    def __contains__(self, name: str) -> bool:
        if name not in self._entries:
            load_plugins()
        return name in self._entries


def declared(root: str | Path, registry: str) -> dict[str, list[str]]:
    """``registry.register("name", "alias", ...)`` calls in the ``.py`` files under ``root``,
    read as text: each component's own name -> its aliases, as ``Registry.aliases`` gives them
    once the modules are imported."""
    table: dict[str, list[str]] = {}
    marker = f"{registry}.register("
    for path in sorted(Path(root).rglob("*.py")):
        text = path.read_text()
        if marker not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if node.func.attr != "register" or not (isinstance(owner, ast.Name) and owner.id == registry):
                continue
            names = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            if names and len(names) == len(node.args):
                table[names[0]] = sorted(names[1:])
    return dict(sorted(table.items()))
