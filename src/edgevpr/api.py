"""The public Python API: what the commands do, as functions (re-exported by ``edgevpr``).

    import edgevpr
    config = edgevpr.load_config("configs/mobilenetv2_gem.yaml", overrides={"data": {...}})
    result = edgevpr.evaluate_model(config)            # the JSON `edgevpr eval` writes
    edgevpr.quantize_model(config, "model.onnx")       # config.quantize says how
    index = edgevpr.build_index(descriptors, "IVF1024,PQ64,Rerank1000")
    place = edgevpr.Map.load("my-map").localize("frame.jpg")

The names differ from the subpackages (``edgevpr.evaluate``, ``edgevpr.quantize``, ...), which
Python would otherwise return in their place. ``edgevpr.__all__`` lists the same names.
"""

from __future__ import annotations

from pathlib import Path

import edgevpr.research  # noqa: F401  (mixed precision and --keep-float, as the CLI has them)
from edgevpr.config import RunConfig as RunConfig
from edgevpr.config import load_config as load_config
from edgevpr.contract import InputContract as InputContract
from edgevpr.evaluate.runner import evaluate as evaluate_model  # noqa: F401
from edgevpr.explore.recommend import recommend as _recommend
from edgevpr.explore.store import Store
from edgevpr.explore.sweep import run_sweep as _run_sweep
from edgevpr.explore.sweep_file import load_sweep
from edgevpr.maps import Localizer as Localizer
from edgevpr.maps import Map as Map
from edgevpr.maps import ModelSource as ModelSource
from edgevpr.models import build_model as build_model
from edgevpr.models.resolve import contract_of as contract_of
from edgevpr.models.resolve import resolve_config as resolve_config
from edgevpr.public_names import PUBLIC
from edgevpr.quantize.pipeline import quantize_model as _quantize_model
from edgevpr.search.index import build_index as build_index
from edgevpr.search.index import search as search_index  # noqa: F401
from edgevpr.search.store import load_index as load_index
from edgevpr.search.store import save_index as save_index
from edgevpr.train.loop import train as train_model  # noqa: F401

__all__ = list(PUBLIC)  # edgevpr.public_names; the imports above re-export them


def quantize_model(config: RunConfig, out: str | Path) -> dict:
    """``edgevpr quantize``: write ``config``'s model, deployed as ``config.quantize`` says, to ``out``."""
    return _quantize_model(config, None, str(out))


def run_sweep(sweep_file: str | Path, store: str | Path, jobs: int = 1, log=print) -> dict:
    """``edgevpr sweep``: every cell of the file not yet in the store, one row per cell."""
    opened = Store(store)
    try:
        return _run_sweep(load_sweep(sweep_file), opened, jobs, None, 1.0, log=log)
    finally:
        opened.close()


def recommend(
    store: str | Path, memory_bytes: float, latency_ms: float, map_size: int, dataset: str | None = None
) -> dict:
    """``edgevpr recommend``: the stored run with the best Recall@1 that fits the budget."""
    opened = Store(store)
    try:
        return _recommend(opened.rows(), memory_bytes, latency_ms, map_size, dataset)
    finally:
        opened.close()
