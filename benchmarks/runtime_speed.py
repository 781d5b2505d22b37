"""Extraction speed of one model in several runtimes, measured the same way for every benchmark:
batch 1, zeros, the same thread count for all, ``repeats`` runs of alternating rounds
(``time_interleaved``); each runtime's time and each ratio are the median over the runs.

Ratios are given against ONNX Runtime fp32 of the same model (what a user would otherwise
deploy, and what published int8 tables compare with) and against PyTorch eager fp32."""

from __future__ import annotations

import numpy as np
import torch

from edgevpr.evaluate.cost import torch_runner
from edgevpr.runtime.cpu import cpu_kernels
from edgevpr.runtime.onnx_model import OnnxModel
from edgevpr.timing import time_interleaved


def compare_runtimes(
    model: torch.nn.Module, files: dict[str, str], size: tuple[int, int], threads: int, repeats: int = 5
) -> dict:
    """``files`` maps a runtime name to an ONNX file; "ort_fp32" among them is the ONNX baseline.
    Returns each runtime's median ms and its speedup against "pytorch_fp32" and "ort_fp32"."""
    torch.set_num_threads(threads)
    images = np.zeros((1, 3, *size), dtype=np.float32)
    runners = {"pytorch_fp32": torch_runner(model.eval(), (1, 3, *size))}
    for name, path in files.items():
        session = OnnxModel(path, threads=threads)
        runners[name] = lambda session=session: session(images)
    rounds = [time_interleaved(runners, rounds=2) for _ in range(repeats)]
    ms = {name: [r[name]["median_ms"] for r in rounds] for name in runners}
    result = {
        "size": list(size),
        "threads": threads,
        "repeats": repeats,
        "int8_kernels": cpu_kernels().family,
        "cpu_flags": list(cpu_kernels().flags),
        "runtimes": {},
    }
    for name, values in ms.items():
        entry = {"median_ms": float(np.median(values)), "each_ms": values}
        for base in ("pytorch_fp32", "ort_fp32"):
            if base in ms and base != name:
                entry[f"speedup_vs_{base}"] = float(np.median([b / v for b, v in zip(ms[base], values)]))
        result["runtimes"][name] = entry
    return result


def format_speed(speed: dict) -> str:
    lines = [
        f"{speed['size'][0]}x{speed['size'][1]}, {speed['threads']} threads, {speed['int8_kernels']} "
        f"({', '.join(speed['cpu_flags'])}); median of {speed['repeats']} interleaved runs:"
    ]
    for name, entry in speed["runtimes"].items():
        ratios = ", ".join(
            f"{entry[k]:.2f}x vs {k[len('speedup_vs_') :]}" for k in entry if k.startswith("speedup_vs_")
        )
        lines.append(f"  {name:<14} {entry['median_ms']:8.1f} ms" + (f"  ({ratios})" if ratios else ""))
    return "\n".join(lines)
