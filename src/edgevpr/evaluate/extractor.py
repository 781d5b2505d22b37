"""What produces descriptors in an evaluation: a PyTorch model or an ONNX Runtime session,
with its own way of reporting params, FLOPs, bytes and latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from edgevpr.evaluate.cost import time_torch_extraction
from edgevpr.models.size import count_flops, count_params, serialized_bytes
from edgevpr.timing import time_extraction


@dataclass
class Extractor:
    forward: Callable  # (B, 3, H, W) tensor -> (B, D) tensor or array
    precision: str
    runtime: str
    params: int
    model_bytes: int
    flops: Callable[[tuple], int]
    latency: Callable[[tuple, int], dict]
    fixed_size: tuple[int, int] | None = None
    info: dict | None = None
    int8: dict | None = None  # a file with integer layers: its layout and the kernel family that ran it


def torch_extractor(model: torch.nn.Module) -> Extractor:
    return Extractor(
        forward=model,
        precision="fp32",
        runtime="pytorch",
        params=count_params(model),
        model_bytes=serialized_bytes(model),
        flops=lambda shape: count_flops(model, shape),
        latency=lambda shape, runs: time_torch_extraction(model, shape, runs),
    )


def onnx_extractor(path: str, threads: int | None = None, optimization: str = "all") -> Extractor:
    from edgevpr.runtime.cpu import cpu_kernels
    from edgevpr.runtime.int8_layout import layout_of
    from edgevpr.runtime.onnx_model import OnnxModel, runtime_name

    model = OnnxModel(path, threads, optimization)
    meta = model.metadata
    layout = layout_of(meta)

    def latency(shape, runs):
        images = np.zeros(shape, dtype=np.float32)
        return time_extraction(lambda: model(images), runs) | {"threads": model.threads}

    precision = meta.get("precision", "fp32")
    if meta.get("target"):
        precision = f"{precision}-{meta['target']}"
    return Extractor(
        forward=model,
        precision=precision,
        runtime=runtime_name(optimization),
        params=int(meta.get("params", 0)),
        model_bytes=model.file_bytes,
        flops=lambda shape: int(meta.get("flops", 0)),
        latency=latency,
        fixed_size=model.fixed_size,
        info=meta,
        int8={"int8_layout": layout.name, "int8_kernels": cpu_kernels().family} if layout else None,
    )
