"""Activation ranges for int8 quantization, computed by us and handed to the quantizer.

Every float tensor of the graph is exposed as an output and the calibration images are run
one at a time through ONNX Runtime, so memory stays bounded however many images are used.
Pass 1 records each tensor's min and max; pass 2 builds a histogram of |x| with 2048 bins on
[0, max|x|]. From these:

- ``minmax``: [min, max].
- ``percentile``: the |x| below which ``percentile`` % (default 99.999) of the values fall,
  clipped to [min, max].
- ``entropy``: the TensorRT / Grainge et al. 2024 rule. For each candidate threshold bin i (from
  the number of quantization levels up to 2048, every ``ENTROPY_STRIDE``-th bin), P is the
  histogram clipped at i (outliers added to the last bin) and Q is P merged into the available
  levels and expanded back; the threshold minimises KL(P || Q) = sum P log(P / Q). Tensors that
  are never negative get all 256 levels of uint8 when the target has asymmetric activations,
  otherwise 128 levels per sign.
- ``mse``: each tensor's own threshold t minimising its expected squared quantization error,
  read off the histogram: values below t are rounded to a step of range(t) / (levels - 1) and
  cost step^2 / 12 each, values above are clipped to t and cost (|x| - t)^2 (the MSE criterion
  of Banner et al. 2019 and of ORT's and TensorRT's percentile-free calibrators). It chooses the
  clipping tensor by tensor, where ``percentile`` applies one rule to every tensor.

``range_choice`` adds ``layer-error``: per tensor, the rule whose range least disturbs the
outputs of the layers that read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from edgevpr.errors import ConfigError

BINS = 2048
ENTROPY_STRIDE = 4  # candidate thresholds 4 bins apart (0.2 % of max |x|): a quarter of TensorRT's cost
METHODS = ("minmax", "percentile", "entropy", "mse")


@dataclass
class TensorStats:
    minimum: float = np.inf
    maximum: float = -np.inf
    hist: np.ndarray | None = None  # of |x| on [0, absmax]
    samples: int = 0

    @property
    def absmax(self) -> float:
        return float(max(abs(self.minimum), abs(self.maximum)))


@dataclass
class CalibrationStats:
    tensors: dict[str, TensorStats] = field(default_factory=dict)
    images: int = 0


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of every float32 tensor produced inside the graph, plus its float inputs."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    }
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    for node in model.graph.node:
        names.extend(o for o in node.output if o)
    return [n for n in dict.fromkeys(names) if types.get(n) == onnx.TensorProto.FLOAT]


def augmented(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    for name in names:
        if name not in existing:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return copy


def exposing_session(model: onnx.ModelProto, names: list[str], threads: int | None = None):
    """An ONNX Runtime session of ``model`` that outputs the tensors ``names`` as well, unoptimised
    so every tensor keeps its name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(
        augmented(model, names).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def collect(model: onnx.ModelProto, batches, threads: int | None = None, progress=None) -> CalibrationStats:
    """Stream ``batches`` (a re-iterable of float32 arrays) through the model twice."""
    names = float_tensors(model)
    session = exposing_session(model, names, threads)
    input_name = session.get_inputs()[0].name
    stats = CalibrationStats({n: TensorStats() for n in names})
    for batch in batches():
        for name, value in zip(names, session.run(names, {input_name: batch})):
            s = stats.tensors[name]
            s.minimum, s.maximum = min(s.minimum, float(value.min())), max(s.maximum, float(value.max()))
        stats.images += len(batch)
        if progress:
            progress(1)
    for batch in batches():
        for name, value in zip(names, session.run(names, {input_name: batch})):
            s = stats.tensors[name]
            top = s.absmax if s.absmax > 0 else 1.0
            hist, _ = np.histogram(np.abs(value), bins=BINS, range=(0.0, top))
            s.hist = hist if s.hist is None else s.hist + hist
            s.samples += value.size
        if progress:
            progress(1)
    return stats


def percentile_threshold(hist: np.ndarray, top: float, percentile: float) -> float:
    cumulative = np.cumsum(hist) / max(hist.sum(), 1)
    index = int(np.searchsorted(cumulative, percentile / 100.0))
    return float(min(index + 1, len(hist)) * top / len(hist))


def _smooth(distribution: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    zeros = distribution == 0
    nonzeros = ~zeros
    if not nonzeros.any():
        return None
    taken = eps * zeros.sum() / nonzeros.sum()
    if taken >= distribution[nonzeros].min():
        return None
    return distribution + eps * zeros - taken * nonzeros


def entropy_threshold(hist: np.ndarray, top: float, levels: int = 128) -> float:
    """The clipping threshold minimising KL(P || Q) over candidate bins (TensorRT's calibrator)."""
    hist = hist.astype(np.float64)
    if hist.sum() == 0:
        return top
    best_kl, best_i = np.inf, len(hist)
    for i in range(levels, len(hist) + 1, ENTROPY_STRIDE):
        reference = hist[:i].copy()
        reference[-1] += hist[i:].sum()
        starts = (np.arange(levels) * i) // levels
        sliced = hist[:i]
        present = (sliced > 0).astype(np.float64)
        totals = np.add.reduceat(sliced, starts)
        counts = np.add.reduceat(present, starts)
        per_bin = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)
        lengths = np.diff(np.append(starts, i))
        candidate = np.repeat(per_bin, lengths) * present
        p = _smooth(reference / reference.sum())
        q = _smooth(candidate / candidate.sum()) if candidate.sum() > 0 else None
        if p is None or q is None:
            continue
        kl = float(np.sum(p * np.log(p / q)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(best_i * top / len(hist))


def mse_threshold(hist: np.ndarray, top: float, minimum: float, maximum: float, symmetric: bool) -> float:
    """The threshold t on |x| minimising sum over values of their quantization error: (|x| - t)^2
    above t, step^2 / 12 below, with 256 levels on the range the quantizer will use for t."""
    hist = hist.astype(np.float64)
    if hist.sum() == 0:
        return top
    width = top / len(hist)
    centres = (np.arange(len(hist)) + 0.5) * width
    candidates = np.arange(1, len(hist) + 1)
    thresholds = candidates * width
    below = np.cumsum(hist)
    # sum over bins above each candidate of count * (centre - t)^2, expanded so it is one pass
    count_above = hist.sum() - below
    first = np.cumsum((hist * centres)[::-1])[::-1]
    second = np.cumsum((hist * centres**2)[::-1])[::-1]
    first_above = np.append(first[1:], 0.0)
    second_above = np.append(second[1:], 0.0)
    clipped = second_above - 2 * thresholds * first_above + thresholds**2 * count_above
    if symmetric:
        spans = 2 * thresholds
    else:
        spans = np.minimum(maximum, thresholds) - np.maximum(minimum, -thresholds)
    rounded = below * (spans / 255) ** 2 / 12
    return float(thresholds[int(np.argmin(clipped + rounded))])


def ranges(
    stats: CalibrationStats, method: str, symmetric: bool, percentile: float = 99.999
) -> dict[str, tuple[float, float]]:
    """(lowest, highest) per tensor for the quantizer."""
    if method not in METHODS:
        raise ConfigError(f"unknown calibration {method!r}; use one of {', '.join(METHODS)}")
    out = {}
    for name, s in stats.tensors.items():
        if not np.isfinite(s.minimum):
            continue
        if method == "minmax":
            low, high = s.minimum, s.maximum
        else:
            top = s.absmax if s.absmax > 0 else 1.0
            if method == "percentile":
                threshold = percentile_threshold(s.hist, top, percentile)
            elif method == "mse":
                threshold = mse_threshold(s.hist, top, s.minimum, s.maximum, symmetric)
            else:
                levels = 256 if (s.minimum >= 0 and not symmetric) else 128
                threshold = entropy_threshold(s.hist, top, levels)
            low, high = max(s.minimum, -threshold), min(s.maximum, threshold)
        if symmetric:
            bound = max(abs(low), abs(high))
            low, high = -bound, bound
        out[name] = (float(low), float(high))
    return out
