"""Export a model to ONNX: dynamic batch always; dynamic height and width only where the
exported graph gives the same descriptors at another size (R-MAC regions, for one, are
computed from the input size at export time, so those models are fixed-size). A patch model
(``extraction.patches.PatchModel``) exports a second output, ``patches`` (B, n_P, D_p), at its
export size only: its patch count and positions are those of one feature-map size."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import onnx
import torch

from edgevpr.errors import EdgeVPRError
from edgevpr.runtime.onnx_model import INPUT, METADATA_KEY, OUTPUT, PATCHES


def _export_bytes(model, example: torch.Tensor, dynamic_size: bool, opset: int, outputs=(OUTPUT,)) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (example,),
                buffer,
                input_names=[INPUT],
                output_names=list(outputs),
                dynamic_axes={INPUT: axes} | {name: {0: "batch"} for name in outputs},
                opset_version=opset,
                dynamo=False,
            )
        except Exception as error:  # the exporter raises many types for unsupported operators
            message = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
            raise EdgeVPRError(f"cannot export the model to ONNX: {message}") from None
    return buffer.getvalue()


def run_onnx(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a refused size is an answer here, not an error to print
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT: images})[0]


def _same_at_other_size(model, model_bytes: bytes, example: torch.Tensor) -> bool:
    """Odd and even offsets change the parity of the sizes at several strides, where
    size-dependent padding would differ."""
    height, width = example.shape[-2:]
    for extra_h, extra_w in ((33, 47), (50, 30)):
        other = torch.rand(1, 3, height + extra_h, width + extra_w)
        try:
            with torch.no_grad():
                expected = model(other).numpy()
            if np.abs(run_onnx(model_bytes, other.numpy()) - expected).max() > 1e-4:
                return False
        except Exception:  # the model or ORT refuses the other size: not dynamic
            return False
    return True


def export_onnx(model: torch.nn.Module, example: torch.Tensor, metadata: dict, opset: int = 17) -> onnx.ModelProto:
    """The model as an ONNX ``ModelProto`` with edgevpr metadata (config, params, flops, sizes)."""
    model = model.eval()
    if hasattr(model, "centres"):  # a patch model: descriptors and patches, at its export size
        data, dynamic = _export_bytes(model, example, False, opset, (OUTPUT, PATCHES)), False
    else:
        data = _export_bytes(model, example, dynamic_size=True, opset=opset)
        dynamic = _same_at_other_size(model, data, example)
        if not dynamic:
            data = _export_bytes(model, example, dynamic_size=False, opset=opset)
    proto = inline_identity_initializers(onnx.load_from_string(data))
    set_metadata(proto, metadata | {"dynamic_size": dynamic, "export_size": list(example.shape[-2:])})
    return proto


def inline_identity_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The exporter shares identical initializers (zero biases, say) through Identity nodes;
    quantizers expect every weight and bias to be an initializer, so give each use its own."""
    initializers = {i.name: i for i in proto.graph.initializer}
    kept = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            proto.graph.initializer.append(copy)
        else:
            kept.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    return proto


def tensor_consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it, in graph order (a node reading it twice counts once)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            consumers.setdefault(name, []).append(node)
    return consumers


def patch_only_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes that feed the ``patches`` output and not the descriptors: the patch
    pooling of a file exported with patches (none for a file without)."""
    producer = {output: node for node in proto.graph.node for output in node.output}

    def ancestors(tensor: str) -> set[str]:
        seen, stack = set(), [tensor]
        while stack:
            node = producer.get(stack.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                stack.extend(node.input)
        return seen

    outputs = {output.name for output in proto.graph.output}
    if PATCHES not in outputs:
        return []
    shared = ancestors(OUTPUT)
    return sorted(ancestors(PATCHES) - shared)


WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def aggregator_float_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the aggregator's nodes that hold no weights of their own (softmax, powers,
    reductions, normalisations, divisions): the ops an int8 graph keeps in float."""
    return [node.name for node in proto.graph.node if "/aggregator/" in node.name and node.op_type not in WEIGHTED_OPS]


def set_metadata(proto: onnx.ModelProto, metadata: dict) -> None:
    for entry in list(proto.metadata_props):
        if entry.key == METADATA_KEY:
            proto.metadata_props.remove(entry)
    proto.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=json.dumps(metadata)))


def get_metadata(proto: onnx.ModelProto) -> dict:
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return {}
