"""Bad input of every kind: each case must end with exit status 1 and one line that names the
file or option at fault, never a traceback; and properties of the parsers over arbitrary input
(hypothesis): they accept or refuse with edgevpr's own error, nothing else."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevpr.cli import main
from edgevpr.config import load_config
from edgevpr.contract import InputContract
from edgevpr.data.folder_format import parse_utm
from edgevpr.errors import EdgeVPRError
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
    return root


def _eval(*args):
    return ["eval", *MODEL, *args]


CASES = {  # kind -> (argv with {root} for the fixture folder, text the one line must contain)
    "gem p zero": (_eval("--dataset", "{root}/street", "--gem-p", "0"), "model.gem_p must be > 0"),
    "gem p nan": (_eval("--dataset", "{root}/street", "--gem-p", "nan"), "model.gem_p must be a finite number"),
    "batch size zero": (_eval("--dataset", "{root}/street", "--batch-size", "0"), "eval.batch_size must be >= 1"),
    "workers negative": (_eval("--dataset", "{root}/street", "--workers", "-1"), "eval.workers must be >= 0"),
    "latency runs below 20": (_eval("--dataset", "{root}/street", "--latency-runs", "5"), "eval.latency_runs"),
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
        "model.clusters must be >= 1",
    ),
    "dim zero": (_eval("--dataset", "{root}/street", "--dim", "0"), "model.dim must be >= 1"),
    "threshold negative": (_eval("--dataset", "{root}/street", "--threshold-m", "-1"), "data.threshold_m must be > 0"),
    "tolerance negative": (
        _eval("--database", "{root}/frames1", "--queries", "{root}/frames1", "--tolerance-frames", "-1"),
        "data.tolerance_frames must be >= 0",
    ),
    "recall at zero": (_eval("--dataset", "{root}/street", "--recall-at", "0"), "eval.recall_at must be >= 1"),
    "sequence zero": (_eval("--dataset", "{root}/street", "--sequence", "0"), "eval.sequence must be >= 1"),
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
    assert len(CASES) >= 45


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
