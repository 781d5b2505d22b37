"""A training run's folder: the resolved config, the log, per-epoch metrics and checkpoints.

RUN/config.yaml     the resolved config (what --resume checks against)
RUN/train.log       everything the run printed
RUN/metrics.json    one entry per finished epoch, plus the final test result
RUN/last.pt         written at the end of every epoch (what --resume continues from)
RUN/best.pt         the model with the best validation Recall@5 so far
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import yaml

from edgevpr.atomic import atomic_path, write_json
from edgevpr.config import RunConfig
from edgevpr.errors import ConfigError

IGNORED_ON_RESUME = {("train", "resume")}


def plain(config: RunConfig) -> dict:
    """The config as YAML/JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(config.to_dict()))


def _differences(saved: dict, current: dict, prefix=()) -> list[str]:
    keys = sorted(set(saved) | set(current))
    found = []
    for key in keys:
        where = (*prefix, key)
        if where in IGNORED_ON_RESUME:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, where)
        elif a != b:
            found.append(f"{'.'.join(where)}: {a!r} -> {b!r}")
    return found


class RunFolder:
    def __init__(self, config: RunConfig, main: bool = True):
        self.path = Path(config.train.run_dir or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}")
        config.train.run_dir = str(self.path)
        self.main = main
        config_file = self.path / "config.yaml"
        if config.train.resume:
            if not config_file.is_file():
                raise ConfigError(f"{config_file}: nothing to resume (no config.yaml in the run folder)")
            changed = _differences(yaml.safe_load(config_file.read_text()), plain(config))
            if changed:
                raise ConfigError(f"{config_file}: --resume needs the same config; changed: {'; '.join(changed[:4])}")
        elif main:
            if self.last.exists():
                raise ConfigError(
                    f"{self.path}: already holds a run; pass --resume to continue it or choose another --run-dir"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            with atomic_path(config_file) as temporary:
                temporary.write_text(yaml.safe_dump(plain(config), sort_keys=False))
        self.log = self._logger()

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    def _logger(self) -> logging.Logger:
        logger = logging.getLogger(f"edgevpr.train.{self.path.resolve()}")
        logger.setLevel(logging.INFO if self.main else logging.WARNING)
        logger.propagate = False
        if not logger.handlers:
            formatter = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
            stream = logging.StreamHandler()
            stream.setFormatter(formatter)
            logger.addHandler(stream)
            if self.main:
                handler = logging.FileHandler(self.path / "train.log")
                handler.setFormatter(formatter)
                logger.addHandler(handler)
        return logger

    def write_metrics(self, metrics: dict) -> None:
        if self.main:
            write_json(self.path / "metrics.json", metrics)

    def close(self) -> None:
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)
