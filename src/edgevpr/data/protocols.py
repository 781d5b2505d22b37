"""Named, versioned evaluation protocols, so that two results with the same protocol name
were measured on the same images with the same positives.

A protocol fixes the database and query folders (relative to a data root), the positive rule,
the image counts and a content fingerprint. ``eval --protocol NAME --data-root DIR`` refuses
a dataset whose counts or fingerprint differ, saying what differs. The built-in protocols are
in ``protocols.yaml`` beside this file; users add their own in YAML files of the same form
named by ``EDGEVPR_PROTOCOLS`` (paths separated by ``:``), or pass a file as ``--protocol``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from edgevpr.config import read_yaml
from edgevpr.errors import ConfigError, DatasetError

RULES = ("tolerance_frames", "threshold_m", "ground_truth")


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    description: str
    database: str
    queries: str
    positives: dict
    num_database: int | None
    num_queries: int | None
    fingerprint: str | None
    source: str

    def data_overrides(self, root: str | Path) -> dict:
        """The data section that evaluates this protocol on the copy of its data at ``root``."""
        root = Path(root)
        rule = dict(self.positives)
        if "ground_truth" in rule:
            rule["ground_truth"] = str(root / rule["ground_truth"])
        return {"database": str(root / self.database), "queries": str(root / self.queries), **rule}


def _parse(entries, source: str) -> dict[str, Protocol]:
    if not isinstance(entries, dict):
        raise ConfigError(f"{source}: a protocols file maps protocol names to their fields")
    protocols = {}
    for name, fields in entries.items():
        if not isinstance(fields, dict):
            raise ConfigError(f"{source}: protocol {name!r} must be a mapping")
        missing = [key for key in ("database", "queries", "positives") if key not in fields]
        if missing:
            raise ConfigError(f"{source}: protocol {name!r} lacks {', '.join(missing)}")
        rule = fields["positives"]
        if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in RULES:
            raise ConfigError(f"{source}: protocol {name!r}: positives must be one of {', '.join(RULES)}")
        protocols[str(name)] = Protocol(
            str(name),
            int(fields.get("version", 1)),
            str(fields.get("description", "")),
            str(fields["database"]),
            str(fields["queries"]),
            dict(rule),
            fields.get("num_database"),
            fields.get("num_queries"),
            fields.get("fingerprint"),
            source,
        )
    return protocols


def _read(path: str | Path) -> dict[str, Protocol]:
    return _parse(read_yaml(path, "protocols file"), str(path))


def registered() -> dict[str, Protocol]:
    """The built-in protocols, then those of the files named by ``EDGEVPR_PROTOCOLS``."""
    built_in = resources.files("edgevpr.data").joinpath("protocols.yaml")
    protocols = _parse(yaml.safe_load(built_in.read_text()), "built-in")
    for path in filter(None, os.environ.get("EDGEVPR_PROTOCOLS", "").split(":")):
        protocols.update(_read(path))
    return protocols


def find_protocol(name: str) -> Protocol:
    """A registered protocol, or the single protocol of a YAML file named ``name``."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        found = _read(name)
        if len(found) != 1:
            raise ConfigError(f"{name}: --protocol takes a file of one protocol, this one has {len(found)}")
        return next(iter(found.values()))
    protocols = registered()
    if name not in protocols:
        raise ConfigError(f"unknown protocol {name!r}; `edgevpr protocols` lists {len(protocols)}")
    return protocols[name]


def fingerprint(database_dir: Path, database: list[Path], queries_dir: Path, queries: list[Path]) -> str:
    """SHA-256 over ``database/NAME<TAB>SIZE`` then ``queries/NAME<TAB>SIZE`` lines, names
    relative to their folders, in the order the dataset lists them."""
    digest = hashlib.sha256()
    for label, folder, paths in (("database", database_dir, database), ("queries", queries_dir, queries)):
        for path in paths:
            digest.update(f"{label}/{path.relative_to(folder).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def check_dataset(
    protocol: Protocol, database_dir: Path, database: list[Path], queries_dir: Path, queries: list[Path]
) -> None:
    """One line saying what differs between the folders and what ``protocol`` pins."""
    for what, expected, found, folder in (
        ("database", protocol.num_database, len(database), database_dir),
        ("queries", protocol.num_queries, len(queries), queries_dir),
    ):
        if expected is not None and expected != found:
            raise DatasetError(f"{folder}: protocol {protocol.name} expects {expected} {what} images, found {found}")
    if protocol.fingerprint is not None:
        found = fingerprint(database_dir, database, queries_dir, queries)
        if found != protocol.fingerprint:
            raise DatasetError(
                f"{queries_dir.parent}: the images differ from protocol {protocol.name}'s (fingerprint "
                f"{found[:12]}, expected {protocol.fingerprint[:12]}: a file renamed, added or changed)"
            )
