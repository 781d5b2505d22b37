"""Bad input of every kind: each case must end with exit status 1 and one line that names the
file or option at fault, never a traceback; and properties of the parsers over arbitrary input
(hypothesis): they accept or refuse with edgevpr's own error, nothing else."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevpr.cli import main
from edgevpr.config import load_config
from edgevpr.contract import InputContract
from edgevpr.data.folder_format import parse_utm
from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic
from edgevpr.errors import EdgeVPRError
from edgevpr.maps import Map
from edgevpr.search.index import IndexSpec
from tests.conftest import utm_name, write_image

MODEL = ["--backbone", "squeezenet", "--aggregator", "gem", "--latency-runs", "20"]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of small datasets and broken side files for the cases below."""
    root = tmp_path_factory.mktemp("bad")
    for i in range(4):
        write_image(root / "street" / "database" / utm_name(500000 + 10 * i, 4000000, f"d{i}"), i, (96, 72))
        write_image(root / "street" / "queries" / utm_name(500003 + 10 * i, 4000000, f"q{i}"), 10 + i, (96, 72))
    for i, count in enumerate((6, 10)):
        for j in range(count):
            write_image(root / f"frames{i}" / f"f{j:02d}.jpg", j, (96, 72))
    write_image(root / "nan" / "database" / "@nan@4000000@33@T@@@@.jpg", 1)
    write_image(root / "nan" / "queries" / utm_name(500000, 4000000), 2)
    (root / "empty.onnx").write_bytes(b"")
    (root / "garbage.pth").write_bytes(b"\x00garbage" * 50)
    (root / "broken.yaml").write_text("model: [unclosed\n")
    (root / "unknown.yaml").write_text("model:\n  colour: red\n")
    (root / "existing_dir").mkdir()
    for name, array in (("nan", np.full((3, 4), np.nan, np.float32)), ("zero", np.zeros((0, 4), np.float32))):
        (root / f"desc_{name}").mkdir()
        np.save(root / f"desc_{name}" / "database.npy", array)
    (root / "desc_json").mkdir()
    np.save(root / "desc_json" / "database.npy", np.eye(4, dtype=np.float32))
    np.save(root / "desc_json" / "queries.npy", np.eye(4, dtype=np.float32))
    (root / "desc_json" / "descriptors.json").write_text("{not json")
    (root / "desc_ok").mkdir()
    np.save(root / "desc_ok" / "database.npy", np.eye(4, dtype=np.float32))
    np.save(root / "desc_ok" / "queries.npy", np.eye(4, dtype=np.float32))
    (root / "index.faiss").write_text('{"format": "edgevpr-index/2"')
    (root / "scaling.json").write_text("[1, 2]")
    (root / "poses.csv").write_text("name,x\nd0.jpg,1\n")
    (root / "map").mkdir()
    (root / "map" / "map.json").write_text('{"format": "edgevpr-map/1", "model": 3}')
    _write_bad_side_files(root)
    return root


def _write_bad_side_files(root):
    """Broken ground truth, configs, descriptors and matcher files for the newer commands."""
    np.save(root / "gt_rows3.npy", np.zeros((4, 3), np.int64))
    np.save(root / "gt_1d.npy", np.arange(4))
    np.save(root / "gt_float.npy", np.array([[0.5, 1.0], [1.5, 2.0]]))
    (root / "gt_empty.npy").write_bytes(b"")
    np.save(root / "gt_pairs.npy", np.array([[0, 0], [1, 1], [2, 2], [3, 3]], np.int64))
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "sweep_list.yaml").write_text("name: s\ndataset: [a, b]\nbase: [x]\naxes: [1]\n")
    (root / "mixed_no_layers.json").write_text('{"format": "edgevpr-mixed-precision-1"}')
    (root / "garbage.npz").write_bytes(b"PK\x03\x04 garbage")
    (root / "not_image.jpg").write_bytes(b"not an image at all")
    (root / "a_file").write_text("x")
    (root / "empty_folder").mkdir()
    (root / "poses_nan.csv").write_text("name,x,y\n" + "".join(f"d{i}.jpg,nan,1\n" for i in range(4)))
    short = root / "desc_short_truth"
    short.mkdir()
    np.save(short / "database.npy", np.eye(4, dtype=np.float32))
    np.save(short / "queries.npy", np.eye(4, dtype=np.float32)[:3])
    (short / "ground_truth.json").write_text(json.dumps({"positives": [[0]]}))
    cut = root / "desc_cut"
    cut.mkdir()
    np.save(cut / "database.npy", np.eye(4, dtype=np.float32))
    np.save(cut / "queries.npy", np.eye(4, dtype=np.float32))
    data = (cut / "queries.npy").read_bytes()
    (cut / "queries.npy").write_bytes(data[: len(data) - 20])


def _eval(*args):
    return ["eval", *MODEL, *args]


CASES = {  # kind -> (argv with {root} for the fixture folder, text the one line must contain)
    "gem p zero": (
        _eval("--dataset", "{root}/street", "--gem-p", "0"),
        "model.aggregator.params: p must be a finite number > 0",
    ),
    "gem p nan": (
        _eval("--dataset", "{root}/street", "--gem-p", "nan"),
        "model.aggregator.params: p must be a finite number > 0",
    ),
    "batch size zero": (_eval("--dataset", "{root}/street", "--batch-size", "0"), "eval.batch_size must be >= 1"),
    "workers negative": (_eval("--dataset", "{root}/street", "--workers", "-1"), "eval.workers must be >= 0"),
    "latency runs below 5": (_eval("--dataset", "{root}/street", "--latency-runs", "2"), "eval.latency_runs"),
    "size too small": (_eval("--dataset", "{root}/street", "--size", "4x4"), "cannot run on 4x4 images"),
    "size absurd": (_eval("--dataset", "{root}/street", "--size", "100000x100000"), "exceeds max_pixels"),
    "resize zero": (_eval("--dataset", "{root}/street", "--resize", "0"), "data.resize must be >= 1"),
    "resize absurd": (_eval("--dataset", "{root}/street", "--resize", "100000"), "more than max_pixels"),
    "clusters zero": (
        [
            "eval",
            "--backbone",
            "squeezenet",
            "--aggregator",
            "netvlad",
            "--clusters",
            "0",
            "--dataset",
            "{root}/street",
        ],
        "model.aggregator.params: clusters must be a finite number >= 1",
    ),
    "option the component lacks": (
        _eval("--dataset", "{root}/street", "--aggregator", "gem", "--clusters", "8"),
        "aggregator 'gem' has no option 'clusters'; its options: normalize_input, p",
    ),
    "dim zero": (_eval("--dataset", "{root}/street", "--dim", "0"), "model.dim must be >= 1"),
    "threshold negative": (_eval("--dataset", "{root}/street", "--threshold-m", "-1"), "data.threshold_m must be > 0"),
    "tolerance negative": (
        _eval("--database", "{root}/frames1", "--queries", "{root}/frames1", "--tolerance-frames", "-1"),
        "data.tolerance_frames must be >= 0",
    ),
    "recall at zero": (_eval("--dataset", "{root}/street", "--recall-at", "0"), "eval.recall_at must be >= 1"),
    "sequence zero": (_eval("--dataset", "{root}/street", "--sequence", "0"), "eval.sequence must be >= 1"),
    "sequence with an index": (
        _eval("--dataset", "{root}/street", "--sequence", "3", "--index", "HNSW16"),
        "--index, --descriptor-bits and --rerank do not apply",
    ),
    "unknown index": (_eval("--dataset", "{root}/street", "--index", "Nonsense12"), "Nonsense12"),
    "index too big for the map": (_eval("--dataset", "{root}/street", "--index", "IVF1024,Flat"), "use Flat"),
    "missing folder": (_eval("--dataset", "{root}/nowhere"), "nowhere: dataset folder not found"),
    "out is a folder": (_eval("--dataset", "{root}/street", "--out", "{root}/existing_dir"), "names a folder"),
    "weights missing": (_eval("--dataset", "{root}/street", "--weights", "{root}/no.pth"), "no.pth: weights file"),
    "weights garbage": (_eval("--dataset", "{root}/street", "--weights", "{root}/garbage.pth"), "garbage.pth"),
    "onnx empty": (["eval", "--onnx", "{root}/empty.onnx", "--dataset", "{root}/street"], "empty.onnx"),
    "config not yaml": (["eval", "--config", "{root}/broken.yaml"], "broken.yaml: not valid YAML"),
    "config unknown key": (["eval", "--config", "{root}/unknown.yaml"], "unknown key 'colour'"),
    "nan in utm names": (_eval("--dataset", "{root}/nan"), "not finite numbers"),
    "frame counts differ": (
        _eval("--database", "{root}/frames0", "--queries", "{root}/frames1", "--tolerance-frames", "2"),
        "must hold as many images",
    ),
    "percentile 200": (
        [
            "quantize",
            *MODEL[:4],
            "--size",
            "72x96",
            "--calib",
            "{root}/street/database",
            "--percentile",
            "200",
            "--out",
            "{root}/q.onnx",
        ],
        "quantize.percentile must be in (0, 100]",
    ),
    "calib count zero": (
        [
            "quantize",
            *MODEL[:4],
            "--size",
            "72x96",
            "--calib",
            "{root}/street/database",
            "--calib-count",
            "0",
            "--out",
            "{root}/q.onnx",
        ],
        "quantize.calib_count must be >= 1",
    ),
    "keep float negative": (
        [
            "quantize",
            *MODEL[:4],
            "--size",
            "72x96",
            "--calib",
            "{root}/street/database",
            "--keep-float",
            "-1",
            "--out",
            "{root}/q.onnx",
        ],
        "quantize.keep_float must be >= 0",
    ),
    "calib missing": (
        ["quantize", *MODEL[:4], "--size", "72x96", "--calib", "{root}/nowhere", "--out", "{root}/q.onnx"],
        "nowhere: calibration folder not found",
    ),
    "quantize out is a folder": (
        ["quantize", *MODEL[:4], "--size", "72x96", "--precision", "fp32", "--out", "{root}/existing_dir"],
        "names a folder",
    ),
    "steps negative": (
        [
            "search-precision",
            *MODEL[:4],
            "--size",
            "72x96",
            "--budget",
            "6",
            "--calib",
            "{root}/street/database",
            "--steps",
            "-1",
            "--out",
            "{root}/m.json",
        ],
        "precision_search.steps must be >= 1",
    ),
    "budget out of range": (
        [
            "search-precision",
            *MODEL[:4],
            "--size",
            "72x96",
            "--budget",
            "2",
            "--calib",
            "{root}/street/database",
            "--out",
            "{root}/m.json",
        ],
        "precision_search.budget",
    ),
    "nan descriptors": (
        ["index", "build", "--descriptors", "{root}/desc_nan", "--index", "Flat", "--out", "{root}/i.faiss"],
        "holds NaN or infinite values",
    ),
    "no descriptors": (
        ["index", "build", "--descriptors", "{root}/desc_zero", "--index", "Flat", "--out", "{root}/i.faiss"],
        "holds no descriptors",
    ),
    "corrupt descriptors.json": (
        ["index", "build", "--descriptors", "{root}/desc_json", "--index", "Flat", "--out", "{root}/i.faiss"],
        "descriptors.json: not a valid",
    ),
    "corrupt index manifest": (
        ["index", "search", "--index", "{root}/index.faiss", "--descriptors", "{root}/desc_ok"],
        "index.faiss: not an index manifest",
    ),
    "k zero": (
        ["index", "search", "--index", "{root}/index.faiss", "--descriptors", "{root}/desc_ok", "--k", "0"],
        "--k must be >= 1",
    ),
    "memory negative": (
        ["advise", "--memory", "-1", "--latency-ms", "30", "--map-size", "1000"],
        "--memory must be > 0",
    ),
    "latency nan": (
        ["advise", "--memory", "1e6", "--latency-ms", "nan", "--map-size", "1000"],
        "--latency-ms must be a finite number",
    ),
    "scaling not an object": (
        ["advise", "--memory", "1e6", "--latency-ms", "30", "--map-size", "1000", "--scaling", "{root}/scaling.json"],
        "scaling.json: not a valid scaling file",
    ),
    "map size zero": (
        ["recommend", "--store", "{root}/broken.yaml", "--memory", "1e6", "--latency-ms", "30", "--map-size", "0"],
        "--map-size must be >= 1",
    ),
    "learning rate zero": (
        ["train", *MODEL[:4], "--train-dataset", "{root}/street", "--lr", "0"],
        "train.lr must be > 0",
    ),
    "epochs zero": (
        ["train", *MODEL[:4], "--train-dataset", "{root}/street", "--epochs", "0"],
        "train.epochs must be >= 1",
    ),
    "positions csv header": (
        [
            "map",
            "build",
            *MODEL[:4],
            "--size",
            "72x96",
            "--images",
            "{root}/street/database",
            "--positions",
            "{root}/poses.csv",
            "--out",
            "{root}/newmap",
        ],
        "poses.csv: the header",
    ),
    "map missing": (["localize", "{root}/nomap", "{root}/street/queries"], "nomap: map folder not found"),
    "map manifest corrupt": (["localize", "{root}/map", "{root}/street/queries"], "map.json: missing section"),
}


def _with_street(*args):
    return [*args, "--database", "{root}/street/database", "--queries", "{root}/street/queries", "--threshold-m", "25"]


def _map_build(*args):
    return ["map", "build", *MODEL[:4], "--size", "72x96", "--images", "{root}/street/database", *args]


def _localize(*args):
    return ["localize", "{map}", "{root}/street/queries/" + utm_name(500003, 4000000, "q0"), *args]


# The bad input of the last round's commands: map build/add/info/export-hloc, localize,
# convert, re-ranking, compact descriptors, export-matcher, train-matcher; and the cases that
# ended in a traceback before (ground-truth arrays, binary YAML, sweeps, mixed configs).
COMMAND_CASES = {
    "ground truth of 3 columns": (
        _eval(*_with_street()[:-2], "--ground-truth", "{root}/gt_rows3.npy"),
        "gt_rows3.npy: row 0 is not",
    ),
    "ground truth 1-D": (_eval(*_with_street()[:-2], "--ground-truth", "{root}/gt_1d.npy"), "gt_1d.npy: row 0"),
    "ground truth float": (_eval(*_with_street()[:-2], "--ground-truth", "{root}/gt_float.npy"), "gt_float.npy"),
    "ground truth empty file": (_eval(*_with_street()[:-2], "--ground-truth", "{root}/gt_empty.npy"), "gt_empty.npy"),
    "config binary": (["eval", "--config", "{root}/binary.yaml"], "binary.yaml: not valid YAML"),
    "sweep list for a mapping": (["sweep", "{root}/sweep_list.yaml", "--store", "{root}/s.db"], "sweep_list.yaml"),
    "mixed config without layers": (
        [
            "quantize",
            *MODEL[:4],
            "--size",
            "72x96",
            "--precision",
            "mixed",
            "--mixed-config",
            "{root}/mixed_no_layers.json",
            "--calib",
            "{root}/street/database",
            "--out",
            "{root}/q.onnx",
        ],
        "mixed_no_layers.json: lacks layers",
    ),
    "quantize size too small": (
        ["quantize", *MODEL[:4], "--size", "4x4", "--precision", "fp32", "--out", "{root}/q.onnx"],
        "--size 4x4: the model cannot run",
    ),
    "index search truth shorter than queries": (
        ["index", "search", "--index", "{index}", "--descriptors", "{root}/desc_short_truth"],
        "ground_truth.json",
    ),
    "index search truncated queries": (
        ["index", "search", "--index", "{index}", "--descriptors", "{root}/desc_cut"],
        "queries.npy",
    ),
    "hloc top-k zero": (
        ["map", "export-hloc", "{map}", "--queries", "{root}/street/queries", "--top-k", "0", "--out", "{root}/h"],
        "--top-k must be >= 1",
    ),
    "hloc queries missing": (
        ["map", "export-hloc", "{map}", "--queries", "{root}/nowhere", "--out", "{root}/h"],
        "nowhere",
    ),
    "hloc out is a file": (
        ["map", "export-hloc", "{map}", "--queries", "{root}/street/queries", "--out", "{root}/a_file"],
        "a_file: exists and is not a folder",
    ),
    "localize min score nan": (_localize("--min-score", "nan"), "--min-score must be a finite number"),
    "localize top-k zero": (_localize("--top-k", "0"), "--top-k must be >= 1"),
    "localize rerank-k zero": (_localize("--rerank", "rapid", "--rerank-k", "0"), "--rerank-k must be >= 1"),
    "localize unknown re-ranker": (_localize("--rerank", "magic"), "unknown re-ranker 'magic'"),
    "localize sequence zero": (_localize("--sequence", "0"), "--sequence must be >= 1"),
    "localize jsonl is a folder": (_localize("--jsonl", "{root}/existing_dir"), "names a folder"),
    "localize not an image": (["localize", "{map}", "{root}/not_image.jpg"], "not_image.jpg"),
    "localize image missing": (["localize", "{map}", "{root}/missing.jpg"], "missing.jpg"),
    "localize images folder missing": (["localize", "{map}", "--images", "{root}/nowhere"], "nowhere"),
    "localize matcher missing": (_localize("--rerank", "attention", "--matcher", "{root}/no.npz"), "no.npz"),
    "localize matcher garbage": (_localize("--rerank", "attention", "--matcher", "{root}/garbage.npz"), "garbage.npz"),
    "localize rerank without patches": (
        ["localize", "{plain_map}", "{root}/street/queries/" + utm_name(500003, 4000000, "q0"), "--rerank", "rapid"],
        "holds no patch descriptors",
    ),
    "map build images missing": (
        ["map", "build", *MODEL[:4], "--size", "72x96", "--images", "{root}/nowhere", "--out", "{root}/m1"],
        "nowhere",
    ),
    "map build images empty": (
        ["map", "build", *MODEL[:4], "--size", "72x96", "--images", "{root}/empty_folder", "--out", "{root}/m1"],
        "empty_folder",
    ),
    "map build out is a file": (_map_build("--out", "{root}/a_file"), "a_file"),
    "map build unknown index": (_map_build("--index", "Nonsense12", "--out", "{root}/m1"), "Nonsense12"),
    "map build positions missing": (
        _map_build("--positions", "{root}/no.csv", "--out", "{root}/m1"),
        "no.csv",
    ),
    "map build positions nan": (
        _map_build("--positions", "{root}/poses_nan.csv", "--out", "{root}/m1"),
        "poses_nan.csv",
    ),
    "map build patch size not a number": (
        _map_build("--patches", "--patch-size", "abc", "--out", "{root}/m1"),
        "'abc' is not a comma-separated list",
    ),
    "map build patch size zero": (_map_build("--patches", "--patch-size", "0", "--out", "{root}/m1"), "patch"),
    "map build strides do not pair": (
        _map_build("--patches", "--patch-size", "2,3", "--patch-stride", "1", "--out", "{root}/m1"),
        "stride",
    ),
    "map build onnx empty": (
        ["map", "build", "--onnx", "{root}/empty.onnx", "--images", "{root}/street/database", "--out", "{root}/m1"],
        "empty.onnx",
    ),
    "map build checkpoint garbage": (
        [
            "map",
            "build",
            "--checkpoint",
            "{root}/garbage.pth",
            "--images",
            "{root}/street/database",
            "--out",
            "{root}/m1",
        ],
        "garbage.pth",
    ),
    "map build binary without fit": (
        _map_build("--descriptor-bits", "1", "--index", "BFlat", "--out", "{root}/m1"),
        "--descriptor-fit",
    ),
    "map build binary fit missing": (
        _map_build(
            "--descriptor-bits", "1", "--index", "BFlat", "--descriptor-fit", "{root}/nowhere", "--out", "{root}/m1"
        ),
        "nowhere",
    ),
    "map add to no map": (["map", "add", "{root}/nomap", "--images", "{root}/street/queries"], "nomap"),
    "map add images missing": (["map", "add", "{copy_map}", "--images", "{root}/nowhere"], "nowhere"),
    "map info of no map": (["map", "info", "{root}/nomap"], "nomap: map folder not found"),
    "map info corrupt": (["map", "info", "{root}/map"], "map.json"),
    "eval unknown re-ranker": (_eval("--dataset", "{root}/street", "--rerank", "magic"), "unknown re-ranker 'magic'"),
    "eval rerank-k zero": (
        _eval("--dataset", "{root}/street", "--rerank", "rapid", "--rerank-k", "0"),
        "rerank.k must be >= 1",
    ),
    "eval matcher missing": (
        _eval("--dataset", "{root}/street", "--rerank", "attention", "--matcher", "{root}/no.npz"),
        "no.npz",
    ),
    "eval binary fit missing": (
        _eval(
            "--dataset",
            "{root}/street",
            "--descriptor-bits",
            "1",
            "--index",
            "BFlat",
            "--descriptor-fit",
            "{root}/nowhere",
        ),
        "nowhere",
    ),
    "eval binary index for float descriptors": (
        _eval("--dataset", "{root}/street", "--index", "BFlat"),
        "--descriptor-bits 1 needs --descriptor-fit",
    ),
    "export-matcher missing": (["export-matcher", "{root}/no.npz", "--out", "{root}/m.onnx"], "no.npz"),
    "export-matcher garbage": (["export-matcher", "{root}/garbage.npz", "--out", "{root}/m.onnx"], "garbage.npz"),
    "export-matcher out is a folder": (
        ["export-matcher", "{root}/garbage.npz", "--out", "{root}/existing_dir"],
        "names a folder",
    ),
    "train-matcher no training data": (
        ["train-matcher", *MODEL[:4], "--size", "72x96", "--train-dataset", "{root}/nowhere", "--run-dir", "{root}/r"],
        "nowhere",
    ),
    "train-matcher patch size bad": (
        [
            "train-matcher",
            *MODEL[:4],
            "--size",
            "72x96",
            "--train-dataset",
            "{root}/street",
            "--patch-size",
            "x",
            "--run-dir",
            "{root}/r",
        ],
        "'x' is not a comma-separated list",
    ),
    "convert source missing": (["convert", "vprbench", "{root}/nowhere", "{root}/c1"], "nowhere"),
    "convert csv without positions": (["convert", "csv", "{root}/street", "{root}/c2"], "csv"),
    "convert nordland without seasons": (["convert", "nordland", "{root}/street", "{root}/c3"], "summer"),
    "convert pitts without mat": (["convert", "pitts", "{root}/street", "{root}/c4"], ".mat"),
    "convert msls empty": (["convert", "msls", "{root}/empty_folder", "{root}/c5"], "empty_folder"),
}


@pytest.fixture(scope="module")
def maps(bad, tmp_path_factory):
    """A map with patches, one without, a copy to add to, and a saved index, for the cases above."""
    root = tmp_path_factory.mktemp("maps")
    build = ["map", "build", *MODEL[:4], "--size", "72x96", "--images", str(bad / "street" / "database")]
    for name, extra in (("map", ["--patches"]), ("plain_map", []), ("copy_map", [])):
        result = CliRunner().invoke(main, [*build, *extra, "--out", str(root / name)])
        assert result.exit_code == 0, result.output
    index = root / "index.faiss"
    result = CliRunner().invoke(
        main, ["index", "build", "--descriptors", str(bad / "desc_ok"), "--index", "Flat", "--out", str(index)]
    )
    assert result.exit_code == 0, result.output
    return {"map": root / "map", "plain_map": root / "plain_map", "copy_map": root / "copy_map", "index": index}


def _invoke_case(argv, folders: dict):
    filled = []
    for part in argv:
        for key, value in folders.items():
            part = part.replace("{" + key + "}", str(value))
        filled.append(part)
    return CliRunner().invoke(main, filled)


def _assert_one_line(kind, result, expected):
    output = result.output.strip()
    assert result.exit_code == 1, f"{kind}: exit {result.exit_code}: {output[-400:]} {result.exception!r}"
    assert isinstance(result.exception, SystemExit), f"{kind}: raised {result.exception!r}"  # not a traceback
    assert "Traceback" not in output
    last = output.splitlines()[-1]
    assert last.startswith("Error: ") and expected in last, f"{kind}: {last}"


@pytest.mark.parametrize("kind", sorted(COMMAND_CASES))
def test_bad_input_to_the_newer_commands_is_one_line(bad, maps, kind):
    argv, expected = COMMAND_CASES[kind]
    _assert_one_line(kind, _invoke_case(argv, {"root": bad, **maps}), expected)


def test_plain_int_pairs_are_read_as_ground_truth(bad):
    """An (N, 2) integer array of [query, database] pairs is VPR-Bench ground truth too."""
    argv = _eval(*_with_street()[:-2], "--ground-truth", "{root}/gt_pairs.npy")
    result = _invoke_case(argv, {"root": bad})
    assert result.exit_code == 0, result.output
    assert "ground_truth=gt_pairs.npy" in result.output


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_input_is_one_line_and_exit_1(bad, kind):
    argv, expected = CASES[kind]
    result = CliRunner().invoke(main, [part.replace("{root}", str(bad)) for part in argv])
    output = result.output.strip()
    assert result.exit_code == 1, f"{kind}: exit {result.exit_code}: {output[-400:]} {result.exception!r}"
    assert "Traceback" not in output
    last = output.splitlines()[-1]
    assert last.startswith("Error: ") and expected in last, f"{kind}: {last}"


def test_the_fuzz_suite_covers_the_kinds_it_names():
    assert len(CASES) >= 45 and len(COMMAND_CASES) >= 50


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["resize", "size", "resize_factor", "max_pixels", "tolerance_frames", "threshold_m", "frames"]),
        st.one_of(
            st.integers(-(10**6), 10**6),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=8),
            st.lists(st.integers(-5, 10**5), max_size=3),
            st.none(),
        ),
    )
)
def test_the_config_accepts_or_refuses_in_one_line(values):
    try:
        config = load_config(overrides={"data": values})
    except EdgeVPRError as error:
        assert "\n" not in str(error)
        return
    for name in ("resize", "threshold_m"):
        value = getattr(config.data, name)
        assert value is None or (math.isfinite(value) and value > 0)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_utm_names_parse_or_are_refused(name):
    try:
        east, north = parse_utm(name + ".jpg")
    except EdgeVPRError:
        return
    assert math.isfinite(east) and math.isfinite(north)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_index_specs_parse_or_are_refused(text):
    try:
        spec = IndexSpec.parse(text)
    except EdgeVPRError:
        return
    assert spec.factory and spec.rerank >= 0 and IndexSpec.parse(str(spec)) == spec


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["resize", "size", "mean", "std", "factor", "padding", "interpolation", "x"]),
        st.one_of(
            st.integers(-3, 500),
            st.floats(allow_nan=True),
            st.text(max_size=6),
            st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
        ),
    )
)
def test_stored_contracts_load_or_are_refused(values):
    try:
        contract = InputContract.from_dict(json.loads(json.dumps(values)), "m.onnx")
    except EdgeVPRError as error:
        assert (
            str(error).startswith("m.onnx") or "--" in str(error) or "padding" in str(error) or "interp" in str(error)
        )
        return
    assert all(math.isfinite(v) for v in (*contract.mean, *contract.std)) and min(contract.std) > 0


# A full disk while writing an index or a training checkpoint: one line naming the file, exit
# 1, nothing half-written left behind. The disk is a tmpfs of a few hundred KB, which needs
# root (CI and the developers' machines run as root); elsewhere these tests skip and say so.


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()

    def mounted(kilobytes: int):
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(mount)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
        return mount

    yield mounted
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)  # lazy: a map may still hold a mapped file


def _one_storage_line(result, name: str) -> None:
    output = result.output.strip()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), output[-300:]
    last = output.splitlines()[-1]
    assert last.startswith("Error: ") and name in last and "no space left on the device" in last, last


def test_index_build_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_disk):
    descriptors = tmp_path / "descriptors"
    descriptors.mkdir()
    np.save(descriptors / "database.npy", np.random.default_rng(0).random((2000, 128), dtype=np.float32))
    disk = tiny_disk(64)
    result = CliRunner().invoke(
        main, ["index", "build", "--descriptors", str(descriptors), "--index", "Flat", "--out", str(disk / "i.faiss")]
    )
    _one_storage_line(result, "i.faiss")
    assert list(disk.iterdir()) == []  # no part of the unfinished index


@pytest.mark.slow
def test_train_on_a_full_disk_is_one_line_naming_the_checkpoint(tmp_path, tiny_disk):
    data = generate_synthetic(
        tmp_path / "street", SyntheticSpec(num_places=24, train_places=16, val_places=4, width=96, height=72)
    )
    disk = tiny_disk(300)
    argv = ["train", "--backbone", "squeezenet", "--aggregator", "gem", "--train-dataset", str(data)]
    argv += ["--size", "72x96", "--epochs", "1", "--queries-per-epoch", "8", "--run-dir", str(disk / "run")]
    result = subprocess.run([sys.executable, "-m", "edgevpr.cli", *argv], capture_output=True, text=True)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-500:]
    assert last.startswith("Error: ") and "best.pt: no space left on the device" in last, last
    assert not [p for p in (disk / "run").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_map_add_on_a_full_disk_is_one_line_and_keeps_the_map(tiny_street, tiny_disk):
    """The disk holds the map (3 MB of it the model) and little more: the new version's parts
    do not fit. The old version stays whole and current, and no part of the new one is left."""
    disk = tiny_disk(3100)
    folder = disk / "map"
    argv = ["map", "build", *MODEL[:4], "--size", "72x96", "--images", str(tiny_street / "database")]
    built = CliRunner().invoke(main, [*argv, "--out", str(folder)])
    assert built.exit_code == 0, built.output[-300:]
    before = sorted(p.name for p in folder.iterdir())
    result = CliRunner().invoke(main, ["map", "add", str(folder), "--images", str(tiny_street / "queries")])
    _one_storage_line(result, "map.json")
    assert sorted(p.name for p in folder.iterdir()) == before
    assert len(Map.load(folder).names) == len(list((tiny_street / "database").iterdir()))
