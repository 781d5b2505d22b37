"""The cost block, measured rather than estimated.

- params, flops, model_bytes: ``models.size``.
- extraction_ms: per image at batch 1, median (and p90) over timed runs after warm-up.
- matching_ms: per query, median over single-query searches of the index (``search.timing``).
- database_bytes: N x D x bytes per element of the stored descriptors.
- total_ms = extraction_ms + matching_ms (Grainge et al. 2024's tau_e + tau_r).
- timing: the machine's load while extraction was timed, and ``contended`` when other work
  kept it busy or the runs spread widely (``edgevpr.timing``).
"""

from __future__ import annotations

from edgevpr.models.describer import time_torch_extraction, torch_runner

__all__ = ["cost_block", "time_torch_extraction", "torch_runner"]  # the timers live with the deployed model


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
        # how busy the machine was while extraction was timed (edgevpr.timing.MachineLoad)
        "timing": {k: extraction.get(k) for k in ("spread", "other_cores_busy", "load_average", "cores", "contended")},
    }
