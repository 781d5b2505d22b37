"""A recipe (``recommend --write-config``, or any config with a ``quantize`` section) as the
map's model: the precision it names, deployed the way ``edgevpr quantize`` deploys it, so that
``map build --config RECIPE`` runs what the recipe's stored run measured. Imported only by the
commands that build maps from recipes (it imports the quantize pipeline)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgevpr.config import RunConfig, read_yaml
from edgevpr.extraction.patches import PatchSpec
from edgevpr.maps.map import ModelSource


@contextlib.contextmanager
def recipe_source(config: RunConfig, recipe_file, near: Path, log=None) -> Iterator[ModelSource]:
    """The model of ``config`` (read from ``recipe_file``, or from flags alone when it is None):
    its PyTorch model, or, when the file has a ``quantize`` section, the ONNX file of
    ``config.quantize``, written beside ``near`` for as long as the block runs (the map keeps
    its own copy)."""
    quantized = bool(recipe_file and (read_yaml(recipe_file) or {}).get("quantize"))
    if not quantized or config.quantize.precision == "fp32":
        yield ModelSource(config=config)
        return
    from edgevpr.quantize.pipeline import quantize_model

    near.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{near.name}.", dir=near.parent) as folder:
        model_file = Path(folder) / "model.onnx"
        if log:
            log(f"deploying the recipe's model as {config.quantize.precision} (as `edgevpr quantize --config`)")
        quantize_model(config, None, str(model_file), log=log)
        yield ModelSource(onnx=str(model_file))


def recipe_map_options(config: RunConfig) -> dict:
    """The map options a recipe's eval section fixes: index, search parameters, descriptor
    bits and their codec, and patches when the run re-ranked."""
    search, rerank = config.search, config.rerank
    return {
        "index": search.index,
        "params": search.params,
        "descriptor_bits": search.descriptor_bits,
        "descriptor_fit": search.descriptor_fit,
        "binary_rotation": search.binary_rotation,
        "int8_scale": search.int8_scale,
        "patches": PatchSpec(tuple(rerank.patch_size), tuple(rerank.patch_stride)) if rerank.name else None,
        "patch_dim": rerank.patch_dim,
        "patch_bits": rerank.patch_bits,
    }
