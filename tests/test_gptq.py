"""GPTQ int4 rounding: the input patches it reads, the grid it keeps, the output error it cuts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgevpr.models.tf_same import Conv2dSame
from edgevpr.quantize.gptq import (
    dequantized,
    gptq_int4,
    gptq_int4_layers,
    input_hessians,
    input_patches,
)
from edgevpr.quantize.int4 import quantize_int4_symmetric


def _same(*args, **kwargs):
    conv = torch.nn.Conv2d(*args, **kwargs)
    conv.__class__, conv.padding = Conv2dSame, (0, 0)
    return conv


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.nn.Conv2d(6, 4, 3, padding=1),
        lambda: torch.nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6),  # depthwise
        lambda: torch.nn.Conv2d(6, 4, 3, padding=2, dilation=2, groups=2),
        lambda: torch.nn.Conv2d(6, 8, 1),
        lambda: _same(6, 4, 3, stride=2),  # TensorFlow 'SAME': pads 0 before, 1 after on an even size
    ],
)
def test_patches_are_what_the_layer_multiplies(make):
    torch.manual_seed(0)
    conv = make()
    x = torch.randn(2, 6, 10, 12)
    patches = input_patches(conv, x)  # (batch, groups, inputs per group, positions)
    weight = conv.weight.reshape(conv.groups, conv.out_channels // conv.groups, -1)
    output = torch.einsum("goi,bgil->bgol", weight, patches).reshape(2, conv.out_channels, -1)
    expected = conv(x) - conv.bias.reshape(1, -1, 1, 1)
    torch.testing.assert_close(output, expected.flatten(2), atol=1e-5, rtol=1e-5)


def test_linear_patches():
    linear = torch.nn.Linear(5, 3, bias=False)
    x = torch.randn(7, 5)
    patches = input_patches(linear, x)
    torch.testing.assert_close(torch.einsum("oi,bgil->ol", linear.weight, patches).T, linear(x))


def _correlated_inputs(samples=4000, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(size, size, generator=generator)
    return torch.randn(samples, size, generator=generator) @ mixing  # strongly correlated inputs


def test_gptq_keeps_the_grid_and_cuts_the_output_error():
    torch.manual_seed(1)
    weight = torch.randn(12, 16)
    x = _correlated_inputs()
    hessian = (x.T.double() @ x.double()).unsqueeze(0)
    levels, scales = gptq_int4(weight, hessian)
    nearest, nearest_scales = quantize_int4_symmetric(weight.numpy(), axis=0)
    np.testing.assert_array_equal(scales, nearest_scales)  # same grid: only the rounding differs
    assert levels.dtype == np.int8 and levels.min() >= -8 and levels.max() <= 7
    assert (levels != nearest).mean() > 0.1

    def output_error(quantized):
        return float(((x @ (quantized - weight).T) ** 2).mean())

    assert output_error(dequantized(levels, scales)) < 0.75 * output_error(dequantized(nearest, scales))


def test_gptq_is_nearest_rounding_when_inputs_are_uncorrelated():
    """A diagonal H moves no error between inputs; an input never seen keeps its weight."""
    torch.manual_seed(2)
    weight = torch.randn(4, 6)
    hessian = torch.diag(torch.tensor([3.0, 1.0, 0.0, 2.0, 5.0, 0.5], dtype=torch.float64)).unsqueeze(0)
    levels, _ = gptq_int4(weight, hessian)
    np.testing.assert_array_equal(levels, quantize_int4_symmetric(weight.numpy(), axis=0)[0])


def test_layer_hessians_sum_over_images_and_groups():
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)
    )
    images = torch.randn(3, 3, 8, 8)
    hessians = input_hessians(model, {"0": model[0], "2": model[2]}, images)
    assert hessians["0"].shape == (1, 27, 27) and hessians["2"].shape == (4, 9, 9)
    hidden = F.relu(model[0](images))
    patches = input_patches(model[2], hidden).double()
    torch.testing.assert_close(hessians["2"], torch.einsum("bgil,bgjl->gij", patches, patches), rtol=1e-5, atol=1e-6)
    levels = gptq_int4_layers(model, {"0": model[0]}, images)
    assert set(levels) == {"0"} and levels["0"][0].shape == tuple(model[0].weight.shape)
