"""Wall-clock timing of a callable: warm-up, repeated runs, median and p90 in milliseconds.

Every latency edgevpr reports (extraction, matching, re-ranking, localization) is measured
with these, so they share one definition of "median of N runs after warm-up"."""

from __future__ import annotations

import time

import numpy as np


def summary_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


def timed(run_once, runs: int) -> list[float]:
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
    return summary_ms(timed(run_once, max(runs, 20)))


def time_interleaved(runners: dict, rounds: int = 6, runs: int = 10, warmup: int = 3) -> dict[str, dict]:
    """Median and p90 wall time (ms) of each ``runners[name]()``, timed in alternating rounds so
    that a change of the machine's load during the measurement falls on all of them alike."""
    for run_once in runners.values():
        for _ in range(warmup):
            run_once()
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run_once in runners.items():
            seconds[name] += timed(run_once, runs)
    return {name: summary_ms(values) for name, values in seconds.items()}
