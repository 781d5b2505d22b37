"""Run an exported model with ONNX Runtime, as an extractor the evaluation can use."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch

from edgevpr.config import ORT_OPTIMIZATIONS
from edgevpr.errors import ConfigError
from edgevpr.runtime.int8_layout import saturation_warning

INPUT, OUTPUT = "images", "descriptors"  # the tensor names of every file edgevpr exports
PATCHES = "patches"  # the second output of a file exported with patches (quantize --patches)
METADATA_KEY = "edgevpr"  # the metadata_props entry holding the file's JSON metadata (config, contract, precision)

# ONNX Runtime's graph optimization levels. "none" runs a QDQ graph as written: dequantize, float
# operator, quantize; from "extended" on, ONNX Runtime fuses those into integer kernels, whose
# rounding differs (the simulated quantization of `edgevpr search-precision` reproduces the latter)
OPTIMIZATION_LEVELS = dict(
    zip(ORT_OPTIMIZATIONS, ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC", "ORT_DISABLE_ALL"))
)


# ONNX Runtime's WeightBiasQuantization pass quantizes, per tensor to int8, the float weights of
# any Conv between a DequantizeLinear and a QuantizeLinear: the fp16 and int4 layers of a mixed
# model and the layers `--keep-float` keeps in float would silently run as int8
KEEP_FLOAT_WEIGHTS = ["WeightBiasQuantization"]


def runtime_name(optimization: str = "all") -> str:
    """The runtime a protocol names: ``onnxruntime``, or ``onnxruntime-<level>`` off the default."""
    return "onnxruntime" if optimization == "all" else f"onnxruntime-{optimization}"


class OnnxModel:
    """Callable on a (B, 3, H, W) tensor, returning (B, D) float32 descriptors; ``run_all``
    returns every output (a file with patches: descriptors and (B, n_P, D_p) patches)."""

    def __init__(self, path: str | Path, threads: int | None = None, optimization: str = "all"):
        import onnxruntime as ort

        if optimization not in OPTIMIZATION_LEVELS:
            raise ConfigError(
                f"unknown ONNX Runtime optimization {optimization!r}; use one of {', '.join(OPTIMIZATION_LEVELS)}"
            )
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: ONNX model not found")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as error:
            raise ConfigError(f"{self.path}: not an ONNX model ({error.__class__.__name__})") from None
        entries = {e.key: e.value for e in proto.metadata_props}
        self.metadata = json.loads(entries.get(METADATA_KEY, "{}"))
        warning = saturation_warning(self.path, self.metadata)
        if warning:
            print(warning, file=sys.stderr)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.threads = options.intra_op_num_threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"], disabled_optimizers=KEEP_FLOAT_WEIGHTS
            )
        except Exception as error:  # ONNX Runtime raises its own types for invalid graphs
            detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else error.__class__.__name__
            raise ConfigError(f"{self.path}: ONNX Runtime cannot run this model ({detail})") from None
        names = [tensor.name for tensor in self.session.get_inputs()]
        if names != [INPUT]:
            raise ConfigError(f"{self.path}: not an edgevpr model (inputs {names}, expected one named {INPUT!r})")
        shape = self.session.get_inputs()[0].shape
        self.fixed_size = tuple(shape[2:]) if all(isinstance(s, int) for s in shape[2:]) else None
        self.outputs = [tensor.name for tensor in self.session.get_outputs()]

    @property
    def has_patches(self) -> bool:
        return PATCHES in self.outputs

    def __call__(self, images) -> np.ndarray:
        return self.run_all(images, [OUTPUT] if OUTPUT in self.outputs else None)[0]

    def run_all(self, images, names: list[str] | None = None) -> list[np.ndarray]:
        array = images.numpy() if torch.is_tensor(images) else images
        if self.fixed_size and tuple(array.shape[-2:]) != self.fixed_size:
            (h, w), (fh, fw) = array.shape[-2:], self.fixed_size
            raise ConfigError(
                f"{self.path}: the model takes {fh}x{fw} images only, this one is {h}x{w} after "
                f"resizing; give --size {fh}x{fw}"
            )
        outputs = self.session.run(names, {INPUT: np.ascontiguousarray(array, dtype=np.float32)})
        return [output.astype(np.float32) for output in outputs]

    def eval(self):
        return self

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size
