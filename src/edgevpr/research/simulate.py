"""Simulated quantization in PyTorch, for the mixed-precision search (Grainge et al. 2024 section 3.4).

The searchable layers are the convolutions and linear layers of the BN-folded model, in the
order they run. Each takes one precision, simulated as ``mixed_export`` deploys it:

- ``int8``: computed as ONNX Runtime's fused integer kernels compute the deployed QDQ graph
  (``Int8Arithmetic``), bit for bit on CPUs with exact int32 dot products (AVX-512 VNNI, AVX-VNNI):
  the layer's input tensor is quantized per tensor to uint8 with the ranges calibrated on the
  exported graph (the ranges the deployed file uses); the weights are per-channel symmetric
  int8 (``weight_grid.channel_scales``) and the bias int32 levels of s_in * s_w[c], as the
  quantizer stores them; the integer accumulator is requantized as QLinearConv does,
  round(float32(acc) * float32(s_in * s_w[c] / s_out)), clamped to uint8. The output tensor is
  the one after the Clip/Relu that ONNX Runtime fuses (``mixed_export.int8_tensors``). As in
  the QDQ graph, every consumer of those tensors reads the quantized values: the input is
  quantized in place before the layer runs, so a residual addition that reads the same tensor
  afterwards sees it quantized too; an addition of two quantized tensors whose sum is
  quantized runs as QLinearAdd does (``QuantizedAdd``).
- ``int4``: weights per-channel symmetric int4 (max|w| / 7, values in [-8, 7]), rounded to
  nearest or given (the GPTQ levels of module ``gptq``, which the deployment stores), and, if
  asked, the bias corrected for the mean output shift those weights cause (module
  ``bias_correction``); activations float, as the int4 deployment keeps them.
- ``fp16``: weights rounded to float16; activations float32, as the deployed file computes
  them (no float16 kernels on a CPU).

Run the deployed file with ``runtime.OnnxModel``: it keeps ONNX Runtime from quantizing the
weights of float layers that sit between quantized tensors (its WeightBiasQuantization pass),
which would make the fp16 and int4 layers something the simulation does not model.

Fitness is Grainge et al. 2024's Eq. 10: minus the mean squared difference between the descriptors of
the simulated model and those of the full-precision model on L calibration images. The model
runs in channels-last memory format, which this CPU's convolutions run about 2x faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from edgevpr.quantize.activation_grid import activation_grid, quantize_levels
from edgevpr.quantize.bias_correction import corrected_biases
from edgevpr.quantize.gptq import dequantized
from edgevpr.quantize.layers import Layer, quantized_weight
from edgevpr.quantize.weight_grid import is_depthwise
from edgevpr.research.int8_arithmetic import TAG, Int8Arithmetic, qlinear_add, tagged

PRECISIONS = ("int4", "int8", "fp16")
BITS = {"int4": 4, "int8": 8, "fp16": 16}


@dataclass
class QuantizedGraph:
    """What the deployed QDQ graph quantizes, by ONNX tensor name (``mixed_export.quantized_graph``):
    ``tensors[layer]`` = (input, output) tensors of the layer's int8 quantization, ``ranges``
    their calibrated ranges, ``adds[(a, b)]`` = the output of the graph's Add of a and b."""

    tensors: dict[str, tuple[str, str]]
    ranges: dict[str, tuple[float, float]]
    adds: dict[tuple[str, str], str]
    weight_max: int = 127  # the int8 layout's weight range (int8_layout); depthwise layers keep 127


class QuantizedAdd(TorchFunctionMode):
    """While active, an addition of two tensors the simulation holds quantized, whose sum the
    deployed graph quantizes too (the input of an int8 layer), runs as QLinearAdd."""

    ADDS = (torch.Tensor.__add__, torch.Tensor.add, torch.add)

    def __init__(self, graph: QuantizedGraph, quantized_inputs: set[str]):
        super().__init__()
        self.graph, self.quantized_inputs = graph, quantized_inputs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.ADDS and len(args) == 2 and not kwargs:
            a, b = (getattr(arg, TAG, None) for arg in args)
            name = self.graph.adds.get((a, b)) if a and b else None
            if name in self.quantized_inputs:
                grids = [activation_grid(*self.graph.ranges[t]) for t in (a, b, name)]
                return tagged(qlinear_add(args[0], grids[0], args[1], grids[1], grids[2]), name)
        return func(*args, **(kwargs or {}))


def _batches(images: torch.Tensor, size: int = 8):
    for start in range(0, len(images), size):
        yield images[start : start + size]


class Simulator:
    """Switches each layer of a (BN-folded) model between fp32, fp16, int8 and int4.

    ``graph`` names the tensors an int8 layer's quantization quantizes and their ranges (layers
    it leaves out cannot be int8); ``int4`` gives some layers' int4 (levels, scales), the others
    round to nearest; with ``bias_correction`` an int4 layer's bias is corrected on ``images``
    (layers without a bias get a zero one)."""

    def __init__(
        self,
        model: nn.Module,
        layers: list[Layer],
        graph: QuantizedGraph | None,
        images: torch.Tensor,
        bias_correction: bool = False,
        int4: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.layers, self.graph = layers, graph or QuantizedGraph({}, {}, {})
        self.images = images.contiguous(memory_format=torch.channels_last)
        self.original = {layer.name: layer.module.weight.detach().clone() for layer in layers}
        self.variants = {
            (layer.name, p): quantized_weight(self.original[layer.name], p)
            for layer in layers
            for p in ("int4", "fp16")
        }
        self.variants |= {(name, "int4"): dequantized(*levels) for name, levels in (int4 or {}).items()}
        self.modes = {layer.name: "fp32" for layer in layers}
        if bias_correction:
            for layer in layers:
                if layer.module.bias is None:
                    layer.module.bias = nn.Parameter(torch.zeros(layer.module.weight.shape[0]), requires_grad=False)
        self.original_bias = {
            layer.name: None if layer.module.bias is None else layer.module.bias.detach().clone() for layer in layers
        }
        ranges = self.graph.ranges
        self.int8 = {
            layer.name: Int8Arithmetic.of(
                self.original[layer.name],
                self.original_bias[layer.name],
                ranges[self.graph.tensors[layer.name][0]],
                ranges[self.graph.tensors[layer.name][1]],
                self._weight_levels(layer.module),
            )
            for layer in layers
            if layer.name in self.graph.tensors
        }
        self.biases: dict[tuple[str, str], torch.Tensor] = {}
        forward = self.model.forward

        def quantized_forward(*args, **kwargs):  # however the model is run: descriptors() or an evaluation
            inputs = {self.graph.tensors[name][0] for name, mode in self.modes.items() if mode == "int8"}
            with QuantizedAdd(self.graph, inputs):
                return forward(*args, **kwargs)

        self.model.forward = quantized_forward
        # the layer hooks quantize in place, so the caller's images are copied first
        self.model.register_forward_pre_hook(
            lambda module, inputs: (inputs[0].clone(memory_format=torch.channels_last), *inputs[1:])
        )
        for layer in layers:
            layer.module.register_forward_pre_hook(self._input_hook(layer.name))
            layer.module.register_forward_hook(self._output_hook(layer.name))
        self.reference = self.descriptors()
        self.evaluations = 0
        if bias_correction:
            biases = corrected_biases(
                self.model,
                {layer.name: layer.module for layer in layers},
                {layer.name: self.variants[(layer.name, "int4")] for layer in layers},
                _batches(self.images),
            )
            self.biases |= {(name, "int4"): bias for name, bias in biases.items()}

    def _weight_levels(self, module: nn.Module) -> int:
        """Per-sign int8 weight levels: the layout's, except depthwise convolutions (127)."""
        depthwise = isinstance(module, nn.Conv2d) and is_depthwise(module.weight.shape, module.groups)
        return 127 if depthwise else self.graph.weight_max

    def _input_hook(self, name: str):
        def hook(module, inputs):
            if self.modes[name] == "int8":  # the layer runs on the levels; the output hook dequantizes them
                tagged(
                    quantize_levels(inputs[0], self.int8[name].input_grid, in_place=True), self.graph.tensors[name][0]
                )

        return hook

    def _output_hook(self, name: str):
        def hook(module, inputs, output):
            if self.modes[name] != "int8":
                return None
            arithmetic, low = self.int8[name], None
            if arithmetic.low is not None:
                high = module.weight.data
                module.weight.data = arithmetic.low
                try:
                    low = type(module).forward(module, inputs[0])
                finally:
                    module.weight.data = high
            inputs[0].mul_(np.float32(arithmetic.input_grid[0]))  # what every later reader of the input sees
            return tagged(arithmetic.requantize(output, low), self.graph.tensors[name][1])

        return hook

    @torch.no_grad()
    def set(self, assignment: list[str] | None) -> None:
        """``assignment[i]`` is the precision of layer i (``None``: everything fp32)."""
        for i, layer in enumerate(self.layers):
            mode = "fp32" if assignment is None else assignment[i]
            if mode == "int8" and layer.name not in self.int8:
                raise ValueError(f"layer {layer.name}: no quantized tensors known, cannot simulate int8")
            self.modes[layer.name] = mode
            if mode == "int8":
                weight, bias = self.int8[layer.name].weight, torch.zeros(len(self.original[layer.name]))
            else:
                weight = self.original[layer.name] if mode == "fp32" else self.variants[(layer.name, mode)]
                bias = self.biases.get((layer.name, mode), self.original_bias[layer.name])
            layer.module.weight.copy_(weight)
            if layer.module.bias is not None and bias is not None:
                layer.module.bias.copy_(bias)

    @torch.no_grad()
    def descriptors(self) -> np.ndarray:
        return torch.cat([self.model(batch) for batch in _batches(self.images)]).numpy()

    def fitness(self, assignment: list[str]) -> float:
        """Eq. 10: minus the mean squared descriptor difference against full precision."""
        self.set(assignment)
        try:
            difference = self.descriptors() - self.reference
        finally:
            self.set(None)
        self.evaluations += 1
        return -float(np.mean(np.sum(difference**2, axis=1)))

    def one_layer_errors(self, precision: str, base: str = "fp16", progress=None) -> list[float]:
        """Descriptor error (minus fitness) with one layer at ``precision`` and every other at
        ``base``, for each layer in turn."""
        errors = []
        for i in range(len(self.layers)):
            candidate = [base] * len(self.layers)
            candidate[i] = precision
            errors.append(-self.fitness(candidate))
            if progress:
                progress(1)
        return errors
