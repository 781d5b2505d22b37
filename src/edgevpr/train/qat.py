"""Quantization-aware fine-tuning of the weights (``train --qat``): every convolution and linear
layer computes with its weights fake-quantized onto the grid the deployed int8 file holds them
on, and the gradient passes the rounding unchanged (the straight-through estimator of Bengio et
al. 2013, as in Jacob et al. 2018's quantization-aware training).

The grid is the deploy path's (``quantize.weight_grid``): per output channel, symmetric, max|w|
over ``qmax`` levels per sign, ``qmax`` from the int8 layout (127 for u8s8 and s8s8, 64 for
u8s7; depthwise convolutions keep 127). Folding BatchNorm at export multiplies each output
channel by a constant, which a per-channel symmetric grid absorbs, so the levels trained here
are the levels ``quantize --checkpoint`` writes (with nearest rounding). Activations are not
fake-quantized: their ranges are calibrated on the exported graph, as for any model.

The latent float weights are what the run's checkpoints hold, under the model's own parameter
names, so a QAT checkpoint loads, evaluates and quantizes as any other."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgevpr.quantize.weight_grid import is_depthwise

PARAMETRIZED = ".parametrizations.weight.original"


class WeightFakeQuant(nn.Module):
    """w -> s * clamp(round(w / s), -qmax, qmax), s = max|w_c| / qmax per output channel; the
    forward value is quantized, the gradient is the identity's."""

    def __init__(self, qmax: int):
        super().__init__()
        self.qmax = qmax

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        largest = weight.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12)
        scale = (largest / self.qmax).reshape(-1, *([1] * (weight.dim() - 1)))
        quantized = torch.clamp(torch.round(weight / scale), -self.qmax, self.qmax) * scale
        return weight + (quantized - weight).detach()


def qat_weight_max(options) -> int:
    """The weight levels per sign the deployed file will hold (``QuantizeConfig`` ``options``):
    127 for the tensorrt target, else the int8 layout's (``auto``: this CPU's)."""
    from edgevpr.runtime.int8_layout import resolve_layout

    return 127 if options.target == "tensorrt" else resolve_layout(options.int8_layout).weight_max


def attach_weight_fake_quant(model: nn.Module, weight_max: int) -> int:
    """Fake-quantize the weights of every Conv2d and Linear of ``model`` (depthwise: 127
    levels, others ``weight_max``); returns how many layers."""
    count = 0
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not parametrize.is_parametrized(module, "weight"):
            depthwise = isinstance(module, nn.Conv2d) and is_depthwise(module.weight.shape, module.groups)
            parametrize.register_parametrization(module, "weight", WeightFakeQuant(127 if depthwise else weight_max))
            count += 1
    return count


def plain_state_dict(model: nn.Module) -> dict:
    """``model.state_dict()`` under the unparametrized names (the latent float weights)."""
    return {key.replace(PARAMETRIZED, ".weight"): value for key, value in model.state_dict().items()}


def load_plain_state_dict(model: nn.Module, state: dict) -> None:
    """Load a state dict saved under plain names into ``model``, parametrized or not."""
    wanted = set(model.state_dict())
    model.load_state_dict(
        {
            (key[: -len(".weight")] + PARAMETRIZED if key[: -len(".weight")] + PARAMETRIZED in wanted else key): value
            for key, value in state.items()
        }
    )
