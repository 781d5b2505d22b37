"""Where a number was measured: machine, threads and library versions."""

from __future__ import annotations

import os
import platform
import subprocess


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    import faiss
    import numpy
    import torch

    import edgevpr
    from edgevpr.runtime.cpu import cpu_kernels

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cpu_flags": list(cpu_kernels().flags),  # the instruction sets ONNX Runtime's integer kernels use
        "int8_kernels": cpu_kernels().family,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": getattr(faiss, "__version__", "unknown"),
        "numpy": numpy.__version__,
        "edgevpr": edgevpr.__version__,
        "git_revision": _git_revision(),
    }
