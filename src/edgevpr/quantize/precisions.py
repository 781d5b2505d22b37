"""The deploy pipeline's table of precisions: each name maps to a ``Precision`` that checks its
options and turns the exported fp32 graph into the deployed one.

The deploy core registers fp32, fp16, int8 and int4 here. Research code plugs in the same way,
without the core importing it: ``edgevpr.research`` registers ``mixed`` in ``PRECISIONS`` and
the sensitivity ranking behind ``--keep-float`` in ``FLOAT_LAYER_CHOOSERS``. Adding a precision
is one file with a ``Precision`` subclass and its ``PRECISIONS.register(...)``."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch

from edgevpr.config import QuantizeConfig, RunConfig
from edgevpr.errors import ConfigError
from edgevpr.progress import Progress
from edgevpr.quantize import calibration
from edgevpr.quantize.adaround import adaround_levels, input_moments
from edgevpr.quantize.bias_correction import correct_biases
from edgevpr.quantize.calibration_images import CalibrationImages
from edgevpr.quantize.gptq import dequantized, int4_levels
from edgevpr.quantize.input_channels import widen_input_conv
from edgevpr.quantize.int4 import MIN_ELEMENTS, to_int4_weights
from edgevpr.quantize.layers import node_of_layer, quantized_weight, searchable_layers
from edgevpr.quantize.onnx_export import aggregator_float_nodes, export_onnx, patch_only_nodes
from edgevpr.quantize.ptq import to_fp16, to_int8
from edgevpr.quantize.range_choice import CHOICE_IMAGES, METHOD, activation_ranges, choice_counts
from edgevpr.quantize.weight_grid import channel_scales, int8_weight, is_depthwise
from edgevpr.registry import Registry
from edgevpr.runtime.int8_layout import Int8Layout


@dataclass
class Export:
    """What a precision works on: the BN-folded model, its fp32 ONNX export and metadata, the
    calibration images (or None), the resolved options and int8 layout."""

    config: RunConfig
    options: QuantizeConfig
    layout: Int8Layout
    model: torch.nn.Module
    example: torch.Tensor
    calib: CalibrationImages | None
    proto: onnx.ModelProto
    metadata: dict
    weight_scales: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> int8 scales fixed by rounding

    def int8_qmax(self, module: torch.nn.Module) -> int:
        """The int8 levels per sign the file holds ``module``'s weights in: the layout's, but
        127 for depthwise convolutions and the tensorrt target (``runtime.int8_layout``)."""
        depthwise = isinstance(module, torch.nn.Conv2d) and is_depthwise(module.weight.shape, module.groups)
        return 127 if depthwise or self.options.target == "tensorrt" else self.layout.weight_max

    def int8_adaround(self) -> None:
        """Every convolution's and linear layer's int8 weights rounded by AdaRound (``adaround``)
        on the calibration images, written into the model on their grid; their scales are kept
        so the file holds exactly these levels. ``reexport`` then puts them in the graph."""
        layers = searchable_layers(self.model, self.example)
        reference = copy.deepcopy(self.model).eval()
        images = self.calib.batch()
        self.model.eval()
        with Progress(len(layers), "AdaRound: rounding int8 weights layer by layer", "layer") as bar:
            for layer in layers:  # in the order they run: each sees the rounded layers before it
                weight = layer.module.weight.detach()
                qmax = self.int8_qmax(layer.module)
                scales = channel_scales(weight.numpy(), qmax)
                moments, cross = input_moments(reference, self.model, layer.name, images)
                levels = adaround_levels(weight, moments, scales, qmax, cross=cross)
                grid = scales.reshape(-1, *([1] * (weight.dim() - 1)))
                with torch.no_grad():
                    layer.module.weight.copy_(torch.from_numpy((levels * grid).astype(np.float32)))
                self.weight_scales[layer.name] = scales
                bar.update(1)
        self.metadata["int8_rounding"] = {"method": "adaround", "layers": len(layers), "images": len(self.calib.paths)}

    def int8_initializer_scales(self) -> dict[str, np.ndarray]:
        """The scales ``int8_adaround`` fixed, by the name of the ONNX initializer holding each
        layer's weights in the current export."""
        if not self.weight_scales:
            return {}
        layers = [layer for layer in searchable_layers(self.model, self.example) if layer.name in self.weight_scales]
        nodes = {node.name: node for node in self.proto.graph.node}
        placed = node_of_layer(self.proto, layers)
        return {nodes[placed[layer.name]].input[1]: self.weight_scales[layer.name] for layer in layers}

    def calibrate(self) -> calibration.CalibrationStats:
        passes = f"calibrating: {len(self.calib.paths)} images x 2 passes (ranges, then histograms)"
        with Progress(2 * len(self.calib.paths), passes, "img") as bar:
            stats = calibration.collect(self.proto, self.calib, threads=self.config.eval.threads, progress=bar.update)
        self.metadata["calib_images"] = stats.images
        return stats

    def activation_ranges(self, stats: calibration.CalibrationStats, symmetric: bool) -> dict:
        """The activation ranges of ``options.calibration`` (``range_choice``); for
        ``layer-error``, with a third pass over the images and how many tensors each rule won."""
        method, percentile, threads = self.options.calibration, self.options.percentile, self.config.eval.threads
        description = "choosing each tensor's range by layer error"
        images = min(len(self.calib.paths), CHOICE_IMAGES)
        with Progress(images, description, "img", enabled=method == METHOD) as bar:
            ranges, choices = activation_ranges(
                self.proto, stats, self.calib, method, symmetric, percentile, threads, bar.update
            )
        if choices is not None:
            self.metadata["calibration_choice"] = choice_counts(choices)
        return ranges

    def int8_bias_correction(self) -> None:
        """Every convolution's and linear layer's bias corrected for the mean output shift of its
        int8 weights (the grid the file will hold: ``weight_grid``, the layout's levels);
        ``reexport`` then puts them in the graph, and calibration runs on the corrected model."""
        layers = searchable_layers(self.model, self.example)
        modules = {layer.name: layer.module for layer in layers}
        quantized = {
            name: module.weight.detach().clone()  # already on its grid
            if name in self.weight_scales
            else torch.from_numpy(int8_weight(module.weight.detach().numpy(), self.int8_qmax(module)))
            for name, module in modules.items()
        }
        self.model.eval()
        correct_biases(self.model, modules, quantized, (torch.from_numpy(batch) for batch in self.calib()))
        self.metadata["int8_bias_correction"] = {"layers": len(layers), "images": len(self.calib.paths)}

    def reexport(self) -> None:
        """The ONNX export of the model as it is now (after its weights or biases changed)."""
        self.proto = export_onnx(self.model, self.example, self.metadata)

    def int4_weights(self, layers, rounding: str, bias_correction: bool) -> tuple[onnx.ModelProto, dict]:
        """The int4 levels of ``layers`` by ``rounding`` (GPTQ reads the fp32 model, so before any
        bias moves), then, if asked, their biases corrected for those weights and the model
        exported again. Returns the export and the levels by layer name (none for nearest)."""
        int4 = int4_levels(self.model, layers, self.calib.batch, rounding)
        self.metadata["int4_rounding"] = rounding
        proto = self.proto
        if bias_correction:
            self.model.eval()
            modules = {layer.name: layer.module for layer in layers}
            weights = {
                name: dequantized(*int4[name]) if name in int4 else quantized_weight(module.weight.detach(), "int4")
                for name, module in modules.items()
            }
            correct_biases(self.model, modules, weights, (torch.from_numpy(batch) for batch in self.calib()))
            self.metadata["int4_bias_correction"] = {"layers": len(layers), "images": len(self.calib.paths)}
            proto = export_onnx(self.model, self.example, self.metadata)
        return proto, int4


class Precision:
    """One deployed precision. ``needs_calibration``: it cannot run without --calib;
    ``integer``: its file holds int8 layers (so it records an int8 layout)."""

    needs_calibration = False
    integer = False

    def check(self, options: QuantizeConfig) -> None:
        """Refuse options that do not apply, in one line, before any work."""

    def prepare(self, options: QuantizeConfig) -> QuantizeConfig:
        """The options as this precision runs them (mixed files bring their search's settings)."""
        return options

    def quantize(self, export: Export) -> onnx.ModelProto:
        raise NotImplementedError


PRECISIONS = Registry("precision")
# name -> chooser(export, uint8 ranges, count) -> [{"layer", "node", "error"}], most sensitive first
FLOAT_LAYER_CHOOSERS = Registry("float-layer chooser")
ALL_LAYERS = 1 << 30  # a ranking's count that keeps every layer
RESEARCH_HINT = "mixed precision and --keep-float come with edgevpr.research (import edgevpr.research)"


@PRECISIONS.register("fp32")
class Fp32(Precision):
    def quantize(self, export: Export) -> onnx.ModelProto:
        return export.proto


@PRECISIONS.register("fp16")
class Fp16(Precision):
    def quantize(self, export: Export) -> onnx.ModelProto:
        return to_fp16(export.proto)


@PRECISIONS.register("int8")
class Int8(Precision):
    needs_calibration = True
    integer = True

    def check(self, options: QuantizeConfig) -> None:
        wanted = "--keep-float" if options.keep_float else "--report-layers" if options.report_layers else None
        if wanted and "sensitivity" not in FLOAT_LAYER_CHOOSERS:
            raise ConfigError(f"{wanted} needs the layer sensitivity ranking; {RESEARCH_HINT}")

    def quantize(self, export: Export) -> onnx.ModelProto:
        rounded = export.options.int8_rounding == "adaround"
        if rounded:
            export.int8_adaround()
        # auto (None): on; descriptor cosine to fp32 on Gardens Point night 0.993 -> 0.998 (u8s8), 0.979 -> 0.996 (u8s7)
        corrected = export.options.bias_correction is not False
        if corrected:
            export.int8_bias_correction()
        if rounded or corrected:  # one export for both
            export.reexport()
        options, stats = export.options, export.calibrate()
        ranges = export.activation_ranges(stats, symmetric=options.target == "tensorrt")
        kept = []
        if options.keep_float or options.report_layers:
            uint8_ranges = ranges if options.target == "cpu" else export.activation_ranges(stats, symmetric=False)
            count = ALL_LAYERS if options.report_layers else options.keep_float
            ranked = FLOAT_LAYER_CHOOSERS.get("sensitivity")(export, uint8_ranges, count)
            kept = ranked[: options.keep_float]
            if options.report_layers:  # every layer, the costliest first (edgevpr quantize --report-layers)
                fields = ("layer", "node", "error")
                export.metadata["layer_errors"] = [{k: entry[k] for k in fields} for entry in ranked]
            if kept:
                export.metadata["kept_float"] = [{k: entry[k] for k in ("layer", "error")} for entry in kept]
        # the aggregator's weightless ops and a patch output's pooling (softmax, powers, window sums,
        # normalisations) stay float: their wide-ranged values lose most of their precision in 8 bits
        # (a trained NetVLAD's descriptor cosine to fp32: 0.77 with them in int8, 0.994 without)
        aggregator_ops = aggregator_float_nodes(export.proto)
        pooling = sorted(set(patch_only_nodes(export.proto)) | set(aggregator_ops))
        export.metadata["float_aggregator_ops"] = len(aggregator_ops)
        proto = to_int8(
            export.proto,
            ranges,
            options.target,
            keep_float=[entry["node"] for entry in kept] + pooling,
            layout=export.layout,
            weight_scales=export.int8_initializer_scales(),
        )
        if options.target == "cpu":
            export.metadata["stem_channels_widened"] = widen_input_conv(proto)
        return proto


@PRECISIONS.register("int4")
class Int4(Precision):
    def quantize(self, export: Export) -> onnx.ModelProto:
        options, levels = export.options, {}
        if export.calib is not None:
            layers = [
                layer
                for layer in searchable_layers(export.model, export.example)
                if layer.module.weight.numel() >= MIN_ELEMENTS
            ]
            rounding = "gptq" if options.int4_rounding == "auto" else options.int4_rounding
            correct = True if options.bias_correction is None else options.bias_correction
            proto, int4 = export.int4_weights(layers, rounding, correct)
            export.proto = proto
            nodes = node_of_layer(proto, [layer for layer in layers if layer.name in int4])
            levels = {nodes[name]: layer_levels for name, layer_levels in int4.items()}
        return to_int4_weights(export.proto, levels=levels)
