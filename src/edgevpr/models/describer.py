"""The deployed model: one type for whatever turns images into descriptors, so that ``eval``,
maps (``map build`` and ``localize``), sweeps and compare-precisions run one thing and measure
it the same way.

A ``Describer`` is a network (a PyTorch module, or an ONNX Runtime session of a file of any
precision) together with its input contract, carried as one value (``InputContract``: resize
rule, size, mean, std, padding, interpolation), never rebuilt from config fields. As in timm's
``pretrained_cfg``, explicit arguments override it: ``with_contract``. It reports what the
cost block needs (parameters, bytes, FLOPs, latency at batch 1) and, for a file with integer
layers, its int8 layout and the kernel family of this CPU."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgevpr.contract import InputContract
from edgevpr.models.size import count_flops, count_params, serialized_bytes
from edgevpr.timing import time_extraction


def deployment_name(precision: str, runtime: str, int8: dict | None = None) -> str:
    """How a model ran, as protocol names end: ``fp32:pytorch``, or for a file with integer
    layers ``int8-cpu:onnxruntime:u8s8@x86-avx512-vnni`` (its layout and this CPU's kernels).
    Eval's and maps' protocol names both end in it."""
    parts = [precision, runtime]
    if int8 and int8.get("int8_kernels"):
        parts.append(f"{int8['int8_layout']}@{int8['int8_kernels']}")
    return ":".join(parts)


def torch_runner(model: torch.nn.Module, input_shape: tuple[int, ...]):
    """One forward pass of ``model`` on zeros of ``input_shape``, for timing."""
    images = torch.zeros(input_shape)

    def run_once():
        with torch.inference_mode():
            model(images)

    return run_once


def time_torch_extraction(model: torch.nn.Module, input_shape: tuple[int, ...], runs: int = 30) -> dict:
    return time_extraction(torch_runner(model, input_shape), runs) | {"threads": torch.get_num_threads()}


@dataclass(frozen=True)
class Describer:
    network: object  # torch.nn.Module, or runtime.onnx_model.OnnxModel
    contract: InputContract
    kind: str  # "pytorch" (built from a config), "checkpoint" (read from a file) or "onnx"
    precision: str
    runtime: str
    params: int
    model_bytes: int
    fixed_size: tuple[int, int] | None = None  # a file exported at one size takes only that size
    info: dict | None = None  # an ONNX file's metadata (the config it was made from, its contract, ...)
    int8: dict | None = None  # integer layers: their layout and the kernel family that runs them

    # -- making one ----------------------------------------------------------------------------
    @classmethod
    def torch(cls, model: torch.nn.Module, contract: InputContract, kind: str = "pytorch") -> Describer:
        model = model.eval()
        return cls(model, contract, kind, "fp32", "pytorch", count_params(model), serialized_bytes(model))

    @classmethod
    def onnx(
        cls,
        path: str | Path,
        threads: int | None = None,
        optimization: str = "all",
        contract: InputContract | None = None,
    ) -> Describer:
        """An ONNX file of any precision under the contract it stores (or ``contract``, for a
        file that stores none: one not made by edgevpr)."""
        from edgevpr.models.resolve import stored_contract
        from edgevpr.runtime.cpu import cpu_kernels
        from edgevpr.runtime.int8_layout import layout_of
        from edgevpr.runtime.onnx_model import OnnxModel, runtime_name

        session = OnnxModel(path, threads, optimization)
        meta = session.metadata
        layout = layout_of(meta)
        precision = meta.get("precision", "fp32") + (f"-{meta['target']}" if meta.get("target") else "")
        return cls(
            session,
            contract or stored_contract(meta, str(path)),
            "onnx",
            precision,
            runtime_name(optimization),
            int(meta.get("params", 0)),
            session.file_bytes,
            session.fixed_size,
            meta,
            {"int8_layout": layout.name, "int8_kernels": cpu_kernels().family} if layout else None,
        )

    @classmethod
    def checkpoint(cls, path: str | Path, threads: int | None = None) -> Describer:
        """An edgevpr checkpoint: its architecture, weights and contract."""
        from edgevpr.models.checkpoint import read_checkpoint
        from edgevpr.models.model import model_from_checkpoint
        from edgevpr.models.resolve import stored_contract

        payload = read_checkpoint(path)
        contract = stored_contract(payload, str(path))
        model = model_from_checkpoint(payload, str(path))
        if threads:
            torch.set_num_threads(threads)
        return cls.torch(model, contract, kind="checkpoint")

    def name(self) -> str:
        return deployment_name(self.precision, self.runtime, self.int8)

    def with_contract(self, contract: InputContract) -> Describer:
        """The same network under an explicitly given contract (flags override what it carries)."""
        return dataclasses.replace(self, contract=contract)

    # -- running it ----------------------------------------------------------------------------
    @property
    def is_torch(self) -> bool:
        return isinstance(self.network, torch.nn.Module)

    def __call__(self, images: torch.Tensor):
        """(B, 3, H, W) float32 images (already under the contract) -> what the network returns:
        (B, D) descriptors, or (descriptors, patches) for a patch model."""
        if not self.is_torch:
            return self.network(images)
        # a model in training may sit on a GPU; a model of no tensors (pixels) runs where the images are
        tensor = next(itertools.chain(self.network.parameters(), self.network.buffers()), images)
        device = tensor.device
        with torch.inference_mode():
            output = self.network(images.to(device))
        if device.type == "cpu":
            return output
        return tuple(part.cpu() for part in output) if isinstance(output, tuple) else output.cpu()

    def describe(self, images: torch.Tensor) -> np.ndarray:
        """(B, D) float32 descriptors of images already under the contract."""
        return np.asarray(self(images), dtype=np.float32)

    # -- measuring it --------------------------------------------------------------------------
    def flops(self, shape: tuple[int, ...]) -> int:
        if self.is_torch:
            return count_flops(self.network, shape)
        return int((self.info or {}).get("flops", 0))

    def latency(self, shape: tuple[int, ...], runs: int) -> dict:
        """Median and p90 ms of one forward pass at ``shape`` (``timing.time_extraction``)."""
        if self.is_torch:
            return time_torch_extraction(self.network, shape, runs)
        images = np.zeros(shape, dtype=np.float32)
        return time_extraction(lambda: self.network(images), runs) | {"threads": self.network.threads}
