"""Bias correction of int4 and int8 weights (Nagel et al. 2019, section 4.2): the corrected
layer's mean output matches full precision, in the simulation and in the deployed file."""

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgevpr.models.tf_same import apply_tf_same_padding
from edgevpr.quantize.bias_correction import correct_biases
from edgevpr.quantize.layers import quantized_weight, searchable_layers
from edgevpr.quantize.weight_grid import int8_weight
from edgevpr.research.simulate import Simulator

QUANTIZERS = {  # the weights a file holds: int4, and int8 on u8s7's 7-bit grid (63 levels per sign)
    "int4": lambda weight: quantized_weight(weight, "int4"),
    "int8-7bit": lambda weight: torch.from_numpy(int8_weight(weight.numpy(), 63)),
}


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, bias=False),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 8),
    )
    apply_tf_same_padding(net)  # the first convolution pads as TensorFlow does, unevenly
    return net.eval()


def _mean_outputs(net, images):
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: outputs.setdefault(name, []).append(o))
        for name, m in net.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        net(images)
    for hook in hooks:
        hook.remove()
    return {name: torch.cat(o).movedim(1, -1).reshape(-1, o[0].shape[1]).mean(0) for name, o in outputs.items()}


@pytest.mark.parametrize("precision", list(QUANTIZERS))
def test_a_corrected_layer_keeps_the_mean_output_of_full_precision(precision):
    net, images = _net(), torch.rand(5, 3, 23, 30) * 2
    layers = searchable_layers(net, images[:1])
    modules = {layer.name: layer.module for layer in layers}
    quantized = {name: QUANTIZERS[precision](m.weight.detach()) for name, m in modules.items()}
    # each layer alone at int4, its input from full precision: the mean output equals fp32's
    # once corrected, and differs without
    for name, module in modules.items():
        reference = _mean_outputs(net, images)[name]
        original = (module.weight.detach().clone(), None if module.bias is None else module.bias.detach().clone())
        with torch.no_grad():
            module.weight.copy_(quantized[name])
        plain = _mean_outputs(net, images)[name]
        with torch.no_grad():
            module.weight.copy_(original[0])
        correct_biases(net, {name: module}, quantized, [images])
        with torch.no_grad():
            module.weight.copy_(quantized[name])
        corrected = _mean_outputs(net, images)[name]
        assert (plain - reference).abs().max() > (1e-3 if precision == "int4" else 1e-5), name
        assert torch.allclose(corrected, reference, atol=1e-5), name
        with torch.no_grad():
            module.weight.copy_(original[0])
            if original[1] is None:
                module.bias = None
            else:
                module.bias.copy_(original[1])


def test_simulator_corrects_int4_layers_only_and_lowers_the_descriptor_error():
    net, images = _net(), torch.rand(8, 3, 23, 30) * 2
    layers = searchable_layers(net, images[:1])
    other = _net()
    plain = Simulator(other, searchable_layers(other, images[:1]), {}, images)
    corrected = Simulator(net, layers, {}, images, bias_correction=True)
    assert layers[0].module.bias is not None and not layers[0].module.bias.any()  # a zero bias where there was none
    everything_int4 = ["int4"] * len(layers)
    assert corrected.fitness(everything_int4) > plain.fitness(everything_int4)
    assert corrected.fitness(["fp16"] * len(layers)) == plain.fitness(["fp16"] * len(layers))
    corrected.set(everything_int4)
    changed = [not torch.equal(layer.module.bias, corrected.original_bias[layer.name]) for layer in layers]
    corrected.set(None)
    assert all(changed)
    assert all(torch.equal(layer.module.bias, corrected.original_bias[layer.name]) for layer in layers)


def _exports(tmp_path, precision: str, layout: str = "auto") -> dict:
    """SqueezeNet + GeM quantized to ``precision`` without and with bias correction (4
    generated calibration images): {corrected: (report, ONNX model, outputs on 3 images)}."""
    from edgevpr.config import QuantizeConfig, load_config
    from edgevpr.quantize.pipeline import quantize_model
    from edgevpr.runtime.onnx_model import OnnxModel
    from tests.conftest import write_image

    for i in range(4):
        write_image(tmp_path / "calib" / f"{i}.jpg", i, size=(96, 64))
    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    images = np.random.default_rng(0).random((3, 3, 64, 96), dtype=np.float32)
    found = {}
    for corrected in (False, True):
        out = tmp_path / f"{precision}-{corrected}.onnx"
        options = QuantizeConfig(precision, calib=str(tmp_path / "calib"), calib_count=4, bias_correction=corrected)
        options.int8_layout = layout
        report = quantize_model(config, options, str(out))
        found[corrected] = (report, onnx.load(str(out)), OnnxModel(str(out), threads=1)(images))
    return found


@pytest.mark.slow
def test_int4_export_with_calibration_corrects_biases(tmp_path):
    from edgevpr.quantize.onnx_export import get_metadata

    found = _exports(tmp_path, "int4")
    for corrected, (report, model, _) in found.items():
        int4_weights = sum(
            i.data_type == onnx.TensorProto.INT4 and i.name.endswith("_int4") for i in model.graph.initializer
        )
        assert int4_weights > 20 and report["bias_corrected"] == (int4_weights if corrected else 0)
        assert ("int4_bias_correction" in get_metadata(model)) == corrected
    assert np.abs(found[True][2] - found[False][2]).max() > 1e-3


@pytest.mark.slow
def test_int8_export_with_bias_correction_corrects_every_layer(tmp_path):
    from edgevpr.quantize.onnx_export import get_metadata

    found = _exports(tmp_path, "int8", layout="u8s7")
    for corrected, (report, model, _) in found.items():
        assert report["bias_corrected"] == (25 if corrected else 0)  # SqueezeNet 1.1: 25 convolutions
        assert ("int8_bias_correction" in get_metadata(model)) == corrected
    assert np.abs(found[True][2] - found[False][2]).max() > 1e-4
