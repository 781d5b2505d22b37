"""``--calibration layer-error``: each tensor's range chosen by the error at its readers' outputs."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.quant_utils import compute_scale_zp

from edgevpr.quantize import calibration
from edgevpr.quantize.onnx_export import export_onnx
from edgevpr.quantize.ptq import to_int8
from edgevpr.quantize.range_choice import CANDIDATES, activation_ranges, fake_quantized, readers


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("low, high", [(-3.2, 7.9), (0.0, 5.0), (0.4, 2.0), (-6.0, -1.0)])
def test_fake_quantization_is_onnx_runtimes_uint8_grid(low, high):
    """The candidates are scored on the grid ONNX Runtime will use: its scale and zero point for
    the range, applied by QuantizeLinear -> DequantizeLinear."""
    zero, scale = compute_scale_zp(np.float32(low), np.float32(high), np.uint8(0), np.uint8(255))
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4096])],
        [
            numpy_helper.from_array(np.array(scale, np.float32), "s"),
            numpy_helper.from_array(np.array(zero, np.uint8), "z"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).uniform(-10, 10, 4096).astype(np.float32)
    ours = fake_quantized(torch.from_numpy(x), low, high, symmetric=False).numpy()
    assert np.abs(ours - _run(proto, x)).max() <= 1e-5 * max(abs(low), abs(high))


def _weighted_conv() -> onnx.ModelProto:
    """A 1x1 convolution that reads channel 0 with large weights and channel 1 with tiny ones."""
    conv = torch.nn.Conv2d(2, 4, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[100.0, 0.01], [80.0, -0.01], [-90.0, 0.02], [60.0, 0.0]]).view(4, 2, 1, 1))
        conv.bias.zero_()
    return export_onnx(conv, torch.zeros(1, 2, 16, 16), {})


def _images(rng, count: int) -> np.ndarray:
    """Channel 0 in [0, 1]; channel 1 Laplace with rare outliers 31 times larger."""
    x = np.zeros((count, 2, 16, 16), np.float32)
    x[:, 0] = rng.uniform(0, 1, (count, 16, 16))
    outliers = 1 + 30 * (rng.uniform(size=(count, 16, 16)) < 0.01)
    x[:, 1] = rng.laplace(0, 1, (count, 16, 16)) * outliers
    return x


def test_layer_error_picks_the_range_the_reading_layer_needs():
    """The tensor's own error (mse) keeps channel 1's outliers and so rounds channel 0 coarsely;
    the convolution barely reads channel 1, so the range chosen by its output error clips them,
    and the int8 file's output error on held-out images drops by far more than 10x."""
    proto, rng = _weighted_conv(), np.random.default_rng(0)
    calib, held_out = _images(rng, 16), _images(rng, 16)

    def batches():
        return (calib[i : i + 1] for i in range(len(calib)))

    stats = calibration.collect(proto, batches)
    reference = _run(proto, held_out)
    errors, chosen = {}, None
    for method in (*CANDIDATES, "layer-error"):
        ranges, choices = activation_ranges(proto, stats, batches, method, symmetric=False)
        errors[method] = float(np.mean((_run(to_int8(proto, ranges), held_out) - reference) ** 2))
        if choices is not None:
            chosen = choices[proto.graph.input[0].name]
    assert chosen["chosen"] != "mse" and chosen[chosen["chosen"]] < 0.1 * chosen["mse"], chosen
    assert errors["layer-error"] < 0.1 * errors["mse"], errors
    assert errors["layer-error"] <= 1.05 * min(errors[rule] for rule in CANDIDATES), errors


@pytest.mark.parametrize(
    "op, attributes, shape",
    [
        ("Conv", {"strides": [2, 2], "auto_pad": "SAME_UPPER", "group": 1}, (2, 3, 11, 14)),
        ("Conv", {"strides": [1, 1], "pads": [1, 0, 2, 1], "dilations": [2, 1], "group": 3}, (2, 3, 9, 8)),
        ("Gemm", {"transB": 1}, (2, 3)),
    ],
)
def test_a_readers_linear_map_is_the_node_without_its_bias(op, attributes, shape):
    """The error is scored through each reader as ONNX Runtime runs it: TF-'SAME' padding,
    explicit asymmetric pads, dilation, groups, transposed Gemm."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(6, shape[1] // attributes.get("group", 1), 3, 3) if op == "Conv" else (6, 3))
    bias = np.zeros(6, np.float32)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "w", "b"], ["y"], **attributes)],
        "reader",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight.astype(np.float32), "w"), numpy_helper.from_array(bias, "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=shape).astype(np.float32)
    (linear,) = readers(proto)["x"]
    assert np.abs(linear(torch.from_numpy(x)).numpy() - _run(proto, x)).max() <= 1e-4
