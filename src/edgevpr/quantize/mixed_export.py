"""Deploying a mixed-precision configuration found by ``edgevpr search-precision``.

The BN-folded model is exported to ONNX as for any precision; each searchable layer is
matched to its ONNX node by its weight values, then:
- int4 layers get per-channel symmetric int4 weights with DequantizeLinear (float compute);
- fp16 layers store float16 weights cast to float32 in the graph: this CPU's ONNX Runtime has
  no float16 convolution kernels, so they compute in float32 (half the bytes, not the time);
- int8 layers are quantized in QDQ form, uint8 activations with the calibrated ranges and
  int8 per-channel weights, which ONNX Runtime fuses into integer kernels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgevpr.errors import ConfigError
from edgevpr.quantize.int4 import WEIGHT_OPS, to_fp16_weights, to_int4_weights
from edgevpr.quantize.ptq import to_int8
from edgevpr.quantize.simulate import BITS, searchable_layers

FORMAT = "edgevpr-mixed-precision-1"


def read_mixed_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        mixed = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: mixed-precision config not found") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(mixed, dict) or mixed.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a mixed-precision config of `edgevpr search-precision` (format {FORMAT})")
    unknown = {layer["precision"] for layer in mixed["layers"]} - set(BITS)
    if unknown:
        raise ConfigError(f"{path}: unknown precisions {sorted(unknown)}")
    mixed["path"] = str(path)
    return mixed


def _weight_key(array: np.ndarray) -> tuple:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return array.shape, array.tobytes()


def node_of_layer(proto: onnx.ModelProto, layers) -> dict[str, str]:
    """Layer name -> name of the ONNX node whose weight initializer holds the same values."""
    initializers = {i.name: i for i in proto.graph.initializer}
    by_weight: dict[tuple, list[str]] = {}
    for node in proto.graph.node:
        index = WEIGHT_OPS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] in initializers:
            key = _weight_key(numpy_helper.to_array(initializers[node.input[index]]))
            by_weight.setdefault(key, []).append(node.name)
    mapping = {}
    for layer in layers:
        found = by_weight.get(_weight_key(layer.module.weight.detach().numpy()), [])
        if len(found) != 1:
            raise ConfigError(f"layer {layer.name}: {len(found)} ONNX nodes carry its weights; cannot place it")
        mapping[layer.name] = found[0]
    return mapping


def to_mixed(proto: onnx.ModelProto, model, example, mixed: dict, ranges: dict) -> tuple[onnx.ModelProto, list[int]]:
    layers = searchable_layers(model, example)
    names = [layer["name"] for layer in mixed["layers"]]
    if names != [layer.name for layer in layers]:
        raise ConfigError(f"{mixed['path']}: searched for another model ({len(names)} layers, this one has "
                          f"{len(layers)}; first difference at "
                          f"{next((a for a, b in zip(names, [l.name for l in layers]) if a != b), 'the end')})")
    nodes = node_of_layer(proto, layers)
    chosen = {precision: {nodes[layer["name"]] for layer in mixed["layers"] if layer["precision"] == precision}
              for precision in BITS}
    if chosen["int4"]:
        proto = to_int4_weights(proto, only=chosen["int4"])
    if chosen["fp16"]:
        proto = to_fp16_weights(proto, only=chosen["fp16"])
    if chosen["int8"]:
        proto = to_int8(proto, ranges, "cpu", only=sorted(chosen["int8"]), qdq=True)
    return proto, [BITS[layer["precision"]] for layer in mixed["layers"]]
