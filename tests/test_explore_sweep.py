"""Sweeps end to end on the tiny synthetic street: rows, resume after kill -9, Ray, report."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.errors import ConfigError
from edgevpr.explore.store import Store
from edgevpr.explore.sweep_file import load_sweep, parse_sweep

TIMING_COLUMNS = {
    "created_at",
    "extraction_ms",
    "matching_ms",
    "total_ms",
    "cost_json",
    "environment_json",
    "git_revision",
    "threads",
}


def _sweep_file(tmp_path, street, grid=None):
    spec = {
        "name": "tiny",
        "base": {
            "model": {"backbone": "squeezenet"},
            "data": {"dataset": str(street), "resize": 72},
            "eval": {"latency_runs": 20, "threads": 1},
        },
        "quantize": {"calib": str(street / "database"), "calib_count": 8},
        "grid": grid or {"aggregator": ["gem", "mac"], "precision": ["fp32", "int8"]},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_sweep_file_grid_and_errors(tmp_path, tiny_street):
    sweep = load_sweep(_sweep_file(tmp_path, tiny_street))
    assert [c.label for c in sweep.cells] == [
        "aggregator=gem precision=fp32",
        "aggregator=gem precision=int8",
        "aggregator=mac precision=fp32",
        "aggregator=mac precision=int8",
    ]
    assert len({c.key() for c in sweep.cells}) == 4
    assert sweep.cells[1].overrides["model"] == {"backbone": "squeezenet", "aggregator": "gem"}
    with pytest.raises(ConfigError, match="unknown cell key 'colour'"):
        parse_sweep({"grid": {"colour": ["red"]}}, "s.yaml")
    with pytest.raises(ConfigError, match="precision 'int2'"):
        parse_sweep({"grid": {"precision": ["int2"]}}, "s.yaml")
    with pytest.raises(ConfigError, match="no cells"):
        parse_sweep({"name": "empty"}, "s.yaml")


def test_sweep_stores_rows_and_skips_finished_cells(tmp_path, tiny_street):
    sweep_file, store_path = _sweep_file(tmp_path, tiny_street), tmp_path / "runs.db"
    result = _cli("sweep", sweep_file, "--store", store_path)
    assert result.exit_code == 0, result.output
    store = Store(store_path)
    rows = store.rows()
    assert len(rows) == 4 and {r["precision"] for r in rows} == {"fp32", "int8"}
    assert {r["aggregator"] for r in rows} == {"gem", "mac"}
    int8 = next(r for r in rows if r["precision"] == "int8")
    assert (
        int8["runtime"] == "onnxruntime"
        and int8["model_bytes"] < next(r for r in rows if r["precision"] == "fp32")["model_bytes"] / 3
    )
    assert json.loads(rows[0]["config_json"])["data"]["dataset"] == str(tiny_street)
    assert json.loads(rows[0]["environment_json"])["cpu"]
    family = json.loads(int8["environment_json"])["int8_kernels"]
    assert family and int8["protocol_name"].endswith(f"@{family}")  # the kernels the int8 cell ran on
    again = _cli("sweep", sweep_file, "--store", store_path)
    assert again.exit_code == 0 and "0 cells run, 4 already stored" in again.output
    assert store.rows() == rows

    report = tmp_path / "report.html"
    assert _cli("report", "--store", store_path, "--out", report).exit_code == 0
    page = report.read_text()
    assert "edgevpr-data" in page and "<link" not in page and 'src="' not in page  # self-contained
    assert f"int8 kernels {family}" in page
    answer = _cli("recommend", "--store", store_path, "--memory", 5e6, "--latency-ms", 1000, "--map-size", 1000)
    assert answer.exit_code == 0 and "use: squeezenet" in answer.output
    csv_out = tmp_path / "runs.csv"
    assert _cli("export", "--store", store_path, "--out", csv_out).exit_code == 0
    assert len(csv_out.read_text().splitlines()) == 5
    store.close()


@pytest.mark.slow
def test_kill_9_mid_sweep_loses_nothing_finished(tmp_path, tiny_street):
    sweep_file = _sweep_file(tmp_path, tiny_street, grid={"aggregator": ["gem", "mac", "spoc"], "dim": [None, 32]})
    store_path = tmp_path / "runs.db"
    command = [sys.executable, "-m", "edgevpr.cli", "sweep", str(sweep_file), "--store", str(store_path)]
    victim = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"TQDM_DISABLE": "1"}
    )
    deadline = time.time() + 240
    finished = []
    while time.time() < deadline and victim.poll() is None:
        if store_path.exists():
            try:
                finished = [r[0] for r in sqlite3.connect(store_path).execute("SELECT key, created_at FROM runs")]
            except sqlite3.OperationalError:
                finished = []
            if len(finished) >= 2:
                break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = {r["key"]: r for r in Store(store_path).rows()}
    assert 2 <= len(before) < 6
    rerun = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"TQDM_DISABLE": "1"})
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(before)} already in" in rerun.stderr
    store = Store(store_path)
    after = {r["key"]: r for r in store.rows()}
    assert len(after) == 6 and store.integrity() == "ok"
    assert all(after[key] == row for key, row in before.items())  # finished cells were not recomputed


@pytest.mark.slow
def test_local_ray_gives_the_same_rows(tmp_path, tiny_street):
    pytest.importorskip("ray")
    sweep_file = _sweep_file(tmp_path, tiny_street, grid={"aggregator": ["mac"], "dim": [None, 32]})  # PCA too
    local, remote = tmp_path / "local.db", tmp_path / "ray.db"
    assert _cli("sweep", sweep_file, "--store", local).exit_code == 0
    result = _cli("sweep", sweep_file, "--store", remote, "--ray", "local")
    assert result.exit_code == 0, result.output

    def comparable(path):
        return {r["key"]: {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in Store(path).rows()}

    assert comparable(local) == comparable(remote) and len(comparable(local)) == 2


def test_process_pool_gives_the_same_rows_as_one_process(tmp_path, tiny_street):
    sweep_file = _sweep_file(tmp_path, tiny_street, grid={"aggregator": ["gem", "mac"]})
    one, pool = tmp_path / "one.db", tmp_path / "pool.db"
    assert _cli("sweep", sweep_file, "--store", one).exit_code == 0
    result = _cli("sweep", sweep_file, "--store", pool, "--jobs", 2)
    assert result.exit_code == 0, result.output

    def comparable(path):
        return {r["key"]: {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in Store(path).rows()}

    assert comparable(one) == comparable(pool) and len(comparable(one)) == 2


def test_a_failing_cell_is_reported_not_stored_and_others_go_on(tmp_path, tiny_street):
    sweep_file = _sweep_file(tmp_path, tiny_street, grid={"weights": [None, str(tmp_path / "missing.pth")]})
    store_path = tmp_path / "runs.db"
    result = _cli("sweep", sweep_file, "--store", store_path)
    assert result.exit_code != 0 and "1 cells failed" in result.output and "missing.pth" in result.output
    assert len(Store(store_path).rows()) == 1


@pytest.mark.slow
def test_recommend_writes_a_recipe_that_rebuilds_the_stored_model(tmp_path, tiny_street):
    sweep_file, store_path = (
        _sweep_file(tmp_path, tiny_street, {"aggregator": ["gem"], "precision": ["int8"]}),
        tmp_path / "s.db",
    )
    assert _cli("sweep", sweep_file, "--store", store_path).exit_code == 0
    stored = Store(store_path).rows()[0]
    recipe = tmp_path / "best.yaml"
    chosen = _cli(
        "recommend",
        "--store",
        store_path,
        "--memory",
        1e9,
        "--latency-ms",
        1e5,
        "--map-size",
        100,
        "--write-config",
        recipe,
    )
    assert chosen.exit_code == 0, chosen.output
    assert recipe.read_text().startswith("# edgevpr recommend: squeezenet+gem")
    model = tmp_path / "m.onnx"
    assert _cli("quantize", "--config", recipe, "--out", model).exit_code == 0
    out = tmp_path / "r.json"
    rerun = _cli("eval", "--onnx", model, "--dataset", tiny_street, "--latency-runs", 20, "--out", out)
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(out.read_text())["recall"]["1"] == stored["recall_1"]
    nothing = _cli(
        "recommend",
        "--store",
        store_path,
        "--memory",
        1,
        "--latency-ms",
        1,
        "--map-size",
        100,
        "--write-config",
        tmp_path / "none.yaml",
    )
    assert nothing.exit_code != 0 and "no recipe written" in nothing.output and not (tmp_path / "none.yaml").exists()


def test_a_cell_raising_anything_is_recorded_and_the_next_cells_run(tmp_path, tiny_street):
    sweep_file = _sweep_file(tmp_path, tiny_street, grid={"resize": [4, 72]})  # 4 px: the backbone raises
    store_path = tmp_path / "runs.db"
    first = _cli("sweep", sweep_file, "--store", store_path)
    assert first.exit_code != 0 and "1 cells failed" in first.output and "Traceback" not in first.output
    store = Store(store_path)
    assert len(store.rows()) == 1
    (failure,) = store.failures()
    assert failure["label"] == "resize=4" and failure["attempts"] == 1 and "\n" not in failure["error"]
    again = _cli("sweep", sweep_file, "--store", store_path)
    assert "retrying 1 that failed before" in again.output and again.exit_code != 0
    assert Store(store_path).failures()[0]["attempts"] == 2 and len(Store(store_path).rows()) == 1


@pytest.mark.slow
def test_two_sweeps_on_one_store_compute_each_cell_once(tmp_path, tiny_street):
    sweep_file = _sweep_file(tmp_path, tiny_street, grid={"aggregator": ["gem", "mac", "spoc"], "dim": [None, 32]})
    store_path = tmp_path / "runs.db"
    command = [sys.executable, "-m", "edgevpr.cli", "sweep", str(sweep_file), "--store", str(store_path)]
    sweeps = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=600)[0] for process in sweeps]
    assert all(process.returncode == 0 for process in sweeps), outputs
    computed = [
        [line.split("] ", 1)[1].split(":")[0] for line in out.splitlines() if ": R@1 " in line] for out in outputs
    ]
    assert len(computed[0]) + len(computed[1]) == 6 and not set(computed[0]) & set(computed[1])
    assert len(Store(store_path).rows()) == 6


@pytest.mark.slow
def test_killing_a_pool_sweep_takes_its_workers_with_it(tmp_path, tiny_street):
    sweep_file = _sweep_file(tmp_path, tiny_street, grid={"aggregator": ["gem", "mac", "spoc"], "dim": [None, 32]})
    command = [
        sys.executable,
        "-m",
        "edgevpr.cli",
        "sweep",
        str(sweep_file),
        "--store",
        str(tmp_path / "r.db"),
        "--jobs",
        "2",
    ]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers, deadline = [], time.time() + 120
    while time.time() < deadline and len(workers) < 2:
        children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        workers = [int(pid) for pid in children]
        time.sleep(0.2)
    assert len(workers) >= 2, "the pool never started its workers"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    time.sleep(5)
    alive = [
        pid
        for pid in workers
        if os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]
    ]
    assert alive == []


def test_any_exception_of_a_cell_becomes_one_error_line(monkeypatch):
    from edgevpr.explore import sweep

    def explode(cell):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(sweep, "run_cell", explode)
    assert sweep.run_cell_safely({}) == {"error": "ZeroDivisionError: division by zero"}


@pytest.mark.slow
def test_a_fresh_sweep_process_runs_a_mixed_cell(tmp_path, tiny_street):
    """Mixed precision comes from the research plug-in, which a registry loads when asked for
    it: `edgevpr sweep` in a new process (nothing imported beforehand) runs a mixed cell."""
    from tests.conftest import write_mixed_config

    mixed = write_mixed_config(tmp_path / "mixed.json")
    path = _sweep_file(tmp_path, tiny_street, {"aggregator": ["gem"], "precision": ["mixed"]})
    spec = yaml.safe_load(path.read_text())
    spec["quantize"]["mixed_config"] = mixed
    path.write_text(yaml.safe_dump(spec))
    store = tmp_path / "runs.db"
    result = subprocess.run(
        [sys.executable, "-m", "edgevpr.cli", "sweep", str(path), "--store", str(store)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-800:]
    rows = Store(store).rows()
    assert [row["precision"] for row in rows] == ["mixed"]
    assert json.loads(rows[0]["protocol_json"])["precision"].startswith("mixed")
