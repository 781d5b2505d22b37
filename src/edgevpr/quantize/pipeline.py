"""``edgevpr quantize``: build -> fold BN -> export -> (calibrate) -> the precision's graph -> file.

The precisions come from the table in ``precisions`` (fp32, fp16, int8, int4 from the deploy
core; mixed and the --keep-float ranking from ``edgevpr.research`` once it is imported)."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from edgevpr.atomic import atomic_path, check_output
from edgevpr.config import QuantizeConfig, RunConfig
from edgevpr.errors import ConfigError
from edgevpr.extraction.extract import extract
from edgevpr.extraction.patches import PatchModel, PatchSpec
from edgevpr.models import build_model
from edgevpr.models.initialise import initialise_aggregator, needs_initialisation
from edgevpr.models.resolve import adopt_stored_contract, contract_of
from edgevpr.models.size import count_flops, count_params
from edgevpr.quantize.adaround import INT8_ROUNDINGS
from edgevpr.quantize.bn_fold import fold_batchnorm
from edgevpr.quantize.calibration_images import CalibrationImages
from edgevpr.quantize.equalize import equalizable_pairs, equalize
from edgevpr.quantize.gptq import INT4_ROUNDINGS
from edgevpr.quantize.layout_choice import measured_layout, needs_measurement
from edgevpr.quantize.onnx_export import export_onnx, get_metadata, set_metadata
from edgevpr.quantize.precisions import PRECISIONS, RESEARCH_HINT, Export
from edgevpr.quantize.range_choice import ALL_METHODS
from edgevpr.runtime.int8_layout import CHOICES as INT8_LAYOUTS
from edgevpr.runtime.int8_layout import resolve_layout


def prepared_model(config: RunConfig, calib: CalibrationImages | None, contract):
    """The model as it is exported: built, clusters and PCA fitted on the calibration images,
    input size fixed where the backbone needs it, BN folded. Returns (model, example, folded)."""
    if config.data.size is not None:
        size = tuple(config.data.size)
    elif calib is not None:
        size = tuple(next(iter(calib()))[0].shape[-2:])
    else:
        raise ConfigError("give --size HxW (or --calib DIR, whose first image sets the export size)")
    model = build_model(config.model, seed=config.eval.seed)
    if needs_initialisation(model):
        if calib is None:
            raise ConfigError(f"{config.model.aggregator} needs images to initialise its clusters: --calib DIR")
        initialise_aggregator(model, calib.paths, contract, config.eval.seed, config.data.max_pixels)
    if model.pca is not None and not bool(model.pca.fitted):
        if calib is None:
            raise ConfigError("--pca needs images to fit the projection: --calib DIR")
        model.pca.fit(extract(model, calib.paths, contract, batch_size=1, label="fitting PCA").descriptors)
    example = torch.zeros(1, 3, *size)
    if hasattr(model.backbone, "fix_input_size"):
        model.backbone.fix_input_size(*size)
    _check_runs(model.eval(), example)
    folded = fold_batchnorm(model, example)
    return model, example, folded


def equalized_model(model, example: torch.Tensor) -> dict:
    """Cross-layer equalization in place (``quantize.equalize``), with what it did: the pairs
    equalized and the largest range ratio left in one (1 when settled)."""
    pairs = equalizable_pairs(export_onnx(model, example, {}), model, example)
    return {"pairs": len(pairs), "largest_range_ratio": round(equalize(pairs), 4)}


def with_patches(model, config: RunConfig, example: torch.Tensor) -> PatchModel:
    """The prepared model with its patch descriptors as a second output (``extraction.patches``),
    of the spec ``rerank.patch_size``/``patch_stride``, at the export size."""
    patched = PatchModel(model, PatchSpec(tuple(config.rerank.patch_size), tuple(config.rerank.patch_stride)))
    with torch.inference_mode():
        patched.eval()(example)  # sets the feature-map size the patch positions are computed on
    return patched


@torch.inference_mode()
def _check_runs(model, example: torch.Tensor) -> None:
    """One line, before any export, when the model cannot take the export size (too small for its strides)."""
    try:
        model(example)
    except RuntimeError as error:
        detail = (str(error).strip().splitlines() or [error.__class__.__name__])[0][:160]
        height, width = example.shape[-2:]
        raise ConfigError(
            f"--size {height}x{width}: the model cannot run on {height}x{width} images ({detail})"
        ) from None


def check_options(options: QuantizeConfig) -> None:
    """One line for any option that is unknown or does not apply, before any work."""
    if options.precision not in PRECISIONS:
        hint = f" ({RESEARCH_HINT})" if options.precision == "mixed" else ""
        raise ConfigError(f"unknown precision {options.precision!r}; use one of {', '.join(PRECISIONS.names())}{hint}")
    precision = PRECISIONS.get(options.precision)()
    if precision.needs_calibration and not options.calib:
        raise ConfigError(f"{options.precision} needs calibration images: --calib DIR")
    if options.keep_float and options.precision != "int8":
        raise ConfigError(f"--keep-float applies to --precision int8, not {options.precision}")
    if options.keep_float < 0:
        raise ConfigError(f"--keep-float must be >= 0, got {options.keep_float}")
    if options.calib and not Path(options.calib).is_dir():
        raise ConfigError(f"{options.calib}: calibration folder not found")
    if options.calib_count < 1:
        raise ConfigError(f"--calib-count must be at least 1, got {options.calib_count}")
    if not 0 < options.percentile <= 100:
        raise ConfigError(f"--percentile must be in (0, 100], got {options.percentile}")
    if options.int4_rounding not in ("auto", *INT4_ROUNDINGS):
        raise ConfigError(
            f"unknown int4 rounding {options.int4_rounding!r}; use one of auto, {', '.join(INT4_ROUNDINGS)}"
        )
    if options.int8_rounding not in INT8_ROUNDINGS:
        raise ConfigError(f"unknown int8 rounding {options.int8_rounding!r}; use one of {', '.join(INT8_ROUNDINGS)}")
    if options.int8_rounding != "nearest" and options.precision != "int8":
        raise ConfigError(f"--int8-rounding applies to --precision int8, not {options.precision}")
    if options.int8_layout not in INT8_LAYOUTS:
        raise ConfigError(f"unknown int8 layout {options.int8_layout!r}; use one of {', '.join(INT8_LAYOUTS)}")
    if options.calibration not in ALL_METHODS:
        raise ConfigError(f"unknown calibration {options.calibration!r}; use one of {', '.join(ALL_METHODS)}")
    if options.target not in ("cpu", "tensorrt"):
        raise ConfigError(f"unknown target {options.target!r}; use one of cpu, tensorrt")
    precision.check(options)


def quantize_model(config: RunConfig, options: QuantizeConfig | None, out: str, log=None) -> dict:
    """Write the deployed ONNX file of ``config``'s model to ``out`` (atomically); ``options``
    default to ``config.quantize``. Neither argument is changed. ``log`` hears each phase."""
    say = log or (lambda message: None)
    options = options or config.quantize
    check_output(out, "--out")
    check_options(options)
    if needs_measurement(options):  # auto on a CPU without exact u8s8 sums: both layouts, measured
        return measured_layout(quantize_model, config, options, out, log)
    precision = PRECISIONS.get(options.precision)()
    options = precision.prepare(options)
    layout = resolve_layout(options.int8_layout)
    torch.manual_seed(config.eval.seed)
    if config.eval.threads:  # float sums (calibration ranges) depend on the thread count: the recipe fixes it
        torch.set_num_threads(config.eval.threads)
    if config.model.checkpoint:  # calibrated and deployed under the contract it was trained under
        from edgevpr.models.checkpoint import read_checkpoint

        config = adopt_stored_contract(config, read_checkpoint(config.model.checkpoint), config.model.checkpoint)
    contract = contract_of(config)
    calib = (
        CalibrationImages(options.calib, options.calib_count, contract, config.data.max_pixels, options.calib_seed)
        if options.calib
        else None
    )
    say(f"building {config.model.backbone}+{config.model.aggregator}, folding BatchNorm")
    model, example, folded = prepared_model(config, calib, contract)
    descriptor_dim = model.descriptor_dim
    equalized = equalized_model(model, example) if options.equalize else None
    if options.patches:
        model = with_patches(model, config, example)
    metadata = {
        "config": config.to_dict(),
        "contract": contract.to_dict(),
        "params": count_params(model),
        "flops": count_flops(model, tuple(example.shape)),
        "precision": options.precision,
        "target": options.target if options.precision == "int8" else None,
        "calibration": options.calibration if precision.needs_calibration else None,
        "bn_folded": folded,
        "calib_images": None,
        "calib_seed": options.calib_seed,
        "descriptor_dim": descriptor_dim,
    }
    if equalized is not None:
        metadata["equalization"] = equalized
    if options.patches:
        metadata |= {"patch_spec": model.spec.to_dict(), "patch_map_size": list(model.map_size)}
    if precision.integer and not (options.precision == "int8" and options.target == "tensorrt"):
        metadata["int8_layout"] = layout.name
    say(f"exporting to ONNX at {example.shape[-2]}x{example.shape[-1]}")
    proto = export_onnx(model, example, metadata)
    metadata = get_metadata(proto)  # now with dynamic_size and export_size
    if calib is not None and not metadata["dynamic_size"]:
        calib.size = tuple(example.shape[-2:])
    say(f"quantizing to {options.precision}")
    proto = precision.quantize(Export(config, options, layout, model, example, calib, proto, metadata))
    set_metadata(proto, metadata)  # the quantizers do not all keep it
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return {
        "out": out,
        "bytes": Path(out).stat().st_size,
        **{k: metadata.get(k) for k in ("precision", "target", "calibration", "bn_folded", "int8_layout")},
        "kept_float": [entry["layer"] for entry in metadata.get("kept_float", [])],
        "layer_errors": metadata.get("layer_errors"),
        "bias_corrected": (metadata.get("int4_bias_correction") or metadata.get("int8_bias_correction") or {}).get(
            "layers", 0
        ),
    }
