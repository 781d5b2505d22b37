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
    settings = config.eval
    return {
        "index": settings.index,
        "params": settings.search_params,
        "descriptor_bits": settings.descriptor_bits,
        "descriptor_fit": settings.descriptor_fit,
        "binary_rotation": settings.binary_rotation,
        "int8_scale": settings.int8_scale,
        "patches": PatchSpec(tuple(settings.patch_size), tuple(settings.patch_stride)) if settings.rerank else None,
        "patch_dim": settings.patch_dim,
        "patch_bits": settings.patch_bits,
    }
