"""Wall-clock timing of a callable: warm-up, repeated runs, median and p90 in milliseconds,
and whether the machine was busy with other work while it ran.

Every latency edgevpr reports (extraction, matching, re-ranking, localization) is measured
with these, so they share one definition of "median of N runs after warm-up".

A timing is *contended* when other processes kept more than ``BUSY_CORES`` cores busy on
average while it ran (Linux: all CPUs' busy time from /proc/stat minus this process's own), or
when its p90 is more than ``SPREAD`` times its median. On a shared machine such numbers can be
several times the quiet ones (1.6-2.0 s against 0.18-0.20 s per image was seen with two threads
beside another job); results carry the flag, the CLI warns, and recommend and the report mark
them."""

from __future__ import annotations

import os
import time

import numpy as np

BUSY_CORES = 0.5
SPREAD = 2.0


def _busy_jiffies() -> int | None:
    """Busy time of all CPUs (user, nice, system, irq, softirq, steal), in clock ticks."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]
    return values[0] + values[1] + values[2] + values[5] + values[6] + values[7]


class MachineLoad:
    """``with MachineLoad() as load: ...``; then ``load.report()`` says how busy the rest of
    the machine was meanwhile."""

    def __enter__(self) -> MachineLoad:
        self.wall, self.own, self.busy = time.monotonic(), sum(os.times()[:2]), _busy_jiffies()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.monotonic() - self.wall
        self.own = sum(os.times()[:2]) - self.own
        after = _busy_jiffies()
        self.busy = None if self.busy is None or after is None else (after - self.busy) / os.sysconf("SC_CLK_TCK")

    def other_cores(self) -> float | None:
        """Cores that other processes kept busy on average, or None where it cannot be read."""
        if self.busy is None or self.wall <= 0:
            return None
        return max(0.0, (self.busy - self.own) / self.wall)

    def others_busy(self) -> bool:
        """Whether other processes kept more than ``BUSY_CORES`` cores busy meanwhile."""
        others = self.other_cores()
        return others is not None and others > BUSY_CORES

    def report(self, summary: dict) -> dict:
        others = self.other_cores()
        spread = summary["p90_ms"] / summary["median_ms"] if summary["median_ms"] > 0 else 1.0
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        contended = self.others_busy() or spread > SPREAD
        return {
            "spread": round(spread, 3),
            "other_cores_busy": None if others is None else round(others, 3),
            "load_average": None if load is None else round(load, 2),
            "cores": os.cpu_count(),
            "contended": bool(contended),
        }


def summary_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


def timed(run_once, runs: int, after_each=None) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        run_once()
        seconds.append(time.perf_counter() - start)
        if after_each is not None:
            after_each()
    return seconds


def time_extraction(run_once, runs: int = 30, warmup: int = 3, label: str = "timing extraction") -> dict:
    """Median and p90 wall time of ``run_once()`` in ms, with the machine's load meanwhile
    (``MachineLoad``): ``spread``, ``other_cores_busy``, ``load_average``, ``contended``.
    Progress (``label``) shows while it runs: on a busy machine this can take minutes."""
    from edgevpr.progress import Progress

    with Progress(warmup + runs, f"{label} ({warmup} warm-up + {runs} runs at batch 1)", "run") as bar:
        for _ in range(warmup):
            run_once()
            bar.update()
        with MachineLoad() as load:
            summary = summary_ms(timed(run_once, runs, bar.update))
    return summary | load.report(summary)


def contention_warning(timing: dict, what: str) -> str | None:
    """One line when ``timing`` (from ``time_extraction``) was taken on a busy machine."""
    if not timing.get("contended"):
        return None
    others = timing.get("other_cores_busy")
    busy = f"other processes kept {others:.1f} of {timing.get('cores')} cores busy" if others is not None else "busy"
    return (
        f"warning: {what} was timed on a busy machine ({busy}, p90/median {timing['spread']:.1f}); "
        f"the latency is likely inflated: measure again on a quiet machine or with --threads 1"
    )


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
