"""Sharded maps (``map build --shards N``): the index in N parts, one file each, searched in
parallel, answering held-out queries exactly as the one-index map does (Flat, IVF, binary);
indexes filled in bounded batches, the same whatever the batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.config import load_config
from edgevpr.errors import ConfigError
from edgevpr.maps import Map, ModelSource
from edgevpr.search import index as index_module
from edgevpr.search.binary_codes import fit_codec
from edgevpr.search.index import build_index

SQUEEZE = {"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (72, 96)}}


def _answers(folder, queries) -> list[dict]:
    loaded = Map.load(folder)
    return [{k: v for k, v in loaded.localize(q, top_k=5).items() if k != "ms"} for q in queries]


@pytest.mark.parametrize(
    "index, extra",
    [("Flat", {}), ("IVF4,Flat", {"params": "nprobe=2"}), ("BFlat", {"descriptor_bits": 1})],
)
def test_a_4_shard_map_answers_as_the_one_index_map(tmp_path, tiny_street, index, extra):
    source = ModelSource(config=load_config(overrides=SQUEEZE))
    if extra.get("descriptor_bits"):
        extra = extra | {"descriptor_fit": str(tiny_street / "queries")}  # other images than the map's
    queries = sorted((tiny_street / "queries").iterdir())  # held out: none is a map image
    Map.build(source, tiny_street / "database", tmp_path / "one", index=index, **extra)
    four = Map.build(source, tiny_street / "database", tmp_path / "four", index=index, shards=4, **extra)
    assert four.index.shards is not None and len(four.index.shards) == 4
    shards = four.info()["index_shards"]
    assert [s["count"] for s in shards] == [7, 8, 7, 8] and all(s["bytes"] > 0 for s in shards)
    assert four.info()["bytes"]["index"] == sum(s["bytes"] for s in shards)
    assert _answers(tmp_path / "one", queries) == _answers(tmp_path / "four", queries)
    grown = Map.load(tmp_path / "four").add(tiny_street / "queries", positions=None)
    assert len(grown.index.shards) == 4 and grown.index.ntotal == len(queries) + 30
    assert grown.index.search(np.asarray(grown.descriptors[-3:]), 1)[1].ravel().tolist() == [37, 38, 39]


def test_map_info_lists_the_shards_and_bad_shard_counts_are_one_line(tmp_path, tiny_street):
    config = tmp_path / "squeeze.yaml"
    config.write_text("model:\n  backbone: squeezenet\n  aggregator: gem\ndata:\n  size: [72, 96]\n")
    build = ["map", "build", "--config", str(config), "--images", str(tiny_street / "database")]
    result = CliRunner().invoke(main, [*build, "--shards", "3", "--out", str(tmp_path / "map")])
    assert result.exit_code == 0, result.output
    assert result.output.count("index shard") == 3
    info = CliRunner().invoke(main, ["map", "info", str(tmp_path / "map"), "--json"])
    assert [s["count"] for s in json.loads(info.output)["index_shards"]] == [10, 10, 10]
    for bad in ("0", "31"):
        refused = CliRunner().invoke(main, [*build, "--shards", bad, "--out", str(tmp_path / f"bad{bad}")])
        assert refused.exit_code == 1 and "--shards must be between 1 and the 30 descriptors" in refused.output


def test_indexes_fill_in_bounded_batches_and_the_answers_do_not_depend_on_them(monkeypatch):
    rng = np.random.default_rng(0)
    database = rng.normal(size=(500, 32)).astype(np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    queries = database[:20] + 0.05 * rng.normal(size=(20, 32)).astype(np.float32)
    codec = fit_codec(rng.normal(size=(300, 32)).astype(np.float32), 32, "itq")
    cases = [("IVF8,Flat", None), ("PQ8", None), ("BFlat", codec), ("HNSW16", None)]
    whole = {spec: build_index(database, spec, codec=c, seed=0).search(queries, 10) for spec, c in cases}
    added = []
    real_add = index_module.fill_shards

    def counting(trained, rows_, *args):
        original = trained.add
        trained.add = lambda batch: added.append(len(batch)) or original(batch)
        return real_add(trained, rows_, *args)

    monkeypatch.setattr(index_module, "ADD_BATCH", 64)
    monkeypatch.setattr(index_module, "fill_shards", counting)
    for spec, c in cases:
        added.clear()
        scores, ids = build_index(database, spec, codec=c, seed=0).search(queries, 10)
        assert max(added) <= 64 and sum(added) == len(database)
        if spec.startswith("HNSW"):  # the graph depends on the insertion batches: same recall, not same ids
            assert np.mean(ids[:, 0] == whole[spec][1][:, 0]) >= 0.9
        else:
            assert np.array_equal(ids, whole[spec][1])
    with pytest.raises(ConfigError, match="--shards must be between 1"):
        build_index(database, "Flat", shards=0)
