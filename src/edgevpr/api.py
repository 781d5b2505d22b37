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

from edgevpr.public_names import PUBLIC, load_public

__all__ = sorted(PUBLIC)


def __getattr__(name: str):
    if name in PUBLIC:
        return load_public(name)
    raise AttributeError(f"module 'edgevpr.api' has no attribute {name!r}")


def quantize_model(config, out: str | Path) -> dict:
    """``edgevpr quantize``: write ``config``'s model (a ``RunConfig``), deployed as
    ``config.quantize`` says, to ``out``."""
    from edgevpr.quantize.pipeline import quantize_model as quantize

    return quantize(config, None, str(out))


def run_sweep(sweep_file: str | Path, store: str | Path, jobs: int = 1, log=print) -> dict:
    """``edgevpr sweep``: every cell of the file not yet in the store, one row per cell."""
    from edgevpr.explore.store import Store
    from edgevpr.explore.sweep import run_sweep as sweep
    from edgevpr.explore.sweep_file import load_sweep

    opened = Store(store)
    try:
        return sweep(load_sweep(sweep_file), opened, jobs, None, 1.0, log=log)
    finally:
        opened.close()


def recommend(
    store: str | Path, memory_bytes: float, latency_ms: float, map_size: int, dataset: str | None = None
) -> dict:
    """``edgevpr recommend``: the stored run with the best Recall@1 that fits the budget."""
    from edgevpr.explore.recommend import recommend as best_fit
    from edgevpr.explore.store import Store

    opened = Store(store)
    try:
        return best_fit(opened.rows(), memory_bytes, latency_ms, map_size, dataset)
    finally:
        opened.close()
