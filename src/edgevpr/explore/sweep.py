"""Running a sweep: pending cells (those whose key is not in the store) run locally in
sequence, in a small process pool, or as Ray tasks; the calling process alone writes the
store, one transaction per finished cell, so a kill loses only cells in flight and a re-run
skips every finished one."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

from edgevpr.errors import ConfigError, EdgeVPRError
from edgevpr.explore.run_cell import run_cell
from edgevpr.explore.store import Store, row_from_result
from edgevpr.explore.sweep_file import Cell, Sweep
from edgevpr.timing import contention_warning


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def run_cell_safely(cell: dict) -> dict:
    """``run_cell``, with a user error (bad file, unsupported option) returned, not raised."""
    try:
        return run_cell(cell)
    except EdgeVPRError as error:
        return {"error": str(error)}


def _ray_results(cells: list[Cell], address: str, cpus_per_cell: float):
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'edgevpr[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            log_to_driver=False,
            **({"num_cpus": os.cpu_count()} if address == "local" else {}),
        )
    try:
        remote = ray.remote(num_cpus=cpus_per_cell)(run_cell_safely)
        pending = {remote.remote(cell.as_dict()): cell for cell in cells}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done[0])
            yield cell, ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()


def _pool_results(cells: list[Cell], jobs: int):
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_cell_safely, cell.as_dict()): cell for cell in cells}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _local_results(cells: list[Cell]):
    for cell in cells:
        yield cell, run_cell_safely(cell.as_dict())


def run_sweep(
    sweep: Sweep,
    store: Store,
    jobs: int = 1,
    ray: str | None = None,
    cpus_per_cell: float = 1.0,
    log: Callable[[str], None] = print,
) -> dict:
    finished = store.keys()
    pending = [cell for cell in sweep.cells if cell.key() not in finished]
    log(
        f"sweep {sweep.name}: {len(sweep.cells)} cells, {len(sweep.cells) - len(pending)} already in {store.path}, "
        f"{len(pending)} to run" + (f" on Ray ({ray})" if ray else f" with {jobs} process(es)" if jobs > 1 else "")
    )
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if ray:
        results = _ray_results(pending, ray, cpus_per_cell)
    elif jobs > 1:
        results = _pool_results(pending, min(jobs, os.cpu_count() or 1))
    else:
        results = _local_results(pending)
    done, failed = 0, []
    for cell, result in results:
        if "error" in result:  # not stored, so a re-run tries it again
            failed.append(f"{cell.label}: {result['error']}")
            log(f"[{done + len(failed)}/{len(pending)}] {cell.label}: FAILED: {result['error']}")
            continue
        store.add(row_from_result(cell.key(), sweep.name, cell.as_dict(), result, _now()))
        done += 1
        log(
            f"[{done + len(failed)}/{len(pending)}] {cell.label}: R@1 {result['recall']['1']:.1f}, "
            f"{result['cost']['model_bytes'] / 1e6:.2f} MB, {result['cost']['extraction_ms']:.1f} ms"
        )
        warning = contention_warning(result["cost"].get("timing", {}), cell.label)
        if warning:
            log(warning)
    return {"cells": len(sweep.cells), "ran": done, "skipped": len(sweep.cells) - len(pending), "failed": failed}
