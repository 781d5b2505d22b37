"""Run an exported model with ONNX Runtime, as an extractor the evaluation can use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch

from edgevpr.errors import ConfigError
from edgevpr.quantize.onnx_export import INPUT, METADATA_KEY


class OnnxModel:
    """Callable on a (B, 3, H, W) tensor, returning (B, D) float32 descriptors."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: ONNX model not found")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as error:
            raise ConfigError(f"{self.path}: not an ONNX model ({error.__class__.__name__})") from None
        entries = {e.key: e.value for e in proto.metadata_props}
        self.metadata = json.loads(entries.get(METADATA_KEY, "{}"))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.fixed_size = tuple(shape[2:]) if all(isinstance(s, int) for s in shape[2:]) else None

    def __call__(self, images) -> np.ndarray:
        array = images.numpy() if torch.is_tensor(images) else images
        if self.fixed_size and tuple(array.shape[-2:]) != self.fixed_size:
            (h, w), (fh, fw) = array.shape[-2:], self.fixed_size
            raise ConfigError(f"{self.path}: the model takes {fh}x{fw} images only, this one is {h}x{w} after "
                              f"resizing; give --size {fh}x{fw}")
        return self.session.run(None, {INPUT: np.ascontiguousarray(array, dtype=np.float32)})[0].astype(np.float32)

    def eval(self):
        return self

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size
