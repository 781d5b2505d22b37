"""Pareto fronts, recommendations and design rules on hand-made stores."""

import json

import pytest

from edgevpr.errors import ConfigError
from edgevpr.explore.pareto import fronts, pareto_front
from edgevpr.explore.recommend import format_recommendation, recommend
from edgevpr.explore.rules import RULES, check
from edgevpr.explore.store import FIELDS, Store


def test_pareto_front_on_a_hand_made_set():
    costs = [1, 2, 3, 4, 2, 5, 1]
    recalls = [10, 30, 20, 50, 30, 40, 5]
    # (1,10) kept; (2,30) kept once; (3,20) dominated by (2,30); (4,50) kept; (5,40) dominated; (1,5) dominated
    assert pareto_front(costs, recalls) == [0, 1, 3]
    assert pareto_front([], []) == []


def _row(
    key,
    backbone,
    recall1,
    model_mb,
    extraction_ms,
    matching_ms=1.0,
    dim=256,
    n=1000,
    precision="fp32",
    dataset="gp",
    aggregator="gem",
    cell=None,
):
    row = {name: None for name in FIELDS}
    row.update(
        key=key,
        sweep="s",
        created_at="2026-01-01T00:00:00",
        dataset=dataset,
        protocol_name=f"{dataset}:p",
        backbone=backbone,
        aggregator=aggregator,
        descriptor_dim=dim,
        image_size="360x640",
        precision=precision,
        runtime="pytorch",
        index_spec="Flat",
        recall_1=recall1,
        recall_5=recall1 + 10,
        recall_10=recall1 + 20,
        recall_20=recall1 + 25,
        params=1,
        flops=1,
        model_bytes=int(model_mb * 1e6),
        extraction_ms=extraction_ms,
        matching_ms=matching_ms,
        num_database=n,
        database_bytes=n * dim * 4,
        total_ms=extraction_ms + matching_ms,
        threads=2,
        cpu="test cpu",
        cell_json=json.dumps(cell or {"overrides": {}, "precision": precision}),
        extra_json="{}",
    )
    return row


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "runs.db")
    for row in [
        _row("a", "big", 60.0, 14.0, 80.0, matching_ms=0.1, dim=1024),
        _row("b", "mid", 55.0, 4.0, 30.0, matching_ms=0.05, dim=256),
        _row("c", "small", 40.0, 1.0, 10.0, matching_ms=0.02, dim=128),
        _row("d", "other", 70.0, 1.0, 5.0, dataset="street"),
    ]:
        store.add(row)
    yield store
    store.close()


def test_store_schema_and_idempotent_insert(store):
    assert store.keys() == {"a", "b", "c", "d"}
    store.add(_row("a", "changed", 1.0, 1.0, 1.0))  # an existing key is never overwritten
    assert {r["key"]: r["backbone"] for r in store.rows()}["a"] == "big"
    assert store.integrity() == "ok"
    columns = [c[1] for c in store.connection.execute("PRAGMA table_info(runs)")]
    assert columns == FIELDS


def test_store_export_csv(store, tmp_path):
    out = tmp_path / "runs.csv"
    assert store.export(out) == 4
    lines = out.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["key", "sweep", "created_at"] and len(lines) == 5
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    assert store.export(tmp_path / "runs.parquet") == 4
    table = pandas.read_parquet(tmp_path / "runs.parquet")
    assert list(table.columns) == FIELDS and sorted(table["key"]) == ["a", "b", "c", "d"]
    with pytest.raises(ConfigError, match="export to .csv or .parquet"):
        store.export(tmp_path / "runs.xlsx")


def test_a_file_that_is_not_a_store_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite at all " * 100)
    with pytest.raises(ConfigError, match="not an edgevpr results store"):
        Store(bad)


def test_recommend_best_fit_and_runner_up(store):
    rows = store.rows()
    # 100k images: a needs 14 MB + 409.6 MB; b 4 MB + 102.4 MB, 30 + 5 ms; c 1 + 51.2 MB, 10 + 2 ms
    answer = recommend(rows, memory_bytes=200e6, latency_ms=50, map_size=100_000, dataset="gp")
    assert answer["fits"] and answer["best"]["key"] == "b" and answer["runner_up"]["key"] == "c"
    assert answer["best"]["memory_bytes"] == pytest.approx(4e6 + 100_000 * 256 * 4)
    assert answer["best"]["latency_ms"] == pytest.approx(30 + 0.05 * 100)
    assert "use: mid+gem" in format_recommendation(answer)
    roomy = recommend(rows, memory_bytes=1e9, latency_ms=1000, map_size=100_000, dataset="gp")
    assert roomy["best"]["key"] == "a"


def test_recommend_names_the_binding_constraint(store):
    rows = store.rows()
    tight_memory = recommend(rows, memory_bytes=10e6, latency_ms=1000, map_size=100_000, dataset="gp")
    assert not tight_memory["fits"]
    (binding,) = tight_memory["binding"]
    assert binding["constraint"] == "memory" and binding["closest"]["key"] == "c"
    assert binding["over_by"] == pytest.approx(1e6 + 100_000 * 128 * 4 - 10e6)
    assert "memory binds" in format_recommendation(tight_memory)
    # c: 1 MB model + 51.2 MB of 128-D float map; at 1 bit the map is 1.6 MB: 2.6 MB fits 10 MB
    (compact,) = [s for s in tight_memory["suggestions"] if s["change"].startswith("--descriptor-bits")]
    assert compact["change"] == "--descriptor-bits 1" and compact["memory_bytes"] == pytest.approx(1e6 + 1.6e6)
    assert compact["eq11_max_dim"] == pytest.approx(9e6 / (100_000 / 8))  # Eq. 11 at 1 bit: 720
    assert "try --descriptor-bits 1 -> 2.60 MB" in format_recommendation(tight_memory)
    tight_latency = recommend(rows, memory_bytes=1e12, latency_ms=5, map_size=1000, dataset="gp")
    assert [b["constraint"] for b in tight_latency["binding"]] == ["latency"]
    assert tight_latency["suggestions"] and "try --precision int8" in format_recommendation(tight_latency)
    nothing = recommend(rows, 1e9, 100, 10, dataset="nowhere")
    assert not nothing["fits"] and "no stored runs" in nothing["reason"]


def test_fronts_per_axis(store):
    rows = [r for r in store.rows() if r["dataset"] == "gp"]
    by_axis = fronts(rows, map_size=1000)
    assert [r["key"] for r in by_axis["model_bytes"]] == ["c", "b", "a"]
    assert set(by_axis) == {"model_bytes", "extraction_ms", "total_ms", "database_bytes"}


def test_design_rule_compares_matched_pairs_only():
    def cell(aggregator, precision, extra=None):
        return {
            "overrides": {"model": {"backbone": "x", "aggregator": aggregator, **(extra or {})}},
            "precision": precision,
        }

    rows = [
        _row("1", "x", 50.0, 1, 1, aggregator="mac", precision="int8", cell=cell("mac", "int8")),
        _row("2", "x", 45.0, 1, 1, aggregator="gem", precision="int8", cell=cell("gem", "int8")),
        _row("3", "x", 30.0, 1, 1, aggregator="gem", precision="int8", cell=cell("gem", "int8", {"dim": 64})),
    ]
    result = check(RULES[0], rows)
    assert result["pairs"] == 1 and result["mean_recall1_difference"] == 5.0 and result["verdict"] == "holds here"
    assert check(RULES[1], rows)["pairs"] == 0


def test_recommend_with_a_matching_cost_model(store):
    from edgevpr.search.cost_model import MatchingCostModel

    model = MatchingCostModel(k1_ms=1e-6, k2_ms=1e-5)  # 1 ns per dimension, 10 ns per image
    answer = recommend(store.rows(), 1e12, 1e6, 100_000, dataset="gp", cost_model=model)
    best = answer["best"]
    assert best["key"] == "a" and best["latency_ms"] == pytest.approx(80.0 + 100_000 * (1024 * 1e-6 + 1e-5))
