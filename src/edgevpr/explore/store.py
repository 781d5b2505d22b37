"""The results store: one SQLite table of runs, one row per sweep cell.

Each row keeps the cell's key (a hash of everything that defines it), the resolved config,
the protocol, recall, the cost block and the environment, as JSON, with the columns that
analysis filters on copied out. A row is written in one transaction, with SQLite's full
synchronous journal, so killing a sweep loses at most the cell in flight and never leaves a
half-written row.

Two more tables serve sweeps: ``leases`` (a cell being computed, and by which process: two
sweeps on one store never compute the same cell; a lease of a process that is gone is taken
over) and ``failures`` (a cell whose last attempt failed, with its error line and attempts).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from edgevpr.errors import ConfigError

SCHEMA_VERSION = 1
COLUMNS = {  # name -> SQL type; JSON columns end in _json
    "key": "TEXT PRIMARY KEY",
    "sweep": "TEXT",
    "created_at": "TEXT",
    "dataset": "TEXT",
    "protocol_name": "TEXT",
    "backbone": "TEXT",
    "aggregator": "TEXT",
    "descriptor_dim": "INTEGER",
    "image_size": "TEXT",
    "precision": "TEXT",
    "runtime": "TEXT",
    "index_spec": "TEXT",
    "recall_1": "REAL",
    "recall_5": "REAL",
    "recall_10": "REAL",
    "recall_20": "REAL",
    "params": "INTEGER",
    "flops": "INTEGER",
    "model_bytes": "INTEGER",
    "extraction_ms": "REAL",
    "matching_ms": "REAL",
    "num_database": "INTEGER",
    "database_bytes": "INTEGER",
    "total_ms": "REAL",
    "threads": "INTEGER",
    "cpu": "TEXT",
    "gpu": "TEXT",
    "git_revision": "TEXT",
    "cell_json": "TEXT",
    "config_json": "TEXT",
    "protocol_json": "TEXT",
    "recall_json": "TEXT",
    "cost_json": "TEXT",
    "environment_json": "TEXT",
    "extra_json": "TEXT",
    "metrics_json": "TEXT",  # top-1 precision-recall and mAP@k (evaluate.pr); added to older stores on open
    "descriptor_bits": "INTEGER",  # bits per dimension in the map (search.descriptor_bits); 32 before it existed
    "rerank_ms": "REAL",  # second stage per query (0 without one)
    "patch_bytes": "INTEGER",  # patch descriptors per database image (0 without a second stage)
    "index_fixed_bytes": "INTEGER",  # trained index parameters and binary rotation: fixed, whatever the map size
}
FIELDS = list(COLUMNS)


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ConfigError(f"{self.path}: not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.connection = sqlite3.connect(self.path, timeout=30)
            self.connection.execute("PRAGMA synchronous=FULL")
            self._create()
        except sqlite3.DatabaseError as error:
            raise ConfigError(f"{self.path}: not an edgevpr results store ({error})") from None

    def _create(self) -> None:
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        with self.connection:
            self.connection.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns})")
            self.connection.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            self.connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.connection.execute("CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, owner TEXT, since TEXT)")
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, sweep TEXT, label TEXT, error TEXT, "
                "attempts INTEGER, at TEXT)"
            )
        present = {row[1] for row in self.connection.execute("PRAGMA table_info(runs)")}
        for name in COLUMNS.keys() - present:  # columns added since the store was made
            with self.connection:
                self.connection.execute(f"ALTER TABLE runs ADD COLUMN {name} {COLUMNS[name]}")
        version = self.connection.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()[0]
        if int(version) != SCHEMA_VERSION:
            raise ConfigError(f"{self.path}: store schema {version}, this edgevpr reads {SCHEMA_VERSION}")

    def keys(self) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT key FROM runs")}

    def _write(self, sql: str, params=()) -> None:
        """One statement in its own transaction; a failed write (a full disk) is one line."""
        try:
            with self.connection:
                self.connection.execute(sql, params)
        except sqlite3.OperationalError as error:
            raise ConfigError(f"{self.path}: cannot write the store ({error}); finished rows are kept") from None

    def add(self, row: dict) -> None:
        """Insert one run in its own transaction (and forget its failures and lease); an existing
        key is left untouched."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown store columns {sorted(unknown)}")
        names = list(row)
        try:
            with self.connection:
                self.connection.execute(
                    f"INSERT OR IGNORE INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    [row[name] for name in names],
                )
                self.connection.execute("DELETE FROM failures WHERE key = ?", (row["key"],))
                self.connection.execute("DELETE FROM leases WHERE key = ?", (row["key"],))
        except sqlite3.OperationalError as error:
            raise ConfigError(f"{self.path}: cannot write the store ({error}); finished rows are kept") from None

    # -- leases and failures, for sweeps ---------------------------------------------------
    @staticmethod
    def owner() -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    @staticmethod
    def _owner_alive(owner: str) -> bool:
        host, _, pid = owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return True  # another machine's process: its lease stands
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def claim(self, key: str, owner: str | None = None) -> bool:
        """Take the lease of a cell not yet stored and not being computed by a live process."""
        owner = owner or self.owner()
        try:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                if self.connection.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone():
                    return False
                held = self.connection.execute("SELECT owner FROM leases WHERE key = ?", (key,)).fetchone()
                if held and held[0] != owner and self._owner_alive(held[0]):
                    return False
                self.connection.execute(
                    "INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (key, owner, time.strftime("%Y-%m-%dT%H:%M:%S"))
                )
                return True
            finally:
                self.connection.commit()
        except sqlite3.OperationalError as error:
            raise ConfigError(f"{self.path}: cannot take a lease ({error})") from None

    def release(self, key: str, owner: str | None = None) -> None:
        self._write("DELETE FROM leases WHERE key = ? AND owner = ?", (key, owner or self.owner()))

    def record_failure(self, key: str, sweep: str, label: str, error: str) -> None:
        self._write(
            "INSERT INTO failures VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET error = excluded.error, "
            "attempts = attempts + 1, at = excluded.at",
            (key, sweep, label, error, time.strftime("%Y-%m-%dT%H:%M:%S")),
        )

    def failures(self) -> list[dict]:
        cursor = self.connection.execute("SELECT key, sweep, label, error, attempts, at FROM failures ORDER BY at")
        return [dict(zip(("key", "sweep", "label", "error", "attempts", "at"), row)) for row in cursor]

    def rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        cursor = self.connection.execute(f"SELECT * FROM runs {where} ORDER BY created_at, key", params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values)) for values in cursor]

    def integrity(self) -> str:
        return self.connection.execute("PRAGMA integrity_check").fetchone()[0]

    def export(self, out: str | Path) -> int:
        """Write every row to CSV (``.csv``) or Parquet (``.parquet``); return the row count."""
        from edgevpr.atomic import atomic_path

        out, rows = Path(out), self.rows()
        with atomic_path(out) as temporary:
            if out.suffix == ".csv":
                with open(temporary, "w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=FIELDS)
                    writer.writeheader()
                    writer.writerows(rows)
            elif out.suffix == ".parquet":
                try:
                    import pandas
                except ImportError:
                    raise ConfigError(
                        "Parquet export needs pandas and pyarrow (pip install 'edgevpr[explore]')"
                    ) from None
                pandas.DataFrame(rows, columns=FIELDS).to_parquet(temporary, index=False)
            else:
                raise ConfigError(f"{out}: export to .csv or .parquet")
        return len(rows)

    def close(self) -> None:
        self.connection.close()


def row_from_result(key: str, sweep: str, cell: dict, result: dict, created_at: str) -> dict:
    """Flatten an evaluation result (as ``edgevpr eval`` writes it) into a store row."""
    protocol, cost, recall = result["protocol"], result["cost"], result["recall"]
    environment = result.get("environment", {})
    return {
        "key": key,
        "sweep": sweep,
        "created_at": created_at,
        "dataset": cell.get("dataset") or protocol["dataset"],
        "protocol_name": result["protocol_name"],
        "backbone": result["model"]["backbone"],
        "aggregator": result["model"]["aggregator"],
        "descriptor_dim": result["model"]["descriptor_dim"],
        "image_size": "x".join(str(v) for v in protocol["image_size"]),
        "precision": cell.get("precision") or protocol["precision"],
        "runtime": protocol["runtime"],
        "index_spec": result["search"]["index"],
        **{f"recall_{n}": recall.get(n) for n in ("1", "5", "10", "20")},
        "params": cost["params"],
        "flops": cost["flops"],
        "model_bytes": cost["model_bytes"],
        "extraction_ms": cost["extraction_ms"],
        "matching_ms": cost["matching_ms"],
        "num_database": protocol["num_database"],
        "database_bytes": cost["database_bytes"],
        "total_ms": cost["total_ms"],
        "threads": cost.get("threads"),
        "cpu": environment.get("cpu"),
        "gpu": environment.get("gpu"),
        "git_revision": environment.get("git_revision"),
        "cell_json": json.dumps(cell, sort_keys=True),
        "config_json": json.dumps(result["config"], sort_keys=True),
        "protocol_json": json.dumps(protocol, sort_keys=True),
        "recall_json": json.dumps(recall),
        "cost_json": json.dumps(cost, sort_keys=True),
        "environment_json": json.dumps(environment, sort_keys=True),
        "extra_json": json.dumps(result.get("deployment", {}), sort_keys=True),
        "metrics_json": json.dumps({k: v for k, v in result.get("metrics", {}).items() if k != "pr_curve"}),
        "descriptor_bits": result["search"].get("descriptor_bits", 32),
        "index_fixed_bytes": cost.get("index_fixed_bytes", 0),
        "rerank_ms": cost.get("rerank_ms", 0.0),
        "patch_bytes": cost.get("patch_bytes", 0),
    }
