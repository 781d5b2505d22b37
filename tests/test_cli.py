import json

import numpy as np
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.evaluate.recall import recall_at_n, recall_from_ranks
from edgevpr.search.index import build_index, search


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_eval_writes_result_descriptors_and_gallery(tmp_path, tiny_street):
    out, descriptors, gallery = tmp_path / "r.json", tmp_path / "desc", tmp_path / "g.png"
    result = _run(
        "eval",
        "--backbone",
        "squeezenet",
        "--aggregator",
        "gem",
        "--dim",
        64,
        "--dataset",
        tiny_street,
        "--resize",
        72,
        "--out",
        out,
        "--save-descriptors",
        descriptors,
        "--gallery",
        gallery,
        "--latency-runs",
        20,
    )
    assert result.exit_code == 0, result.output
    assert "R@1" in result.output and "protocol: street" in result.output
    payload = json.loads(out.read_text())
    assert set(payload) >= {"protocol", "model", "recall", "cost", "config"}
    assert set(payload["recall"]) == {"1", "5", "10", "20"}
    assert set(payload["cost"]) >= {
        "params",
        "flops",
        "model_bytes",
        "extraction_ms",
        "matching_ms",
        "database_bytes",
        "total_ms",
    }
    protocol = payload["protocol"]
    assert protocol["positives"] == "meters<=25" and protocol["resize"] == "short_side=72"
    assert protocol["image_size"] == [72, 96] and protocol["num_database"] == 30
    assert protocol["precision"] == "fp32" and protocol["runtime"] == "pytorch"
    assert payload["config"]["model"]["dim"] == 64 and payload["model"]["descriptor_dim"] == 64
    assert payload["cost"]["database_bytes"] == 30 * 64 * 4

    # Recall recomputed independently from the saved descriptors equals the reported one.
    database, queries = np.load(descriptors / "database.npy"), np.load(descriptors / "queries.npy")
    truth = json.loads((descriptors / "ground_truth.json").read_text())
    _, ranked = search(build_index(database), queries, 20)
    recomputed = recall_at_n(ranked, [np.array(p) for p in truth["positives"]])
    assert recomputed == payload["recall"]
    ranks = np.array(payload["per_query"]["first_positive_rank"])  # what paired comparisons read
    assert len(ranks) == len(queries) and recall_from_ranks(ranks) == payload["recall"]
    assert gallery.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_yaml_config_with_flag_override(tmp_path, tiny_street):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model:\n  backbone: squeezenet\n  aggregator: mac\ndata:\n  dataset: {tiny_street}\n"
        f"eval:\n  latency_runs: 20\n"
    )
    out = tmp_path / "r.json"
    assert _run("eval", "--config", config, "--aggregator", "spoc", "--out", out).exit_code == 0
    payload = json.loads(out.read_text())
    assert payload["model"]["aggregator"] == "spoc" and payload["config"]["model"]["backbone"] == "squeezenet"


def test_user_errors_are_one_line(tmp_path):
    result = _run("eval", "--backbone", "nope", "--dataset", tmp_path)
    assert result.exit_code == 1 and result.output.startswith("Error: unknown backbone 'nope'")
    result = _run("eval", "--dataset", tmp_path / "absent")
    assert result.exit_code == 1 and "absent: dataset folder not found" in result.output
    result = _run("eval", "--size", "big", "--dataset", tmp_path)
    assert result.exit_code == 2 and "expected HxW" in result.output


def test_list_shows_every_registered_component_once_with_its_aliases():
    """`list` reads the registrations as text (no torch import); it must show exactly what the
    imported registries hold, aliases beside their component, never as components of their own."""
    import edgevpr.models  # noqa: F401
    import edgevpr.research
    from edgevpr.models.registry import AGGREGATORS, BACKBONES
    from edgevpr.quantize.precisions import PRECISIONS
    from edgevpr.rerank import RERANKERS

    edgevpr.research.register()
    lines = dict(line.split(":", 1) for line in _run("list").output.strip().splitlines())
    for label, registry in (
        ("backbones", BACKBONES),
        ("aggregators", AGGREGATORS),
        ("precisions", PRECISIONS),
        ("re-rankers", RERANKERS),
    ):
        shown = [part.strip() for part in lines[label].split(", ") if "(" not in part or ")" in part]
        expected = [name + (f" ({', '.join(a)})" if a else "") for name, a in registry.aliases().items()]
        assert ", ".join(shown) == ", ".join(expected), label
    assert "mobilenetv2 (mobilenet_v2)" in lines["backbones"] and " mobilenet_v2," not in lines["backbones"]


def test_help_list_and_protocols_import_no_heavy_library():
    import subprocess
    import sys

    for argv in (["--help"], ["list"], ["protocols"], ["eval", "--help"], ["map", "build", "--help"]):
        code = (
            "import sys; from edgevpr.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'faiss', 'onnxruntime', 'onnx', 'timm') if m in sys.modules]\n"
            "print('HEAVY', heavy)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        assert "HEAVY []" in out, (argv, out[-300:])


def test_eval_on_an_ann_index_reports_its_memory(tmp_path, tiny_street):
    out = tmp_path / "r.json"
    result = _run(
        "eval",
        "--backbone",
        "squeezenet",
        "--aggregator",
        "gem",
        "--dataset",
        tiny_street,
        "--size",
        "72x96",
        "--index",
        "HNSW8",
        "--search-params",
        "efSearch=16",
        "--latency-runs",
        20,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    cost = payload["cost"]
    assert payload["search"] == {
        "index": "HNSW8",
        "params": "efSearch=16",
        "memory_bytes": cost["database_bytes"] + cost["index_fixed_bytes"],
        "descriptor_bits": 32,
    }
    assert cost["database_bytes"] > 30 * 512 * 4  # the graph costs memory beyond the vectors


def test_recall_at_any_n_follows_into_table_and_json(tmp_path, tiny_street):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--backbone",
            "squeezenet",
            "--aggregator",
            "gem",
            "--dataset",
            str(tiny_street),
            "--recall-at",
            "1,3,25",
            "--latency-runs",
            "20",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert list(saved["recall"]) == ["1", "3", "25"]
    header = next(line for line in result.output.splitlines() if line.startswith("model"))
    assert "R@3" in header and "R@25" in header and "R@20" not in header
    bad = CliRunner().invoke(
        main, ["eval", "--backbone", "squeezenet", "--dataset", str(tiny_street), "--recall-at", "0,5"]
    )
    assert bad.exit_code != 0 and "eval.recall_at must be >= 1, got 0" in bad.output
