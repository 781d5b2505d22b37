"""Maps built on a Ray cluster (``map build --ray ADDRESS``): a local cluster (a head with no
CPU and two worker nodes of 1 CPU each, on this machine) describes the images in shards; the
map equals the single-process map (descriptors within float noise, every held-out query's
answer the same) on the street and on Gardens Point, a worker that dies mid-build costs its
shard (retried), a driver killed mid-add leaves the previous map whole and current, and
``map add --ray`` appends as ``map add`` does."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.maps import Map
from tests.conftest import GARDENS_POINT, needs, utm_name, write_image

ray = pytest.importorskip("ray", reason="Ray (the ray extra) runs the cluster")

MODEL = ["--backbone", "squeezenet", "--aggregator", "gem", "--size", "72x96"]


@pytest.fixture(scope="module")
def cluster():
    """The cluster's address: a head node without CPUs and two worker nodes of 1 CPU each."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        nodes.add_node(num_cpus=1)
    ray.init(address=nodes.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield nodes.address
    ray.shutdown()
    nodes.shutdown()


def _many_images(folder: Path, count: int = 400) -> Path:
    """Enough images that the add's shards are still running when the driver is killed."""
    folder.mkdir()
    for i in range(count):
        write_image(folder / utm_name(600000 + 5 * i, 4100000), seed=1000 + i)
    return folder


def _answers(map_dir: Path, queries: Path) -> list:
    result = CliRunner().invoke(main, ["localize", str(map_dir), "--images", str(queries), "--top-k", "5"])
    assert result.exit_code == 0, result.output
    return [[m["name"] for m in json.loads(line)["matches"]] for line in result.output.splitlines()]


@pytest.mark.slow
def test_a_map_built_on_ray_is_the_single_process_map(cluster, tiny_street, tmp_path):
    runner = CliRunner()
    argv = ["map", "build", *MODEL, "--images", str(tiny_street / "database"), "--shards", "2"]
    alone = runner.invoke(main, [*argv, "--out", str(tmp_path / "alone")])
    on_ray = runner.invoke(main, [*argv, "--out", str(tmp_path / "ray"), "--ray", cluster])
    assert alone.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    assert "shards" in on_ray.output and "ray: 2/2 index shards filled" in on_ray.output
    a, b = Map.load(tmp_path / "alone"), Map.load(tmp_path / "ray")
    assert [s["count"] for s in b.info()["index"]["shards"]] == [s["count"] for s in a.info()["index"]["shards"]]
    assert a.names == b.names and np.allclose(np.asarray(a.descriptors), np.asarray(b.descriptors), atol=1e-5)
    assert _answers(tmp_path / "alone", tiny_street / "queries") == _answers(tmp_path / "ray", tiny_street / "queries")


def test_index_shards_filled_on_the_workers_equal_the_ones_filled_here(cluster):
    """IVF (trained once, by the driver) and binary shards filled by Ray tasks answer every
    query exactly as shards filled in this process (the head has no CPU, so every task ran on a
    worker node)."""
    from edgevpr.maps.ray_index import ray_filler
    from edgevpr.search.binary_codes import fit_codec
    from edgevpr.search.index import build_index

    rng = np.random.default_rng(3)
    database = rng.normal(size=(600, 32)).astype(np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    queries = database[::20] + 0.05 * rng.normal(size=(30, 32)).astype(np.float32)
    codec = fit_codec(rng.normal(size=(300, 32)).astype(np.float32), 32, "itq")
    lines = []
    for spec, c in (("IVF8,Flat", None), ("PQ8", None), ("BFlat", codec)):
        here = build_index(database, spec, codec=c, shards=3).search(queries, 10)
        there = build_index(database, spec, codec=c, shards=3, fill=ray_filler(cluster, lines.append))
        assert [p.ntotal for p in there.parts] == [200, 200, 200]
        scores, ids = there.search(queries, 10)
        assert np.array_equal(ids, here[1]) and np.allclose(scores, here[0])
    assert lines[-1] == "ray: 3/3 index shards filled"


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


@pytest.mark.slow
@needs(GARDENS_POINT)
def test_a_gardens_point_map_on_ray_answers_night_queries_as_one_process(cluster, tmp_path):
    """Gardens Point day_right (its first 100 images) on the two workers; night_right's first 40 frames,
    never in the map, localized against both maps."""
    queries, database = tmp_path / "night", tmp_path / "day_right"
    for folder, source, count in ((queries, "night_right", 40), (database, "day_right", 100)):
        folder.mkdir()
        for path in sorted((GARDENS_POINT / source).iterdir())[:count]:
            (folder / path.name).symlink_to(path)
    argv = ["map", "build", "--backbone", "squeezenet", "--aggregator", "gem", "--size", "120x160"]
    argv += ["--images", str(database)]
    alone = CliRunner().invoke(main, [*argv, "--out", str(tmp_path / "alone")])
    on_ray = CliRunner().invoke(main, [*argv, "--out", str(tmp_path / "ray"), "--ray", cluster])
    assert alone.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    a, b = Map.load(tmp_path / "alone"), Map.load(tmp_path / "ray")
    assert len(a.names) == 100 and a.names == b.names
    assert np.allclose(np.asarray(a.descriptors), np.asarray(b.descriptors), atol=1e-5)
    assert _answers(tmp_path / "alone", queries) == _answers(tmp_path / "ray", queries)


@pytest.mark.slow
def test_a_driver_killed_mid_add_leaves_the_previous_map_usable(cluster, tiny_street, tmp_path):
    """``map add --ray`` in its own process, killed (SIGKILL) once its shards are running: the
    map loads as the version before, answers as before, and keeps no stray version."""
    built = CliRunner().invoke(
        main, ["map", "build", *MODEL, "--images", str(tiny_street / "database"), "--out", str(tmp_path / "m")]
    )
    assert built.exit_code == 0, built.output
    before = _answers(tmp_path / "m", tiny_street / "queries")
    manifest = (tmp_path / "m" / "map.json").read_text()
    argv = [
        sys.executable,
        "-m",
        "edgevpr.cli",
        "map",
        "add",
        str(tmp_path / "m"),
        "--images",
        str(tiny_street / "queries"),
    ]
    driver = subprocess.Popen(
        [*argv[:-1], str(_many_images(tmp_path / "more")), "--ray", cluster], stderr=subprocess.PIPE, text=True
    )
    seen = ""
    deadline = time.time() + 120
    while "shard" not in seen and time.time() < deadline and driver.poll() is None:
        seen += driver.stderr.readline()
    assert "shard" in seen, seen
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert (tmp_path / "m" / "map.json").read_text() == manifest
    assert len(Map.load(tmp_path / "m").names) == 30
    assert _answers(tmp_path / "m", tiny_street / "queries") == before
