"""fp16 and int8 post-training quantization of an fp32 ONNX model with ONNX Runtime's tools.

int8 targets:
- ``cpu``: QOperator format (fused QLinearConv), asymmetric activations and per-channel
  symmetric weights in one of the layouts of ``int8_layout`` (uint8 x int8 full range, the
  same with 7-bit weights, or int8 x int8): what ONNX Runtime runs fast, and exactly.
- ``tensorrt``: QDQ format, symmetric int8 activations and int8 per-channel weights, as
  TensorRT consumes explicit-quantization graphs.
Activation ranges come from ``calibration.ranges`` (ours, not ORT's calibrators) through ORT's
calibration cache, so ORT quantizes with exactly the ranges we computed.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgevpr.errors import ConfigError
from edgevpr.quantize.weight_grid import grid_overrides, scale_overrides
from edgevpr.runtime.int8_layout import LAYOUTS, Int8Layout

TARGETS = ("cpu", "tensorrt")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 weights and compute, float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def to_int8(
    model: onnx.ModelProto,
    tensor_ranges: dict[str, tuple[float, float]],
    target: str = "cpu",
    keep_float: list[str] | None = None,
    only: list[str] | None = None,
    qdq: bool | None = None,
    layout: Int8Layout = LAYOUTS["u8s8"],
    weight_scales: dict[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    """``keep_float``: node names left in float; ``only``: quantize just these nodes;
    ``qdq``: force QDQ (True) or QOperator (False) instead of the target's format; ``layout``:
    the ``cpu`` target's activation type and weight range (``tensorrt`` is symmetric int8);
    ``weight_scales``: per-channel scales of weight initializers, by name, whose values already
    lie on that grid (learned rounding), so the file keeps their levels."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    symmetric = target == "tensorrt"
    if qdq and layout.activations == "int8" and not symmetric:
        raise ConfigError(
            f"int8 layout {layout.name} needs QLinearConv (--precision int8): in a QDQ graph ONNX "
            "Runtime would run its int8 activations as uint8"
        )
    signed_activations = symmetric or layout.activations == "int8"
    weight_max = 127 if symmetric else layout.weight_max
    data = TensorsData(
        CalibrationMethod.MinMax, {n: (np.float32(lo), np.float32(hi)) for n, (lo, hi) in tensor_ranges.items()}
    )
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer advises pre-processing through the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="edgevpr-quant-") as folder:
            folder = Path(folder)
            source, output, cache = folder / "fp32.onnx", folder / "int8.onnx", folder / "ranges.json"
            onnx.save(model, source)
            save_tensors_data(data, cache)
            quantize_static(
                str(source),
                str(output),
                calibration_data_reader=None,
                quant_format=QuantFormat.QDQ if (symmetric if qdq is None else qdq) else QuantFormat.QOperator,
                nodes_to_quantize=only,
                per_channel=True,
                reduce_range=weight_max < 127,
                activation_type=QuantType.QInt8 if signed_activations else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=str(cache),
                nodes_to_exclude=keep_float or [],
                extra_options={
                    "ActivationSymmetric": symmetric,
                    "WeightSymmetric": True,
                    "TensorQuantOverrides": grid_overrides(model, weight_max, 127 if weight_max < 127 else None)
                    | scale_overrides(weight_scales or {}),
                },
            )
            return onnx.load(str(output))
    finally:
        root.setLevel(level)
