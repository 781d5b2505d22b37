"""The cost block, measured rather than estimated.

- params: trainable and frozen parameters of the model.
- flops: floating-point operations of one forward pass at the evaluated input size, from
  ``torch.utils.flop_counter`` (convolutions, linear layers and matrix products; one
  multiply-add counts as 2).
- model_bytes: size of the serialized weights (``torch.save`` of the state dict).
- extraction_ms: per image at batch 1, median (and p90) over timed runs after warm-up.
- matching_ms: per query, median over single-query searches of the index.
- database_bytes: N x D x bytes per element of the stored descriptors.
- total_ms = extraction_ms + matching_ms (Grainge et al. 2024's tau_e + tau_r).
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from edgevpr.search.index import search


def count_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch counts fused attention only in its GPU kernels; on CPU, sdpa runs this op uncounted
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


def count_flops(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """torch's FLOP count (2 per multiply-add), fused CPU attention included."""
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)
    with torch.inference_mode(), counter:
        model(torch.zeros(input_shape))
    return int(counter.get_total_flops())


def serialized_bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _summary_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


def _timed(run_once, runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        run_once()
        seconds.append(time.perf_counter() - start)
    return seconds


def time_extraction(run_once, runs: int = 30, warmup: int = 3) -> dict:
    """Median and p90 wall time of ``run_once()`` in ms."""
    for _ in range(warmup):
        run_once()
    return _summary_ms(_timed(run_once, max(runs, 20)))


def time_interleaved(runners: dict, rounds: int = 6, runs: int = 10, warmup: int = 3) -> dict[str, dict]:
    """Median and p90 wall time (ms) of each ``runners[name]()``, timed in alternating rounds so
    that a change of the machine's load during the measurement falls on all of them alike."""
    for run_once in runners.values():
        for _ in range(warmup):
            run_once()
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run_once in runners.items():
            seconds[name] += _timed(run_once, runs)
    return {name: _summary_ms(values) for name, values in seconds.items()}


def torch_runner(model: torch.nn.Module, input_shape: tuple[int, ...]):
    images = torch.zeros(input_shape)

    def run_once():
        with torch.inference_mode():
            model(images)

    return run_once


def time_torch_extraction(model: torch.nn.Module, input_shape: tuple[int, ...], runs: int = 30) -> dict:
    return time_extraction(torch_runner(model, input_shape), runs) | {"threads": torch.get_num_threads()}


def time_matching(index, queries: np.ndarray, k: int, max_queries: int = 200) -> dict:
    """Per-query search time: each query searched alone, as a robot localises one frame at a time."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    count = max(20, min(max_queries, len(queries)))
    order = np.arange(count) % len(queries)
    search(index, queries[:1], k)  # warm-up
    seconds = []
    for q in order:
        start = time.perf_counter()
        search(index, queries[q : q + 1], k)
        seconds.append(time.perf_counter() - start)
    return _summary_ms(seconds)


def database_bytes(num_database: int, dim: int, bytes_per_element: int = 4) -> int:
    return int(num_database) * int(dim) * int(bytes_per_element)


def cost_block(*, params, flops, model_bytes, extraction, matching, database_size) -> dict:
    return {
        "params": int(params),
        "flops": int(flops),
        "model_bytes": int(model_bytes),
        "extraction_ms": extraction["median_ms"],
        "extraction_p90_ms": extraction["p90_ms"],
        "threads": extraction.get("threads"),
        "matching_ms": matching["median_ms"],
        "database_bytes": int(database_size),
        "total_ms": extraction["median_ms"] + matching["median_ms"],
    }
