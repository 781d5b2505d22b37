"""The trained matcher as an ONNX file with dynamic pair and patch counts, run by ONNX Runtime
(``--rerank attention --matcher FILE.onnx``). The export is checked against PyTorch on patch
counts other than the example's; ``int8`` quantizes its weights (dynamic quantization)."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from edgevpr.atomic import atomic_path, check_output
from edgevpr.errors import EdgeVPRError
from edgevpr.rerank.matcher_file import load_matcher

INPUTS = ["query_patches", "query_positions", "database_patches", "database_positions"]
OUTPUTS = ["log_assignment", "score"]
METADATA_KEY = "edgevpr_matcher"


def _pairs(in_dim: int, batch: int, m: int, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(batch, m, in_dim, generator=g), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(batch, n, in_dim, generator=g), dim=-1)
    return q, torch.rand(batch, m, 2, generator=g) * 2 - 1, d, torch.rand(batch, n, 2, generator=g) * 2 - 1


def session(model: bytes | str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def export_matcher(matcher_file: str, out: str, int8: bool = False) -> dict:
    check_output(out, "--out")
    matcher, meta = load_matcher(matcher_file)
    in_dim = matcher.config["in_dim"]
    buffer = io.BytesIO()
    axes = {0: "pairs"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                matcher,
                _pairs(in_dim, 2, 12, 9),
                buffer,
                input_names=INPUTS,
                output_names=OUTPUTS,
                dynamic_axes={
                    "query_patches": axes | {1: "m"},
                    "query_positions": axes | {1: "m"},
                    "database_patches": axes | {1: "n"},
                    "database_positions": axes | {1: "n"},
                    "log_assignment": axes | {1: "m1", 2: "n1"},
                    "score": axes,
                },
                opset_version=17,
                dynamo=False,
            )
        except Exception as error:  # the exporter raises many types
            raise EdgeVPRError(f"cannot export the matcher to ONNX: {str(error).strip().splitlines()[0]}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({k: v for k, v in meta.items() if k != "format"})
    model_bytes = proto.SerializeToString()
    if int8:
        model_bytes = _quantized(model_bytes)
    difference = max_difference(matcher, model_bytes, in_dim)
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(model_bytes)
    return {"bytes": len(model_bytes), "max_difference": difference, "int8": int8}


def _shared_weights_folded(model_bytes: bytes) -> bytes:
    """The exporter gives a weight used twice (query and database patches go through the same
    layers) an Identity copy per use; quantization then kept the fp32 original beside the int8
    copy and the file grew. Each use reads the one initializer instead."""
    proto = onnx.load_from_string(model_bytes)
    initializers = {tensor.name for tensor in proto.graph.initializer}
    alias = {
        node.output[0]: node.input[0]
        for node in proto.graph.node
        if node.op_type == "Identity" and node.input[0] in initializers
    }
    kept = [node for node in proto.graph.node if not (node.op_type == "Identity" and node.output[0] in alias)]
    for node in kept:
        for position, name in enumerate(node.input):
            node.input[position] = alias.get(name, name)
    outputs = {output.name for output in proto.graph.output}
    if outputs & set(alias):
        return model_bytes  # a graph output is such a copy: leave the graph as it is
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    return proto.SerializeToString()


def _quantized(model_bytes: bytes) -> bytes:
    """int8 weights only (ONNX Runtime dynamic quantization of every MatMul's weight)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(_shared_weights_folded(model_bytes))
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return target.read_bytes()


def max_difference(matcher, model_bytes: bytes, in_dim: int) -> float:
    """Largest |ONNX - PyTorch| of the image scores and the log assignment, on pair and patch
    counts that differ from the export example's."""
    runner = session(model_bytes)
    worst = 0.0
    for batch, m, n in ((1, 30, 17), (3, 7, 41)):
        inputs = _pairs(in_dim, batch, m, n, seed=m)
        with torch.inference_mode():
            expected = [t.numpy() for t in matcher(*inputs)]
        got = runner.run(None, dict(zip(INPUTS, [t.numpy() for t in inputs])))
        for a, b in zip(expected, got):
            worst = max(worst, float(np.abs(a - b).max()))
    return worst
