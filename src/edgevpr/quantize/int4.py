"""int4 weights: per-output-channel symmetric int4 (scale = max|w| / 7, values in [-8, 7]; the
levels rounded to nearest, or given, as GPTQ's of module ``gptq``), stored packed two to a
byte as ONNX INT4 initializers and expanded by DequantizeLinear (opset 21) in front of each
Conv / Gemm / MatMul. Activations stay float: no CPU kernel
here computes int4 convolutions, so the gain is file size, not speed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

WEIGHT_OPS = {"Conv": 1, "Gemm": 1, "MatMul": 1}  # op -> input index of the weight
MIN_ELEMENTS = 64  # tiny tensors are not worth quantizing


def int4_scales(weight: np.ndarray, axis: int) -> np.ndarray:
    """Per-channel (along ``axis``) symmetric int4 scales: max|w| / 7 (1 for an all-zero channel)."""
    moved = np.moveaxis(weight, axis, 0)
    scale = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1) / 7.0
    return np.where(scale > 0, scale, 1.0).astype(np.float32)


def quantize_int4_symmetric(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """int4 levels rounded to nearest, and their scales."""
    moved = np.moveaxis(weight, axis, 0)
    scale = int4_scales(weight, axis)
    shape = [-1] + [1] * (moved.ndim - 1)
    q = np.clip(np.rint(moved / scale.reshape(shape)), -8, 7).astype(np.int8)
    return np.moveaxis(q, 0, axis), scale


def to_int4_weights(
    model: onnx.ModelProto, only: set[str] | None = None, levels: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
) -> onnx.ModelProto:
    """Return a copy whose large Conv/Gemm/MatMul weights (those of the nodes named in
    ``only``, or all) are int4 with DequantizeLinear: rounded to nearest, or the (levels,
    scales) that ``levels`` gives by node name (levels in PyTorch's (out, in, ...) layout)."""
    from onnx import version_converter

    model = version_converter.convert_version(model, 21) if model.opset_import[0].version < 21 else model
    given = {}
    for node in model.graph.node:
        if levels and node.name in levels:
            given[node.input[WEIGHT_OPS[node.op_type]]] = levels[node.name]

    def int4(name: str, weight: np.ndarray, axis: int):
        q, scale = given[name] if name in given else quantize_int4_symmetric(weight, axis)
        if q.shape != weight.shape and q.T.shape == weight.shape and axis == 1:
            q = q.T  # a MatMul holds the (in, out) transpose of a PyTorch Linear weight
        if q.shape != weight.shape:
            raise ValueError(f"{name}: int4 levels of shape {q.shape} for a weight of shape {weight.shape}")
        q_name, s_name, z_name = f"{name}_int4", f"{name}_scale", f"{name}_zero"
        stored = [
            helper.make_tensor(q_name, onnx.TensorProto.INT4, q.shape, q.flatten().tolist()),
            numpy_helper.from_array(scale, s_name),
            helper.make_tensor(z_name, onnx.TensorProto.INT4, scale.shape, [0] * scale.size),
        ]
        return stored, helper.make_node(
            "DequantizeLinear", [q_name, s_name, z_name], [name], axis=axis, name=f"{name}_dequantize"
        )

    return replace_weights(model, int4, only)


def to_fp16_weights(model: onnx.ModelProto, only: set[str] | None = None) -> onnx.ModelProto:
    """Weights stored as float16 and cast back to float32 in the graph: half the bytes,
    float32 compute (this CPU's ONNX Runtime has no float16 convolution kernels)."""

    def fp16(name: str, weight: np.ndarray, axis: int):
        stored = numpy_helper.from_array(weight.astype(np.float16), f"{name}_fp16")
        return [stored], helper.make_node("Cast", [stored.name], [name], to=onnx.TensorProto.FLOAT, name=f"{name}_cast")

    return replace_weights(model, fp16, only)


def replace_weights(model: onnx.ModelProto, convert, only: set[str] | None = None) -> onnx.ModelProto:
    """Replace each large weight initializer of a Conv/Gemm/MatMul (of nodes in ``only``, or
    all) by ``convert(name, weight, axis) -> (initializers, node producing name)``."""
    initializers = {i.name: i for i in model.graph.initializer}
    new_nodes, added, replaced = [], [], set()
    for node in model.graph.node:
        index = WEIGHT_OPS.get(node.op_type)
        name = node.input[index] if index is not None and len(node.input) > index else None
        chosen = only is None or node.name in only
        if chosen and name in initializers and name not in replaced:
            weight = numpy_helper.to_array(initializers[name]).astype(np.float32)
            if weight.size >= MIN_ELEMENTS and weight.ndim >= 2:
                axis = 1 if node.op_type == "MatMul" or (node.op_type == "Gemm" and not _trans_b(node)) else 0
                stored, producer = convert(name, weight, axis)
                added += stored
                new_nodes.append(producer)
                replaced.add(name)
        new_nodes.append(node)
    kept = [i for i in model.graph.initializer if i.name not in replaced]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + added)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return model


def _trans_b(node) -> bool:
    return any(a.name == "transB" and a.i == 1 for a in node.attribute)
