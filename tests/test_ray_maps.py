"""Maps built on a Ray cluster (``map build --ray``): a local cluster of this machine's CPUs
describes the street's images in shards; the map equals the single-process map (descriptors
within float noise, every query's answer the same), a worker that dies mid-build costs its
shard (retried), and ``map add --ray`` appends as ``map add`` does."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.maps import Map

ray = pytest.importorskip("ray", reason="Ray (the ray extra) runs the cluster")

MODEL = ["--backbone", "squeezenet", "--aggregator", "gem", "--size", "72x96"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _answers(map_dir: Path, queries: Path) -> list:
    result = CliRunner().invoke(main, ["localize", str(map_dir), "--images", str(queries), "--top-k", "5"])
    assert result.exit_code == 0, result.output
    return [[m["name"] for m in json.loads(line)["matches"]] for line in result.output.splitlines()]


@pytest.mark.slow
def test_a_map_built_on_ray_is_the_single_process_map(cluster, tiny_street, tmp_path):
    runner = CliRunner()
    argv = ["map", "build", *MODEL, "--images", str(tiny_street / "database")]
    alone = runner.invoke(main, [*argv, "--out", str(tmp_path / "alone")])
    on_ray = runner.invoke(main, [*argv, "--out", str(tmp_path / "ray"), "--ray"])
    assert alone.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    assert "shards" in on_ray.output
    a, b = Map.load(tmp_path / "alone"), Map.load(tmp_path / "ray")
    assert a.names == b.names and np.allclose(np.asarray(a.descriptors), np.asarray(b.descriptors), atol=1e-5)
    assert _answers(tmp_path / "alone", tiny_street / "queries") == _answers(tmp_path / "ray", tiny_street / "queries")


@pytest.mark.slow
def test_a_worker_lost_mid_build_costs_its_shard_not_the_map(cluster, tiny_street, tmp_path):
    """The first shard's worker process dies (os._exit) the first time it starts; Ray retries
    the shard on a new worker and the map comes out whole, equal to the single-process one."""
    from edgevpr.maps.ray_extract import extract_on_ray

    marker = tmp_path / "died-once"

    def die_once():
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)

    runner = CliRunner()
    built = runner.invoke(
        main, ["map", "build", *MODEL, "--images", str(tiny_street / "database"), "--out", str(tmp_path / "m")]
    )
    assert built.exit_code == 0, built.output
    loaded = Map.load(tmp_path / "m")
    paths = sorted((tiny_street / "database").iterdir())
    model_part = tmp_path / "m" / loaded.manifest["model"]["file"]
    descriptors, _ = extract_on_ray(model_part, "checkpoint", paths, 16, 10**8, hook=die_once)
    assert marker.exists() and np.allclose(descriptors, np.asarray(loaded.descriptors), atol=1e-5)
