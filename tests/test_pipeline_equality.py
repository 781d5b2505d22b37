"""What is measured is what is deployed. For each cell of a grid on the generated street: the
sweep's cell runner evaluates it (as `edgevpr sweep` stores it), the stored row becomes a
recipe (`recommend --write-config`), `map build --config` builds a map from the recipe, and
`localize` answers the same queries. Every query's rank of its first positive must equal the
evaluation's, and the map's descriptor bytes the cost block's."""

import json

import pytest
import yaml
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.config import DataConfig
from edgevpr.data.dataset import load_dataset
from edgevpr.explore.recommend import recipe_of
from edgevpr.explore.run_cell import run_cell
from edgevpr.explore.store import row_from_result
from tests.conftest import write_mixed_config

BASE = {"model": {"backbone": "squeezenet", "aggregator": "gem"}, "eval": {"latency_runs": 5, "threads": 1}}
CELLS = {  # name -> (eval settings, precision); the slow half runs under the slow marker
    "fp32 Flat": ({}, "fp32"),
    "int8 Flat": ({}, "int8"),
    "fp32 8-bit descriptors": ({"descriptor_bits": 8}, "fp32"),
    "fp32 IVF with re-scoring": ({"index": "IVF2,SQ8,Rerank20", "search_params": "nprobe=2"}, "fp32"),
    "fp32 rapid re-ranking": ({"rerank": "rapid", "rerank_k": 10, "patch_size": [2], "patch_stride": [1]}, "fp32"),
    "fp32 rapid on compact patches": (
        {"rerank": "rapid", "rerank_k": 10, "patch_size": [2], "patch_stride": [1], "patch_dim": 24, "patch_bits": 8},
        "fp32",
    ),
    "fp32 attention re-ranking": (
        {"rerank": "attention", "rerank_k": 10, "patch_size": [2], "patch_stride": [1]},
        "fp32",
    ),
    "int8 binary codes": ({"descriptor_bits": 1, "index": "BFlat,Rerank10"}, "int8"),
    "int8 HNSW": ({"index": "HNSW16"}, "int8"),
    "mixed int8/fp16": ({}, "mixed"),
}
SLOW = {
    "int8 binary codes",
    "int8 HNSW",
    "fp32 rapid re-ranking",
    "fp32 rapid on compact patches",
    "fp32 attention re-ranking",
    "mixed int8/fp16",
}


def _ranks(answers: list[dict], names: list[str], positives) -> list[int]:
    index = {name: i for i, name in enumerate(names)}
    ranks = []
    for answer, truth in zip(answers, positives):
        ids = [index[m["name"]] for m in answer["matches"]]
        ranks.append(next((rank for rank, i in enumerate(ids) if i in set(truth.tolist())), -1))
    return ranks


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CELLS], ids=list(CELLS)
)
def test_a_stored_run_deployed_as_a_map_answers_every_query_as_it_was_measured(name, tmp_path, tiny_street):
    settings, precision = CELLS[name]
    data = {"dataset": str(tiny_street), "size": [72, 96]}
    eval_settings = BASE["eval"] | settings
    if settings.get("descriptor_bits") == 1:
        eval_settings["descriptor_fit"] = str(tiny_street / "queries")  # other images than the map's
    cell = {
        "overrides": {"model": BASE["model"], "data": data, "eval": eval_settings},
        "precision": precision,
        "quantize": {"calib": str(tiny_street / "database"), "calib_count": 8} if precision != "fp32" else {},
        "label": name,
    }
    if precision == "mixed":
        cell["quantize"]["mixed_config"] = write_mixed_config(tmp_path / "mixed.json")
    result = run_cell(cell)
    row = row_from_result("k", "grid", cell, result, "now")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_of(row)))

    runner = CliRunner()
    map_dir = tmp_path / "map"
    built = runner.invoke(
        main,
        ["map", "build", "--config", str(recipe), "--images", str(tiny_street / "database"), "--out", str(map_dir)],
    )
    assert built.exit_code == 0, built.output
    manifest = json.loads((map_dir / "map.json").read_text())
    assert manifest["model"]["precision"].startswith(precision)
    k = max(result["config"]["eval"]["recall_at"])
    argv = ["localize", str(map_dir), "--images", str(tiny_street / "queries"), "--top-k", str(k)]
    if settings.get("rerank"):
        argv += ["--rerank", settings["rerank"], "--rerank-k", str(settings["rerank_k"])]
    answers = runner.invoke(main, [*argv, "--jsonl", str(tmp_path / "a.jsonl")])
    assert answers.exit_code == 0, answers.output
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    dataset = load_dataset(DataConfig(dataset=str(tiny_street)))
    names = [p.name for p in dataset.database_paths]
    localized = _ranks(lines, names, dataset.positives)
    assert localized == result["per_query"]["first_positive_rank"]
    info = json.loads(runner.invoke(main, ["map", "info", str(map_dir), "--json"]).output)
    assert info["index"]["spec"] == result["search"]["index"]
    assert info["index_memory_bytes"] == result["search"]["memory_bytes"]


@pytest.mark.parametrize("length, enhance", [(1, 0), (5, 0), (5, 6)])
def test_a_stream_localized_with_sequence_matching_answers_as_eval_measured(tmp_path, noisy_route, length, enhance):
    """Frame-aligned: `eval --sequence L` of the route against its noisy copies, and the same
    map localizing the copies as a stream (`localize --sequence L`): the same rank of the first
    positive (within one frame) for every query."""
    route_map, stream = noisy_route
    queries = tmp_path / "queries"
    queries.mkdir()
    route = route_map.folder.parent / "route"
    for path, t in stream:
        (queries / path.name).symlink_to(path)
    database = tmp_path / "database"
    database.mkdir()
    for t in range(8, 22):  # frame-aligned pairs: the map frames the stream shows
        (database / f"f{t:03d}.png").symlink_to(route / f"f{t:03d}.png")
    out = tmp_path / "r.json"
    argv = ["eval", "--backbone", "squeezenet", "--aggregator", "gem", "--size", "72x96", "--latency-runs", "5"]
    argv += ["--database", str(database), "--queries", str(queries), "--tolerance-frames", "1"]
    argv += ["--sequence", str(length), "--sequence-enhance", str(enhance)]
    result = CliRunner().invoke(main, [*argv, "--out", str(out)])
    assert result.exit_code == 0, result.output
    measured = json.loads(out.read_text())["per_query"]["first_positive_rank"]
    map_dir = tmp_path / "map"
    built = CliRunner().invoke(
        main,
        [
            "map",
            "build",
            "--backbone",
            "squeezenet",
            "--size",
            "72x96",
            "--images",
            str(database),
            "--out",
            str(map_dir),
        ],
    )
    assert built.exit_code == 0, built.output
    lines = tmp_path / "a.jsonl"
    localized = CliRunner().invoke(
        main,
        ["localize", str(map_dir), "--images", str(queries), "--sequence", str(length), "--top-k", "14"]
        + ["--sequence-enhance", str(enhance)]
        + ["--jsonl", str(lines)],
    )
    assert localized.exit_code == 0, localized.output
    answers = [json.loads(line) for line in lines.read_text().splitlines()]
    ranks = []
    for i, answer in enumerate(answers):
        frames = [int(m["name"][1:4]) - 8 for m in answer["matches"]]
        ranks.append(next((r for r, f in enumerate(frames) if abs(f - i) <= 1), -1))
    assert ranks == measured
