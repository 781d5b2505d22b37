"""Sweep files: a grid (or a list) of cells over one shared protocol.

    name: design-space-small
    base:                      # config sections shared by every cell (as in a run config)
      data: {database: ..., queries: ..., tolerance_frames: 2, resize: 360}
      eval: {latency_runs: 20}
    datasets:                  # optional: named data sections the cells pick with `dataset`
      gardens_point_night: {database: ..., queries: ...}
    quantize: {calib: DIR, calib_count: 50, calibration: percentile, target: cpu}
    grid:                      # every combination of these values is a cell
      backbone: [mobilenetv2, efficientnet_lite0]
      aggregator: [gem, mac]
      dim: [null, 256]
      precision: [fp32, int8]
      index: [Flat]
    list:                      # or (and) explicit cells
      - {backbone: resnet18_conv4, aggregator: netvlad, precision: fp32}

Cell keys are shortcuts (``backbone``, ``aggregator``, ``dim``, ``pca``, ``whiten``,
``weights``, ``pretrained``, ``resize``, ``size``, ``resize_factor``, ``index``,
``search_params``, ``descriptor_bits``, ``descriptor_fit``, ``rerank``, ``rerank_k``, ``matcher``,
``dataset``, ``precision``, ``target``, ``calibration``, and every other key of
the quantize section, such as ``int8_layout`` or ``int4_rounding``) or dotted config paths such
as ``model.aggregator_params`` or ``quantize.mixed_config``. Precisions: fp32, fp16, int8, int4 and mixed
(with ``quantize.mixed_config``). A value may be a mapping ``{name: ..., model: {...}, data:
{...}}`` that bundles settings belonging together (a backbone with its weights); ``name``
labels it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgevpr.config import QuantizeConfig, load_config, read_yaml
from edgevpr.errors import ConfigError

SHORTCUTS = {
    "backbone": "model.backbone",
    "aggregator": "model.aggregator",
    "dim": "model.dim",
    "pca": "model.pca",
    "whiten": "model.whiten",
    "weights": "model.weights",
    "pretrained": "model.pretrained",
    "resize": "data.resize",
    "size": "data.size",
    "resize_factor": "data.resize_factor",
    # the eval section's old paths (config.LEGACY_EVAL_KEYS moves them), so that cell keys and
    # the stores that hold them stay as they were
    "index": "eval.index",
    "search_params": "eval.search_params",
    "descriptor_bits": "eval.descriptor_bits",
    "descriptor_fit": "eval.descriptor_fit",
    "rerank": "eval.rerank",
    "rerank_k": "eval.rerank_k",
    "matcher": "eval.matcher",
}
QUANTIZE_KEYS = tuple(f.name for f in dataclasses.fields(QuantizeConfig) if f.name != "precision")
PRECISIONS = ("fp32", "fp16", "int8", "int4", "mixed")
SECTIONS = ("model", "data", "eval", "search", "rerank")


@dataclass
class Cell:
    overrides: dict  # {"model": {...}, "data": {...}, "eval": {...}}
    precision: str = "fp32"
    quantize: dict = field(default_factory=dict)
    dataset: str | None = None
    label: str = ""

    def key(self) -> str:
        """Hash of everything that defines the cell's result."""
        payload = {
            "overrides": self.overrides,
            "precision": self.precision,
            "quantize": self.quantize if self.precision != "fp32" else {},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:20]

    def as_dict(self) -> dict:
        return {
            "overrides": self.overrides,
            "precision": self.precision,
            "quantize": self.quantize,
            "dataset": self.dataset,
            "label": self.label,
        }


@dataclass
class Sweep:
    name: str
    cells: list[Cell]


def _merge(target: dict, section: str, values: dict) -> None:
    target.setdefault(section, {}).update(values)


def _cell(choice: dict, spec: dict, where: str) -> Cell:
    overrides = copy.deepcopy(spec.get("base") or {})
    quantize = dict(spec.get("quantize") or {})
    precision, dataset, label = "fp32", None, []
    for name, value in choice.items():
        label.append(f"{name}={value if not isinstance(value, dict) else value.get('name', '...')}")
        if name == "precision":
            if value not in PRECISIONS:
                raise ConfigError(f"{where}: precision {value!r} is not one of {', '.join(PRECISIONS)}")
            precision = value
        elif name == "dataset":
            datasets = spec.get("datasets") or {}
            if value not in datasets:
                raise ConfigError(
                    f"{where}: dataset {value!r} is not under datasets: ({', '.join(datasets) or 'none'})"
                )
            overrides["data"] = {**overrides.get("data", {}), **datasets[value]}
            dataset = value
        elif name in QUANTIZE_KEYS or (name.startswith("quantize.") and name[len("quantize.") :] in QUANTIZE_KEYS):
            quantize[name.removeprefix("quantize.")] = value
        elif isinstance(value, dict):  # a bundle: {name: ..., model: {...}, data: {...}, eval: {...}}
            unknown = set(value) - {"name", *SECTIONS}
            if unknown:
                raise ConfigError(
                    f"{where}: a grid value that is a mapping holds name and {', '.join(SECTIONS)} "
                    f"sections; found {sorted(unknown)}"
                )
            for section in SECTIONS:
                _merge(overrides, section, value.get(section) or {})
        else:
            path = SHORTCUTS.get(name, name)
            if "." not in path or path.split(".")[0] not in SECTIONS:
                raise ConfigError(
                    f"{where}: unknown cell key {name!r}; use {', '.join(sorted(SHORTCUTS))}, "
                    f"dataset, precision, {', '.join(QUANTIZE_KEYS)} or section.key"
                )
            section, key = path.split(".", 1)
            _merge(overrides, section, {key: value})
    if precision == "mixed" and not quantize.get("mixed_config"):
        raise ConfigError(f"{where}: a mixed cell needs quantize.mixed_config (a file of `edgevpr search-precision`)")
    try:
        load_config(overrides=overrides | {"quantize": quantize})  # every cell is a valid config before anything runs
    except ConfigError as error:
        raise ConfigError(f"{where}: cell {' '.join(label)}: {error}") from None
    return Cell(overrides, precision, quantize, dataset, " ".join(label))


def parse_sweep(spec: dict, where: str) -> Sweep:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a sweep file is a mapping with grid: and/or list:")
    unknown = set(spec) - {"name", "base", "datasets", "quantize", "grid", "list"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level keys {sorted(unknown)}")
    choices = []
    grid = spec.get("grid") or {}
    if grid:
        if not all(isinstance(v, list) and v for v in grid.values()):
            raise ConfigError(f"{where}: every grid entry must be a non-empty list")
        names = list(grid)
        choices += [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    choices += list(spec.get("list") or [])
    if not choices:
        raise ConfigError(f"{where}: no cells (give grid: or list:)")
    cells = [_cell(choice, spec, where) for choice in choices]
    return Sweep(str(spec.get("name") or Path(where).stem), cells)


def load_sweep(path: str | Path) -> Sweep:
    return parse_sweep(read_yaml(path, "sweep file"), str(path))
