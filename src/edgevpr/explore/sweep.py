"""Running a sweep: pending cells (those whose key is not in the store) run locally in
sequence, in a small process pool, or as Ray tasks; the calling process alone writes the
store, one transaction per finished cell, so a kill loses only cells in flight and a re-run
skips every finished one.

- A cell that fails, whatever it raises, is recorded in the store's ``failures`` table with
  its error line, and the sweep goes on; a re-run retries it and says so.
- Each cell is leased in the store before it runs, so two sweeps on one store compute every
  cell once; a lease whose process died is taken over.
- Pool workers die with the sweep (Linux: the parent-death signal), and Ctrl-C stops the
  workers at once, keeping every finished row."""

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
    """``run_cell``, with any error returned as one line, not raised: a user error (bad file,
    unsupported option) as its message, anything else as its type and first line."""
    try:
        return run_cell(cell)
    except EdgeVPRError as error:
        return {"error": str(error)}
    except Exception as error:  # a cell must never end the sweep
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return {"error": f"{error.__class__.__name__}: {first}"[:500]}


def _die_with_parent() -> None:
    """Pool initializer: on Linux, SIGKILL this worker when the sweep process dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_die_with_parent)
    try:
        futures = {pool.submit(run_cell_safely, cell.as_dict()): cell for cell in cells}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as error:  # the worker itself died (out of memory, a signal)
                result = {"error": f"worker died: {error.__class__.__name__}: {error}"}
            yield futures[future], result
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()  # Ctrl-C or an error: stop computing now; finished rows are already stored
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


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
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    finished, owner = store.keys(), store.owner()
    keys = {cell.key() for cell in sweep.cells}
    pending = [cell for cell in sweep.cells if cell.key() not in finished]
    retried = [f for f in store.failures() if f["key"] in keys and f["key"] not in finished]
    claimed = [cell for cell in pending if store.claim(cell.key(), owner)]
    elsewhere = len(pending) - len(claimed)
    log(
        f"sweep {sweep.name}: {len(sweep.cells)} cells, {len(sweep.cells) - len(pending)} already in {store.path}, "
        f"{len(claimed)} to run"
        + (f" on Ray ({ray})" if ray else f" with {jobs} process(es)" if jobs > 1 else "")
        + (f", {elsewhere} being computed by another sweep" if elsewhere else "")
        + (f"; retrying {len(retried)} that failed before" if retried else "")
    )
    if ray:
        results = _ray_results(claimed, ray, cpus_per_cell)
    elif jobs > 1:
        results = _pool_results(claimed, min(jobs, os.cpu_count() or 1))
    else:
        results = _local_results(claimed)
    done, failed, left = 0, [], {cell.key() for cell in claimed}
    try:
        for cell, result in results:
            left.discard(cell.key())
            if "error" in result:  # recorded, not stored as a run, so a re-run tries it again
                failed.append(f"{cell.label}: {result['error']}")
                store.record_failure(cell.key(), sweep.name, cell.label, result["error"])
                store.release(cell.key(), owner)
                log(f"[{done + len(failed)}/{len(claimed)}] {cell.label}: FAILED: {result['error']}")
                continue
            store.add(row_from_result(cell.key(), sweep.name, cell.as_dict(), result, _now()))
            done += 1
            log(
                f"[{done + len(failed)}/{len(claimed)}] {cell.label}: R@1 {result['recall']['1']:.1f}, "
                f"{result['cost']['model_bytes'] / 1e6:.2f} MB, {result['cost']['extraction_ms']:.1f} ms"
            )
            warning = contention_warning(result["cost"].get("timing", {}), cell.label)
            if warning:
                log(warning)
    finally:
        for key in left:  # interrupted: the cells in flight go back to the pool of pending cells
            store.release(key, owner)
    return {
        "cells": len(sweep.cells),
        "ran": done,
        "skipped": len(sweep.cells) - len(pending),
        "failed": failed,
        "elsewhere": elsewhere,
        "retried": len(retried),
    }
