"""``edgevpr quantize``: build -> fold BN -> export -> (calibrate) -> fp16 / int8 / int4 -> file."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from tqdm import tqdm

from edgevpr.atomic import atomic_path
from edgevpr.config import RunConfig
from edgevpr.data.images import list_images
from edgevpr.errors import ConfigError
from edgevpr.evaluate.cost import count_flops, count_params
from edgevpr.evaluate.extract import extract, initialise_aggregator, iterate_images
from edgevpr.models import build_model
from edgevpr.quantize import calibration
from edgevpr.quantize.bias_correction import correct_biases
from edgevpr.quantize.bn_fold import fold_batchnorm
from edgevpr.quantize.fallback import most_sensitive_layers
from edgevpr.quantize.gptq import INT4_ROUNDINGS, dequantized, int4_levels
from edgevpr.quantize.input_channels import widen_input_conv
from edgevpr.quantize.int4 import MIN_ELEMENTS, to_int4_weights
from edgevpr.quantize.int8_layout import CHOICES as INT8_LAYOUTS
from edgevpr.quantize.int8_layout import LEGACY, QDQ_CHOICES, resolve_layout
from edgevpr.quantize.mixed_export import node_of_layer, read_mixed_config, to_mixed
from edgevpr.quantize.onnx_export import export_onnx, get_metadata, set_metadata
from edgevpr.quantize.ptq import to_fp16, to_int8
from edgevpr.quantize.simulate import quantized_weight, searchable_layers

PRECISIONS = ("fp32", "fp16", "int8", "int4", "mixed")


@dataclass
class QuantizeOptions:
    precision: str = "int8"
    target: str = "cpu"
    calibration: str = "percentile"  # measured best on Gardens Point (benchmarks/quantization_gardens_point.py)
    calib: str | None = None
    calib_count: int = 50
    percentile: float = 99.999
    mixed_config: str | None = None  # per-layer precisions from `edgevpr search-precision`
    keep_float: int = 0  # int8: leave this many of the most sensitive layers in float
    bias_correction: bool = True  # int4 (with --calib): correct biases for the weights' error; mixed: as searched
    int4_rounding: str = "gptq"  # int4 with --calib: GPTQ levels (else nearest); mixed: as searched
    int8_layout: str = "auto"  # cpu target: u8s8 | u8s7 | s8s8; auto = exact on the quantizing machine (int8_layout)


class CalibrationImages:
    """Preprocessed calibration images, re-iterable, one at a time, all of the export size."""

    def __init__(self, folder: str, count: int, preprocess, max_pixels: int):
        self.paths = list_images(folder)[:count]
        self.preprocess, self.max_pixels = preprocess, max_pixels
        self.size: tuple[int, int] | None = None

    def __call__(self):
        for indices, images in iterate_images(self.paths, self.preprocess, batch_size=1, max_pixels=self.max_pixels,
                                              label="calibration"):
            size = tuple(images.shape[-2:])
            if self.size is not None and size != self.size:
                raise ConfigError(f"{self.paths[indices[0]]}: calibration image is {size[0]}x{size[1]} after resizing, "
                                  f"the model is exported at {self.size[0]}x{self.size[1]}; give --size HxW")
            yield images.numpy()

    def batch(self, limit: int | None = None) -> torch.Tensor:
        """The first ``limit`` images (all by default), decoded, as one (N, 3, H, W) tensor."""
        return torch.cat([torch.from_numpy(images) for images in itertools.islice(self(), limit)])


def prepared_model(config: RunConfig, calib: CalibrationImages | None, preprocess):
    """The model as it is exported: built, clusters and PCA fitted on the calibration images,
    input size fixed where the backbone needs it, BN folded. Returns (model, example, folded)."""
    if config.data.size is not None:
        size = tuple(config.data.size)
    elif calib is not None:
        size = tuple(next(iter(calib()))[0].shape[-2:])
    else:
        raise ConfigError("give --size HxW (or --calib DIR, whose first image sets the export size)")
    model = build_model(config.model)
    if hasattr(model.aggregator, "init_from_features") and not bool(model.aggregator.initialised):
        if calib is None:
            raise ConfigError(f"{config.model.aggregator} needs images to initialise its clusters: --calib DIR")
        initialise_aggregator(model, calib.paths, preprocess, config.eval.seed, config.data.max_pixels)
    if model.pca is not None and not bool(model.pca.fitted):
        if calib is None:
            raise ConfigError("--pca needs images to fit the projection: --calib DIR")
        model.pca.fit(extract(model, calib.paths, preprocess, batch_size=1, label="fitting PCA").descriptors)
    example = torch.zeros(1, 3, *size)
    if hasattr(model.backbone, "fix_input_size"):
        model.backbone.fix_input_size(*size)
    folded = fold_batchnorm(model, example)
    return model, example, folded


def check_options(options: QuantizeOptions) -> None:
    if options.precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {options.precision!r}; use one of {', '.join(PRECISIONS)}")
    if options.precision in ("int8", "mixed") and not options.calib:
        raise ConfigError(f"{options.precision} needs calibration images: --calib DIR")
    if options.keep_float and options.precision != "int8":
        raise ConfigError(f"--keep-float applies to --precision int8, not {options.precision}")
    if options.keep_float < 0:
        raise ConfigError(f"--keep-float must be >= 0, got {options.keep_float}")
    if options.precision == "mixed" and not options.mixed_config:
        raise ConfigError("--precision mixed needs --mixed-config FILE (from `edgevpr search-precision`)")
    if options.calib and not Path(options.calib).is_dir():
        raise ConfigError(f"{options.calib}: calibration folder not found")
    if options.int4_rounding not in INT4_ROUNDINGS:
        raise ConfigError(f"unknown int4 rounding {options.int4_rounding!r}; use one of {', '.join(INT4_ROUNDINGS)}")
    if options.int8_layout not in INT8_LAYOUTS:
        raise ConfigError(f"unknown int8 layout {options.int8_layout!r}; use one of {', '.join(INT8_LAYOUTS)}")
    if options.precision == "mixed" and options.int8_layout not in QDQ_CHOICES:
        raise ConfigError(f"int8 layout {options.int8_layout} is for --precision int8; mixed precision takes "
                          f"{', '.join(QDQ_CHOICES)}")
    if options.calibration not in calibration.METHODS:
        raise ConfigError(f"unknown calibration {options.calibration!r}; use one of {', '.join(calibration.METHODS)}")


def quantize_model(config: RunConfig, options: QuantizeOptions, out: str) -> dict:
    from edgevpr.evaluate.runner import preprocess_from

    check_options(options)
    mixed = read_mixed_config(options.mixed_config) if options.precision == "mixed" else None
    needs_calibration = options.precision in ("int8", "mixed")
    if mixed is not None:  # the ranges and the int8 layout the search simulated with
        options = dataclasses.replace(options, calibration=mixed["calibration"], calib_count=mixed["calib_count"],
                                      percentile=mixed.get("percentile", options.percentile),
                                      int8_layout=mixed.get("int8_layout", LEGACY))
    layout = resolve_layout(options.int8_layout)
    torch.manual_seed(config.eval.seed)
    preprocess = preprocess_from(config)
    calib = CalibrationImages(options.calib, options.calib_count, preprocess, config.data.max_pixels) if options.calib else None
    model, example, folded = prepared_model(config, calib, preprocess)
    metadata = {
        "config": config.to_dict(), "params": count_params(model), "flops": count_flops(model, tuple(example.shape)),
        "precision": options.precision, "target": options.target if options.precision == "int8" else None,
        "calibration": options.calibration if needs_calibration else None, "bn_folded": folded,
        "calib_images": None, "descriptor_dim": model.descriptor_dim,
    }
    if options.precision == "mixed" or (options.precision == "int8" and options.target == "cpu"):
        metadata["int8_layout"] = layout.name
    proto = export_onnx(model, example, metadata)
    metadata = get_metadata(proto)  # now with dynamic_size and export_size
    if calib is not None and not metadata["dynamic_size"]:
        calib.size = tuple(example.shape[-2:])

    if options.precision == "fp16":
        proto = to_fp16(proto)
    elif options.precision == "int4":
        levels = {}
        if calib is not None:
            layers = [layer for layer in searchable_layers(model, example) if layer.module.weight.numel() >= MIN_ELEMENTS]
            proto, int4 = _int4_weights(model, example, calib, layers, options.int4_rounding, options.bias_correction,
                                        metadata, proto)
            nodes = node_of_layer(proto, [layer for layer in layers if layer.name in int4])
            levels = {nodes[name]: layer_levels for name, layer_levels in int4.items()}
        proto = to_int4_weights(proto, levels=levels)
    elif needs_calibration:
        with tqdm(total=2 * len(calib.paths), desc="calibrating", unit="img", leave=False, disable=None) as bar:
            stats = calibration.collect(proto, calib, threads=config.eval.threads, progress=bar.update)
        metadata["calib_images"] = stats.images
        if mixed is None:
            ranges = calibration.ranges(stats, options.calibration, symmetric=options.target == "tensorrt",
                                        percentile=options.percentile)
            kept = []
            if options.keep_float:
                uint8_ranges = ranges if options.target == "cpu" else calibration.ranges(
                    stats, options.calibration, symmetric=False, percentile=options.percentile)
                kept = most_sensitive_layers(model, example, proto, calib, uint8_ranges, options.keep_float,
                                             layout.weight_max)
                metadata["kept_float"] = [{k: entry[k] for k in ("layer", "error")} for entry in kept]
            proto = to_int8(proto, ranges, options.target, keep_float=[entry["node"] for entry in kept], layout=layout)
            if options.target == "cpu":
                metadata["stem_channels_widened"] = widen_input_conv(proto)
        else:
            ranges = calibration.ranges(stats, options.calibration, symmetric=False, percentile=options.percentile)
            int4_names = {layer["name"] for layer in mixed["layers"] if layer["precision"] == "int4"}
            # after calibration: the search calibrated the uncorrected model
            proto, int4 = _int4_weights(model, example, calib,
                                        [layer for layer in searchable_layers(model, example) if layer.name in int4_names],
                                        mixed.get("int4_rounding", "nearest"), mixed.get("bias_correction", False),
                                        metadata, proto)
            proto, metadata["layer_bits"] = to_mixed(proto, model, example, mixed, ranges, int4, layout)
            metadata["mixed"] = {k: mixed[k] for k in ("budget", "weighting", "average_bits", "fitness")}
    set_metadata(proto, metadata)  # the quantizers do not all keep it
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return {"out": out, "bytes": Path(out).stat().st_size,
            **{k: metadata.get(k) for k in ("precision", "target", "calibration", "bn_folded", "int8_layout")},
            "kept_float": [entry["layer"] for entry in metadata.get("kept_float", [])],
            "bias_corrected": metadata.get("int4_bias_correction", {}).get("layers", 0)}


def _int4_weights(model, example, calib: CalibrationImages, layers, rounding: str, bias_correction: bool,
                  metadata: dict, proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """The int4 levels of ``layers`` by ``rounding`` (GPTQ reads the fp32 model, so before any
    bias moves), then, if asked, their biases corrected for those weights and the model exported
    again. Returns the export and the levels by layer name (none for nearest rounding)."""
    int4 = int4_levels(model, layers, calib.batch, rounding)
    metadata["int4_rounding"] = rounding
    if bias_correction:
        proto = _bias_corrected_export(model, example, calib, layers, metadata, int4)
    return proto, int4


def _bias_corrected_export(model, example, calib: CalibrationImages, layers, metadata: dict, int4: dict):
    """Correct the biases of ``layers``, which will hold int4 weights (their levels from
    ``int4`` where it has them, else rounded to nearest), on the calibration images, and export
    again."""
    model.eval()
    modules = {layer.name: layer.module for layer in layers}
    quantized = {name: dequantized(*int4[name]) if name in int4 else quantized_weight(module.weight.detach(), "int4")
                 for name, module in modules.items()}
    correct_biases(model, modules, quantized, (torch.from_numpy(batch) for batch in calib()))
    metadata["int4_bias_correction"] = {"layers": len(layers), "images": len(calib.paths)}
    return export_onnx(model, example, metadata)
