"""``edgevpr search-precision``: per-layer precision under an average bit-width budget.

Steps: build and fold the model as ``quantize`` exports it; load L calibration images;
calibrate each searchable layer's input range; round each layer's int4 weights by GPTQ on the
same images (``int4_rounding="gptq"``; the default ``"nearest"`` rounds to nearest) and, with
``bias_correction``, measure the int4 layers' corrected biases; measure each layer's
sensitivity (descriptor error with only that layer at int4, and at int8) once and save it
beside the output; run the genetic search (Algorithm 1) and, in the same run and with the
same number of fitness evaluations, random search, plus the greedy assignment by sensitivity
and uniform int8/int4; write the configuration JSON and its plots.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from edgevpr import charts
from edgevpr.atomic import read_json, write_json
from edgevpr.config import RunConfig
from edgevpr.errors import ConfigError
from edgevpr.models.resolve import contract_of
from edgevpr.progress import Progress
from edgevpr.quantize import calibration
from edgevpr.quantize.calibration_images import CalibrationImages
from edgevpr.quantize.gptq import int4_levels
from edgevpr.quantize.layers import node_of_layer, searchable_layers
from edgevpr.quantize.onnx_export import export_onnx
from edgevpr.quantize.pipeline import prepared_model
from edgevpr.quantize.range_choice import activation_ranges
from edgevpr.research.genetic import (
    WEIGHTINGS,
    Problem,
    SearchSettings,
    average_bits,
    genetic_search,
    greedy_by_sensitivity,
    layer_weights,
    random_search,
    uniform,
)
from edgevpr.research.mixed_export import FORMAT, quantized_graph
from edgevpr.research.simulate import BITS, Simulator
from edgevpr.runtime.int8_layout import resolve_layout

SIMULATION = 5  # bump when the simulated quantization changes, so saved sensitivities are not reused


@dataclass
class MixedOptions:
    search: SearchSettings
    calib: str
    calib_count: int = 16  # L
    calibration: str = "percentile"
    percentile: float = 99.999
    baselines: bool = True
    sensitivity_file: str | None = None  # default OUT.sensitivity.json; share it across budgets
    # int4 layers: correct the bias for the mean shift of their weights' error. Off by default: on
    # Gardens Point it lowered the day-image fitness but cost night recall at B = 6 and B = 8
    bias_correction: bool = False
    # int4 levels rounded to nearest, or by GPTQ on the calibration images. On Gardens Point GPTQ
    # raised deployed night R@1 at B <= 6 (B = 6: 49.5 against 45.5) but not at B = 8 (50.0
    # against 51.0), and its int4 depthwise layers keep the simulation within 1 point of the
    # deployed file rather than 0.5 (benchmarks/mixed_precision_gardens_point.py)
    int4_rounding: str = "nearest"
    # the int8 layers' layout (int8_layout): auto = exact arithmetic on this machine, so that the
    # simulation computes what this machine's deployed file computes
    int8_layout: str = "auto"


def mixed_options(config: RunConfig) -> MixedOptions:
    """The search's options from a run config's ``precision_search`` and ``quantize`` sections;
    the int4 options' ``auto`` means no bias correction and nearest rounding in a search."""
    search, quantize = config.precision_search, config.quantize
    if search.budget is None:
        raise ConfigError("search-precision needs a budget: --budget B (or precision_search.budget)")
    if not quantize.calib:
        raise ConfigError("search-precision needs calibration images: --calib DIR (or quantize.calib)")
    if search.fitness_images < 1:
        raise ConfigError(f"--calib-count must be at least 1, got {search.fitness_images}")
    settings = SearchSettings(
        search.budget,
        search.population,
        search.sample,
        search.mutation,
        search.steps,
        search.time_limit_s,
        search.seed,
        search.weighting,
        search.warm_start,
        search.fill,
    )
    return MixedOptions(
        settings,
        quantize.calib,
        search.fitness_images,
        quantize.calibration,
        quantize.percentile,
        bias_correction=bool(quantize.bias_correction),
        int4_rounding="nearest" if quantize.int4_rounding == "auto" else quantize.int4_rounding,
        int8_layout=quantize.int8_layout,
    )


def _paths(out: str | Path) -> dict[str, Path]:
    out = Path(out)
    stem = out.with_suffix("")
    return {
        "out": out,
        "sensitivity": Path(f"{stem}.sensitivity.json"),
        "state": Path(f"{stem}.state.json"),
        "sensitivity_png": Path(f"{stem}.sensitivity.png"),
        "bits_png": Path(f"{stem}.bits.png"),
    }


def build_simulator(config: RunConfig, options: MixedOptions) -> tuple[Simulator, CalibrationImages]:
    """The BN-folded model with switchable layer precisions; activation ranges are calibrated on
    its ONNX export, exactly as ``edgevpr quantize --precision mixed`` calibrates them."""
    if not Path(options.calib).is_dir():
        raise ConfigError(f"{options.calib}: calibration folder not found")
    torch.manual_seed(config.eval.seed)
    if config.eval.threads:
        torch.set_num_threads(config.eval.threads)
    preprocess = contract_of(config)
    calib = CalibrationImages(options.calib, options.calib_count, preprocess, config.data.max_pixels)
    model, example, _ = prepared_model(config, calib, preprocess)
    calib.size = tuple(example.shape[-2:])
    images = calib.batch()
    layers = searchable_layers(model, example)
    int4 = int4_levels(model, layers, lambda: images, options.int4_rounding)
    proto = export_onnx(model, example, {})

    def loaded():  # the images already decoded, one at a time, as `calib()` yields them
        return (images[i : i + 1].numpy() for i in range(len(images)))

    stats = calibration.collect(proto, loaded, threads=config.eval.threads)
    tensor_ranges, _ = activation_ranges(
        proto, stats, loaded, options.calibration, False, options.percentile, config.eval.threads
    )
    graph = quantized_graph(
        proto, node_of_layer(proto, layers), tensor_ranges, resolve_layout(options.int8_layout).weight_max
    )
    return Simulator(model, layers, graph, images, options.bias_correction, int4), calib


def search_signature(config: RunConfig, options: MixedOptions) -> str:
    """What a saved sensitivity or search state depends on besides the search settings."""
    payload = {
        "simulation": SIMULATION,
        "model": config.to_dict()["model"],
        "data": config.to_dict()["data"],
        "calib": options.calib,
        "calib_count": options.calib_count,
        "calibration": options.calibration,
        "percentile": options.percentile,
        "bias_correction": options.bias_correction,
        "int4_rounding": options.int4_rounding,
        "int8_layout": resolve_layout(options.int8_layout).name,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:16]


def layer_sensitivity(simulator: Simulator, path: Path, signature: str, log: Callable[[str], None]) -> dict:
    """Descriptor error with one layer at int4 (and int8), every other layer in fp16; saved."""
    if path.is_file():
        saved = read_json(path, "layer sensitivity file")
        if saved.get("signature") == signature:
            log(f"layer sensitivity: reusing {path}")
            return saved
    names = [layer.name for layer in simulator.layers]
    result = {"signature": signature, "layers": names, "params": [layer.params for layer in simulator.layers]}
    with Progress(2 * len(names), "layer sensitivity", "eval") as bar:
        for precision in ("int4", "int8"):
            result[precision] = simulator.one_layer_errors(precision, "fp16", bar.update)
    result["fp16_everywhere"] = -simulator.fitness(["fp16"] * len(names))
    write_json(path, result)
    return result


def search_precision(
    config: RunConfig, options: MixedOptions, out: str | Path, log: Callable[[str], None] = print
) -> dict:
    paths = _paths(out)
    started = time.monotonic()
    simulator, calib = build_simulator(config, options)
    log(
        f"{len(simulator.layers)} searchable layers; {len(simulator.images)} calibration images "
        f"({options.calibration} ranges)"
    )
    sensitivity_file = Path(options.sensitivity_file) if options.sensitivity_file else paths["sensitivity"]
    signature = search_signature(config, options)
    sensitivity = layer_sensitivity(simulator, sensitivity_file, signature, log)
    charts.per_layer_values(
        {"int4": sensitivity["int4"], "int8": sensitivity["int8"]},
        paths["sensitivity_png"],
        "descriptor error with one layer quantized",
    )
    settings = options.search
    resumed = paths["state"].is_file()
    problem = Problem(
        [layer.params for layer in simulator.layers],
        {"int4": sensitivity["int4"], "int8": sensitivity["int8"]},
        settings.budget,
        settings.weighting,
    )
    with Progress(settings.steps, "genetic search", "step") as bar:

        def progress(state):
            bar.set(state.step, best=f"{state.history[-1]:.3g}", evaluations=state.evaluations)

        best, best_fitness, state = genetic_search(
            problem, simulator.fitness, settings, paths["state"], progress, fingerprint=signature
        )
    result = {
        "format": FORMAT,
        "budget": settings.budget,
        "weighting": settings.weighting,
        "average_bits": problem.average_bits(best),
        "fitness": best_fitness,
        **{f"average_bits_{w}": average_bits(best, layer_weights(problem.params, w)) for w in WEIGHTINGS},
        "calibration": options.calibration,
        "percentile": options.percentile,
        "calib": options.calib,
        "bias_correction": options.bias_correction,
        "int4_rounding": options.int4_rounding,
        "int8_layout": resolve_layout(options.int8_layout).name,
        "calib_count": len(simulator.images),
        "settings": asdict(settings),
        "evaluations": state.evaluations,
        "resumed": resumed,
        "genetic_seconds": round(state.seconds, 1),  # the search steps, over every run
        "history": state.history,
        "layers": [
            {"name": layer.name, "precision": precision, "params": layer.params}
            for layer, precision in zip(simulator.layers, best)
        ],
        "model": config.to_dict()["model"],
        "data": config.to_dict()["data"],
    }
    if options.baselines:
        _, random_fitness, _ = random_search(
            problem,
            simulator.fitness,
            state.evaluations,
            settings.seed,
            warm_start=settings.warm_start,
            fill=settings.fill,
        )
        greedy = greedy_by_sensitivity(problem)
        result["baselines"] = {
            "random_search": {"fitness": random_fitness, "evaluations": state.evaluations},
            "greedy_by_sensitivity": {
                "fitness": simulator.fitness(greedy),
                "average_bits": problem.average_bits(greedy),
            },
            **{
                f"uniform_{p}": {
                    "fitness": simulator.fitness(uniform(problem, p)),
                    "average_bits": BITS[p],
                    "feasible": BITS[p] <= settings.budget,
                }
                for p in ("int8", "int4")
            },
        }
    result["seconds"] = round(time.monotonic() - started, 1)
    write_json(paths["out"], result)
    charts.bits_per_layer(
        [BITS[p] for p in best],
        paths["bits_png"],
        f"bits per layer, B = {settings.budget:g} ({settings.weighting}), average {result['average_bits']:.2f}",
    )
    return result
