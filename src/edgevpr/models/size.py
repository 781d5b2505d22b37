"""How big a model is: parameters, FLOPs of one forward pass, and serialized bytes.

- params: trainable and frozen parameters of the model.
- flops: floating-point operations of one forward pass at an input size, from
  ``torch.utils.flop_counter`` (convolutions, linear layers and matrix products; one
  multiply-add counts as 2).
- bytes: size of the serialized weights (``torch.save`` of the state dict).
"""

from __future__ import annotations

import io

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def count_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch counts fused attention only in its GPU kernels; on CPU, sdpa runs this op uncounted
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


def count_flops(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """torch's FLOP count (2 per multiply-add), fused CPU attention included."""
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)
    # with autograd on: FlopCounterMode's module tracker hooks the gradients of attention
    # layers' inputs, and fails on the grad-less tensors of inference_mode or no_grad
    with torch.enable_grad(), counter:
        model(torch.zeros(input_shape))
    return int(counter.get_total_flops())


def serialized_bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
