"""One sweep cell through the same code paths as the commands: ``eval`` for fp32, and
``quantize`` then ``eval --onnx`` for the other precisions. Runs anywhere (a local process,
a pool worker or a Ray task) and returns the evaluation result; it never writes the store."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgevpr.config import OutputConfig, load_config
from edgevpr.evaluate.runner import evaluate
from edgevpr.models.resolve import resolve_config
from edgevpr.quantize.pipeline import quantize_model


def run_cell(cell: dict) -> dict:
    """``cell`` is ``Cell.as_dict()``; returns what ``edgevpr eval --out`` would write."""
    config = load_config(overrides=cell["overrides"])
    config.output = OutputConfig()  # a cell writes nothing but its result
    if cell["precision"] == "fp32":
        return evaluate(config, label=cell["label"])
    options = load_config(overrides={"quantize": {"precision": cell["precision"], **cell["quantize"]}}).quantize
    with tempfile.TemporaryDirectory(prefix="edgevpr-cell-") as folder:
        model_file = str(Path(folder) / "model.onnx")
        quantize_model(config, options, model_file)
        # The exported file carries its input contract (normalisation, resize rule, fixed size).
        data = {
            k: v for k, v in cell["overrides"].get("data", {}).items() if k not in ("resize", "size", "resize_factor")
        }
        settings = {name: values for name, values in cell["overrides"].items() if name not in ("model", "data")}
        deployed = load_config(overrides={"data": data, **settings})
        deployed.output = OutputConfig()
        deployed.model.onnx = model_file
        result = evaluate(deployed, label=cell["label"])
    # The stored config is the run's recipe (the model that was quantized, its data and eval
    # settings, and how it was quantized), not the temporary file's: `recommend --write-config`
    # rebuilds the run from it. What evaluate ran is kept beside it.
    result["deployment"] = {**result.get("deployment", {}), "quantize": cell["quantize"], "ran": result["config"]}
    recipe = resolve_config(config).to_dict()
    recipe["quantize"] = {**recipe["quantize"], "precision": cell["precision"], **cell["quantize"]}
    result["config"] = recipe
    return result
