"""Deploying a mixed-precision configuration found by ``edgevpr search-precision``.

The BN-folded model is exported to ONNX as for any precision; each searchable layer is
matched to its ONNX node by its weight values, then:
- int4 layers get per-channel symmetric int4 weights with DequantizeLinear (float compute),
  their levels rounded as the search simulated them (GPTQ or nearest);
- fp16 layers store float16 weights cast to float32 in the graph: this CPU's ONNX Runtime has
  no float16 convolution kernels, so they compute in float32 (half the bytes, not the time);
- int8 layers are quantized in QDQ form, uint8 activations with the calibrated ranges and
  int8 per-channel weights, which ONNX Runtime fuses into integer kernels. ONNX Runtime's QDQ
  quantizer quantizes an int8 node's input and its output tensor, and every consumer of those
  tensors reads the quantized values. Where the output feeds only a Clip or Relu, that
  activation is handed to the quantizer too, which removes it and quantizes the activation's
  output instead (the range clips as the activation did); otherwise the raw convolution output,
  negative tail included, would be quantized once more before the activation.
  ``int8_tensors`` names those tensors, so that the simulation quantizes the same ones.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx

from edgevpr.config import QuantizeConfig
from edgevpr.errors import ConfigError
from edgevpr.quantize.int4 import to_fp16_weights, to_int4_weights
from edgevpr.quantize.layers import node_of_layer, searchable_layers
from edgevpr.quantize.onnx_export import tensor_consumers
from edgevpr.quantize.precisions import Export, Precision
from edgevpr.quantize.ptq import to_int8
from edgevpr.research.simulate import BITS, QuantizedGraph
from edgevpr.runtime.int8_layout import LAYOUTS, LEGACY, QDQ_CHOICES, Int8Layout

FORMAT = "edgevpr-mixed-precision-1"
REQUIRED = ("layers", "calibration", "calib_count", "budget", "weighting", "average_bits", "fitness")


def read_mixed_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        mixed = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: mixed-precision config not found") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not JSON (not UTF-8 text)") from None
    if not isinstance(mixed, dict) or mixed.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a mixed-precision config of `edgevpr search-precision` (format {FORMAT})")
    missing = [key for key in REQUIRED if key not in mixed]
    if missing:
        raise ConfigError(f"{path}: lacks {', '.join(missing)}, as search-precision writes them")
    layers = mixed.get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(layer, dict) and isinstance(layer.get("name"), str) and isinstance(layer.get("precision"), str)
        for layer in layers
    ):
        raise ConfigError(f"{path}: 'layers' must be a list of {{name, precision}} entries, as search-precision writes")
    unknown = {layer["precision"] for layer in mixed["layers"]} - set(BITS)
    if unknown:
        raise ConfigError(f"{path}: unknown precisions {sorted(unknown)}")
    mixed["path"] = str(path)
    return mixed


FUSED_ACTIVATIONS = ("Clip", "Relu")


def int8_tensors(proto: onnx.ModelProto, nodes: dict[str, str]) -> dict[str, tuple[str, str, str | None]]:
    """Layer name -> (input tensor, output tensor, fused activation node or None) that an int8
    layer's QDQ quantization quantizes; ``nodes`` maps layer names to ONNX node names."""
    by_name = {node.name: node for node in proto.graph.node}
    consumers = tensor_consumers(proto.graph)
    graph_outputs = {o.name for o in proto.graph.output}
    points = {}
    for layer, node_name in nodes.items():
        node = by_name[node_name]
        users = consumers.get(node.output[0], [])
        fused = (
            users[0]
            if len(users) == 1 and users[0].op_type in FUSED_ACTIVATIONS and node.output[0] not in graph_outputs
            else None
        )
        points[layer] = (node.input[0], fused.output[0] if fused else node.output[0], fused.name if fused else None)
    return points


def quantized_graph(
    proto: onnx.ModelProto, nodes: dict[str, str], tensor_ranges: dict[str, tuple[float, float]], weight_max: int = 127
) -> QuantizedGraph:
    """What an int8 layer's QDQ quantization quantizes (``int8_tensors``; ``nodes`` from
    ``node_of_layer``), the uint8 ranges by ONNX tensor name, the graph's Add nodes and the int8
    layout's weight range: what ``Simulator`` takes."""
    points = int8_tensors(proto, nodes)
    tensors = {name: (source, target) for name, (source, target, _) in points.items()}
    used = {t for pair in tensors.values() for t in pair}
    adds = {(node.input[0], node.input[1]): node.output[0] for node in proto.graph.node if node.op_type == "Add"}
    used |= {t for (a, b), out in adds.items() for t in (a, b, out)}
    return QuantizedGraph(tensors, {t: tensor_ranges[t] for t in used if t in tensor_ranges}, adds, weight_max)


def to_mixed(
    proto: onnx.ModelProto,
    model,
    example,
    mixed: dict,
    ranges: dict,
    int4: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    layout: Int8Layout = LAYOUTS["u8s8"],
) -> tuple[onnx.ModelProto, list[int]]:
    """The file ``mixed`` describes; ``int4`` gives int4 (levels, scales) by layer name (GPTQ),
    the other int4 layers round to nearest; ``layout`` is the int8 layers' layout."""
    layers = searchable_layers(model, example)
    names = [layer["name"] for layer in mixed["layers"]]
    if names != [layer.name for layer in layers]:
        raise ConfigError(
            f"{mixed['path']}: searched for another model ({len(names)} layers, this one has "
            f"{len(layers)}; first difference at "
            f"{next((a for a, b in zip(names, [layer.name for layer in layers]) if a != b), 'the end')})"
        )
    nodes = node_of_layer(proto, layers)
    chosen = {
        precision: {nodes[layer["name"]] for layer in mixed["layers"] if layer["precision"] == precision}
        for precision in BITS
    }
    points = int8_tensors(proto, nodes)
    fused = {points[layer["name"]][2] for layer in mixed["layers"] if layer["precision"] == "int8"} - {None}
    if chosen["int4"]:
        proto = to_int4_weights(proto, only=chosen["int4"], levels={nodes[name]: v for name, v in (int4 or {}).items()})
    if chosen["fp16"]:
        proto = to_fp16_weights(proto, only=chosen["fp16"])
    if chosen["int8"]:
        proto = to_int8(proto, ranges, "cpu", only=sorted(chosen["int8"] | fused), qdq=True, layout=layout)
    return proto, [BITS[layer["precision"]] for layer in mixed["layers"]]


class MixedPrecision(Precision):
    """``quantize --precision mixed --mixed-config FILE``: the file's per-layer precisions, with
    the calibration, int4 rounding, bias correction and int8 layout its search simulated."""

    needs_calibration = True
    integer = True

    def check(self, options: QuantizeConfig) -> None:
        if not options.mixed_config:
            raise ConfigError("--precision mixed needs --mixed-config FILE (from `edgevpr search-precision`)")
        if options.int8_layout not in QDQ_CHOICES:
            raise ConfigError(
                f"int8 layout {options.int8_layout} is for --precision int8; mixed precision takes "
                f"{', '.join(QDQ_CHOICES)}"
            )

    def prepare(self, options: QuantizeConfig) -> QuantizeConfig:
        mixed = read_mixed_config(options.mixed_config)  # the ranges and the int8 layout the search simulated
        return dataclasses.replace(
            options,
            calibration=mixed["calibration"],
            calib_count=mixed["calib_count"],
            percentile=mixed.get("percentile", options.percentile),
            int8_layout=mixed.get("int8_layout", LEGACY),
        )

    def quantize(self, export: Export) -> onnx.ModelProto:
        mixed = read_mixed_config(export.options.mixed_config)
        ranges = export.activation_ranges(export.calibrate(), symmetric=False)
        int4_names = {layer["name"] for layer in mixed["layers"] if layer["precision"] == "int4"}
        # after calibration: the search calibrated the uncorrected model
        layers = [layer for layer in searchable_layers(export.model, export.example) if layer.name in int4_names]
        proto, int4 = export.int4_weights(
            layers, mixed.get("int4_rounding", "nearest"), mixed.get("bias_correction", False)
        )
        proto, export.metadata["layer_bits"] = to_mixed(
            proto, export.model, export.example, mixed, ranges, int4, export.layout
        )
        export.metadata["mixed"] = {k: mixed[k] for k in ("budget", "weighting", "average_bits", "fitness")}
        return proto
