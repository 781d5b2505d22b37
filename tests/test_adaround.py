"""AdaRound of int8 weights (Nagel et al. 2020): a layer's calibration error never exceeds
nearest rounding's, the learned levels are each weight's floor or ceiling, and the deployed file
holds exactly the learned levels."""

import copy

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from edgevpr.config import QuantizeConfig, load_config
from edgevpr.errors import ConfigError
from edgevpr.quantize.adaround import adaround_levels
from edgevpr.quantize.gptq import input_hessians
from edgevpr.quantize.onnx_export import get_metadata
from edgevpr.quantize.pipeline import quantize_model
from edgevpr.quantize.weight_grid import channel_scales
from tests.conftest import write_image


def _correlated_inputs(generator, channels=24, count=6):
    """Images whose channels are strongly correlated, as real feature maps are (where rounding
    errors that cancel between inputs pay)."""
    base = torch.randn(count, 4, 14, 14, generator=generator)
    mixing = torch.randn(channels, 4, generator=generator)
    return torch.relu(torch.einsum("bkhw,ck->bchw", base, mixing) + 0.1 * torch.randn(count, channels, 14, 14))


def _calibration_error(conv, weight, images):
    """Mean over positions of the summed squared output change, on the inputs themselves."""
    change = F.conv2d(images, conv.weight - weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return change.pow(2).sum(1).mean().item()


@pytest.mark.parametrize("groups, qmax", [(1, 64), (1, 127), (24, 127)])
def test_learned_rounding_never_raises_a_layers_calibration_error_above_nearest(groups, qmax):
    generator = torch.Generator().manual_seed(groups + qmax)
    conv = nn.Conv2d(24, 24, 3, padding=1, groups=groups, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.2)
    images = _correlated_inputs(generator)
    hessian = input_hessians(conv, {"conv": conv}, images, mean=True)["conv"]
    scales = channel_scales(conv.weight.detach().numpy(), qmax)
    grid = torch.from_numpy(scales).reshape(-1, 1, 1, 1)
    ratio = conv.weight.detach() / grid
    levels = torch.from_numpy(adaround_levels(conv.weight, hessian, scales, qmax).astype(np.float32))
    nearest = torch.clamp(torch.round(ratio), -qmax, qmax)
    assert levels.abs().max() <= qmax
    assert bool(((levels == torch.floor(ratio)) | (levels == torch.ceil(ratio))).all())
    learned, plain = (_calibration_error(conv, lv * grid, images) for lv in (levels, nearest))
    # never above nearest, on the images themselves; and well below it where inputs correlate
    assert learned <= plain * (1 + 1e-6)
    assert learned < 0.9 * plain, (learned, plain)
    assert (levels != nearest).float().mean() > 0.02


def test_a_layer_after_a_rounded_one_compensates_its_input_error():
    """Asymmetric objective: the second layer sees the first one's rounded output. Measured on
    the images, E|| W x - W~ x~ ||^2 is never above nearest rounding's and here well below it."""
    from edgevpr.quantize.adaround import input_moments

    generator = torch.Generator().manual_seed(7)
    net = nn.Sequential(nn.Conv2d(24, 24, 1, bias=False), nn.ReLU(), nn.Conv2d(24, 16, 3, padding=1, bias=False))
    with torch.no_grad():
        for conv in (net[0], net[2]):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.2)
    rounded = copy.deepcopy(net)
    first_scales = torch.from_numpy(channel_scales(net[0].weight.detach().numpy(), 15)).reshape(-1, 1, 1, 1)
    with torch.no_grad():  # a coarse first layer, so its error matters downstream
        rounded[0].weight.copy_(torch.round(net[0].weight / first_scales) * first_scales)
    images = _correlated_inputs(generator)
    moments, cross = input_moments(net, rounded, "2", images)
    conv = net[2]
    scales = channel_scales(conv.weight.detach().numpy(), 127)
    grid = torch.from_numpy(scales).reshape(-1, 1, 1, 1)
    levels = torch.from_numpy(adaround_levels(conv.weight, moments, scales, 127, cross=cross).astype(np.float32))
    nearest = torch.clamp(torch.round(conv.weight.detach() / grid), -127, 127)
    with torch.no_grad():
        wanted = net(images)
        inputs = rounded[1](rounded[0](images))

        def error(lv):
            return (F.conv2d(inputs, lv * grid, None, 1, 1) - wanted).pow(2).sum(1).mean().item()

        learned, plain = error(levels), error(nearest)
    assert learned <= plain * (1 + 1e-6) and learned < 0.9 * plain, (learned, plain)


def test_a_layer_already_on_its_grid_keeps_its_exact_levels():
    conv = nn.Conv2d(8, 8, 1, bias=False)
    scales = np.full(8, 0.01, dtype=np.float32)
    exact = torch.randint(-127, 128, conv.weight.shape, generator=torch.Generator().manual_seed(1)).float()
    with torch.no_grad():
        conv.weight.copy_(exact * 0.01)
    images = torch.relu(torch.randn(3, 8, 6, 6))
    hessian = input_hessians(conv, {"conv": conv}, images, mean=True)["conv"]
    assert np.array_equal(adaround_levels(conv.weight, hessian, scales, 127), exact.numpy().astype(np.int16))


def _weights_of(path):
    model = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}, model


@pytest.mark.slow
def test_an_adaround_file_holds_the_learned_levels_and_stays_close_to_fp32(tmp_path, monkeypatch):
    from edgevpr.models.resolve import contract_of
    from edgevpr.quantize import adaround
    from edgevpr.quantize.calibration_images import CalibrationImages
    from edgevpr.runtime.onnx_model import OnnxModel

    monkeypatch.setattr(adaround, "ITERATIONS", 60)  # enough to move levels; the default is for real models
    for i in range(4):
        write_image(tmp_path / "calib" / f"{i}.jpg", i, size=(96, 64))
    calib = str(tmp_path / "calib")
    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (64, 96)}}
    )
    outputs, files = {}, {}
    for rounding in ("fp32", "nearest", "adaround"):
        out = tmp_path / f"{rounding}.onnx"
        options = QuantizeConfig(
            "fp32" if rounding == "fp32" else "int8",
            calib=calib,
            calib_count=4,
            int8_layout="u8s7",
            int8_rounding="nearest" if rounding == "fp32" else rounding,
        )
        quantize_model(load_config(overrides=config.to_dict()), options, str(out))
        files[rounding] = out
    images = np.concatenate(list(CalibrationImages(calib, 4, contract_of(config), config.data.max_pixels)()))
    outputs = {name: OnnxModel(str(path))(images) for name, path in files.items()}
    assert get_metadata(onnx.load(str(files["adaround"])))["int8_rounding"]["method"] == "adaround"
    # every level in the file is its fp32 weight's floor or ceiling on the file's own scale, fits
    # the 7-bit layout, and a good share of them is not the nearest level
    learned, _ = _weights_of(files["adaround"])
    fp32, _ = _weights_of(files["fp32"])
    integer = [n for n, a in learned.items() if a.dtype == np.int8 and a.ndim == 4 and a.shape[1] > 1]
    assert len(integer) > 10
    moved = []
    for name in integer:
        base = name.removesuffix("_quantized")
        if fp32[base].shape != learned[name].shape:  # the stem, widened to 4 input channels for ORT's kernels
            continue
        ratio = fp32[base] / learned[f"{base}_scale"].reshape(-1, 1, 1, 1)
        levels = learned[name].astype(np.float64)
        assert np.abs(levels).max() <= 64
        assert np.all(np.abs(levels - ratio) < 1 + 1e-4), name
        moved.append(np.mean(levels != np.clip(np.round(ratio), -64, 64)))
    assert max(moved) > 0.05, moved

    def cosine(name):
        a, b = outputs[name], outputs["fp32"]
        return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))

    assert cosine("adaround") > 0.99, (cosine("adaround"), cosine("nearest"))
    assert cosine("adaround") >= cosine("nearest") - 0.002, (cosine("adaround"), cosine("nearest"))
    with pytest.raises(ConfigError, match="--int8-rounding applies to --precision int8"):
        quantize_model(config, QuantizeConfig("int4", int8_rounding="adaround"), str(tmp_path / "bad.onnx"))
    assert not (tmp_path / "bad.onnx").exists()
