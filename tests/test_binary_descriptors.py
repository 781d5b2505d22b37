"""Compact descriptors: fp16/int8 storage, binary codes (ITQ and random rotations), Hamming
search, re-ranking of the binary shortlist, saving, and the eval options."""

import json

import faiss
import numpy as np
import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.errors import ConfigError
from edgevpr.search.binary_codes import BinaryCodec, fit_codec, hamming, similarity
from edgevpr.search.descriptor_bits import storage_spec
from edgevpr.search.index import build_index, search_codes
from edgevpr.search.store import load_index, save_index


def _unit(rng, n, d, clusters=20):
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, d))
    x += 2.0  # an offset, as post-ReLU pooled features have: codes must be centred
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_hamming_matches_a_hand_count_and_faiss():
    a = np.array([[0b10110000, 0b00000001]], dtype=np.uint8)
    b = np.array([[0b00110001, 0b00000001], [0b01001111, 0b11111110]], dtype=np.uint8)
    assert hamming(a, b).tolist() == [[2, 16]]  # 1xxx...1 differ in 2 bits; b[1] is a's complement
    index = faiss.IndexBinaryFlat(16)
    index.add(b)
    scores, ids = search_codes(index, a, 2)
    assert ids.tolist() == [[0, 1]] and scores[0].tolist() == pytest.approx([1 - 2 * 2 / 16, -1.0])
    assert similarity(np.array([0, 8, 16]), 16).tolist() == [1.0, 0.0, -1.0]


@pytest.mark.parametrize("method", ["itq", "random"])
def test_rotations_are_orthonormal(method):
    x = _unit(np.random.default_rng(0), 400, 32)
    codec = fit_codec(x, 32, method)
    assert np.allclose(codec.rotation.T @ codec.rotation, np.eye(32), atol=1e-5)
    half = fit_codec(x, 16, method)
    assert half.rotation.shape == (32, 16) and np.allclose(half.rotation.T @ half.rotation, np.eye(16), atol=1e-5)
    assert half.encode(x).shape == (400, 2) and half.encode(x).dtype == np.uint8


def test_itq_lowers_the_quantization_loss_of_a_random_rotation():
    """Gong and Lazebnik's Eq. 2, ||sgn(VR) - VR||_F, on the data it was fitted on."""
    x = _unit(np.random.default_rng(1), 2000, 32)

    def loss(codec):
        v = (x - codec.mean) @ codec.rotation
        return float(np.linalg.norm(np.sign(v) * np.abs(v).mean() - v))

    assert loss(fit_codec(x, 32, "itq")) < loss(fit_codec(x, 32, "random"))


def test_binary_codes_keep_neighbours_and_reranking_is_never_worse_than_its_shortlist():
    rng = np.random.default_rng(2)
    database, fit = _unit(rng, 2000, 64), _unit(rng, 1000, 64)
    queries = database[:50] + 0.01 * rng.standard_normal((50, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    codec = fit_codec(fit, 64, "itq")
    binary = build_index(database, "BFlat", codec=codec)
    reranked = build_index(database, "BFlat,Rerank50", codec=codec)
    _, shortlist = binary.search(queries, 50)
    scores, ids = reranked.search(queries, 5)
    exact = np.einsum("qd,qkd->qk", queries, database[shortlist])
    for q in range(50):
        assert set(ids[q]) <= set(shortlist[q]) and len(set(ids[q])) == 5  # from the shortlist, once each
        assert scores[q, 0] == pytest.approx(exact[q].max(), abs=1e-5)  # the shortlist's best, exactly
        assert scores[q, 0] >= exact[q, 0] - 1e-6  # never below the binary top-1's float score
    _, truth = build_index(database, "Flat").search(queries, 1)
    assert np.mean(ids[:, 0] == truth[:, 0]) >= 0.9  # binary shortlist + float re-ranking finds the exact top-1
    with pytest.raises(ConfigError, match="packed uint8 codes"):
        search_codes(binary.index, queries, 5)
    with pytest.raises(ConfigError, match="codes of 32 bits given to a binary index of 64 bits"):
        search_codes(binary.index, codec.encode(queries)[:, :4], 5)
    with pytest.raises(ConfigError, match="descriptor-fit"):
        build_index(database, "BFlat")


def test_binary_index_saves_with_its_codec(tmp_path):
    rng = np.random.default_rng(3)
    database = _unit(rng, 3000, 64)
    codec = fit_codec(_unit(rng, 500, 64), 64, "random")
    index = build_index(database, "BIVF16,Rerank20", codec=codec, params="nprobe=4")
    save_index(index, tmp_path / "map.faiss")
    loaded = load_index(tmp_path / "map.faiss", dim=64)
    assert isinstance(loaded.codec, BinaryCodec) and loaded.params == "nprobe=4" and loaded.dim == 64
    a, b = index.search(database[:10], 3), loaded.search(database[:10], 3)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    # 8 bytes of code and 8 of id per entry (inverted lists), the codec's rotation, not 256 bytes of floats
    assert loaded.memory_bytes() <= 3000 * (8 + 8) + codec.nbytes + 1024


def test_storage_specs_per_bit_count():
    assert str(storage_spec("Flat", 16)) == "SQfp16" and str(storage_spec("Flat", 8)) == "SQ8"
    assert str(storage_spec("IVF64,Flat,Rerank10", 8, "global")) == "IVF64,SQ8uniform,Rerank10"
    assert str(storage_spec("HNSW32", 1)) == "BHNSW32" and str(storage_spec("Flat,Rerank100", 1)) == "BFlat,Rerank100"
    assert str(storage_spec("BFlat,Rerank100", 32)) == "BFlat,Rerank100"
    with pytest.raises(ConfigError, match="holds binary codes"):
        storage_spec("BFlat", 8)
    with pytest.raises(ConfigError, match="compresses them already"):
        storage_spec("IVF64,PQ16", 8)


@pytest.mark.parametrize("bits,scale", [(16, "dimension"), (8, "dimension"), (8, "global")])
def test_low_precision_storage_keeps_neighbours_and_shrinks_the_map(bits, scale):
    rng = np.random.default_rng(4)
    database = _unit(rng, 2000, 64)
    exact = build_index(database, "Flat")
    stored = build_index(database, storage_spec("Flat", bits, scale))
    _, a = exact.search(database[:100], 1)
    _, b = stored.search(database[:100], 1)
    assert np.mean(a[:, 0] == b[:, 0]) >= 0.95
    assert stored.memory_bytes() < database.nbytes * (bits / 32) * 1.1


def test_eval_with_binary_descriptors(tmp_path, tiny_street, training_street):
    out = tmp_path / "r.json"
    base = ["eval", "--backbone", "squeezenet", "--dataset", str(tiny_street), "--latency-runs", "20"]
    fit = str(training_street / "train" / "database")
    result = CliRunner().invoke(
        main, base + ["--descriptor-bits", "1", "--index", "BFlat,Rerank10", "--descriptor-fit", fit, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["search"]["descriptor_bits"] == 1 and saved["search"]["index"] == "BFlat,Rerank10"
    assert saved["protocol"]["descriptor_codec"]["fitted_on"] == fit
    dim, n = saved["model"]["descriptor_dim"], saved["protocol"]["num_database"]
    assert n * dim // 8 <= saved["cost"]["database_bytes"] < n * dim // 8 + 2 * dim * dim * 4 + 4096
    missing = CliRunner().invoke(main, base + ["--descriptor-bits", "1"])
    assert missing.exit_code == 1 and "needs --descriptor-fit DIR" in missing.output
    same = CliRunner().invoke(
        main, base + ["--descriptor-bits", "1", "--descriptor-fit", str(tiny_street / "database")]
    )
    assert same.exit_code == 1 and "holds the indexed images" in same.output


def test_a_binary_map_localizes_and_keeps_its_codec_when_images_are_added(tmp_path, tiny_street, training_street):
    from edgevpr.config import load_config
    from edgevpr.maps import Map, ModelSource

    source = ModelSource(
        config=load_config(overrides={"model": {"backbone": "squeezenet"}, "data": {"size": (72, 96)}})
    )
    images = sorted((tiny_street / "database").iterdir())
    first = tmp_path / "first"
    first.mkdir()
    for path in images[:20]:
        (first / path.name).symlink_to(path)
    built = Map.build(
        source,
        first,
        tmp_path / "map",
        index="Flat,Rerank5",
        descriptor_bits=1,
        descriptor_fit=str(training_street / "train" / "database"),
    )
    assert built.manifest["index"]["spec"] == "BFlat,Rerank5" and built.manifest["index"]["descriptor_bits"] == 1
    answer = built.localize(images[3])
    assert answer["matches"][0]["name"] == images[3].name
    rest = tmp_path / "rest"
    rest.mkdir()
    for path in images[20:]:
        (rest / path.name).symlink_to(path)
    grown = Map.load(tmp_path / "map").add(rest)
    reloaded = Map.load(tmp_path / "map")
    assert reloaded.index.ntotal == len(images) and np.array_equal(
        reloaded.index.codec.rotation, built.index.codec.rotation
    )
    assert reloaded.localize(images[25])["matches"][0]["name"] == images[25].name
    assert grown.info()["index_memory_bytes"] < len(images) * built.index.dim * 4 / 8 + built.index.codec.nbytes + 4096
    with pytest.raises(ConfigError, match="descriptor-fit"):
        Map.build(source, first, tmp_path / "map2", descriptor_bits=1)


def test_a_sweep_treats_descriptor_bits_as_an_axis(tmp_path, tiny_street, training_street):
    import yaml

    from edgevpr.explore.pareto import device_bytes_at
    from edgevpr.explore.store import Store

    spec = {
        "name": "bits",
        "base": {
            "model": {"backbone": "squeezenet"},
            "data": {"dataset": str(tiny_street), "resize": 72},
            "eval": {"latency_runs": 20, "threads": 1, "descriptor_fit": str(training_street / "train" / "database")},
        },
        "grid": {"descriptor_bits": [32, 8, 1]},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["sweep", str(path), "--store", str(tmp_path / "runs.db")])
    assert result.exit_code == 0, result.output
    rows = {row["descriptor_bits"]: row for row in Store(tmp_path / "runs.db").rows()}
    assert set(rows) == {32, 8, 1} and rows[1]["index_spec"] == "BFlat" and rows[8]["index_spec"] == "SQ8"
    per_entry = {bits: rows[bits]["database_bytes"] / rows[bits]["num_database"] for bits in rows}
    dim = rows[32]["descriptor_dim"]
    assert per_entry[32] == dim * 4 and per_entry[8] == pytest.approx(dim, rel=0.05)
    assert per_entry[1] == pytest.approx(dim / 8, rel=0.05)  # the codec is a fixed cost, not per entry
    assert rows[1]["index_fixed_bytes"] > 0 and rows[32]["index_fixed_bytes"] == 0
    at_million = {bits: device_bytes_at(rows[bits], 1_000_000) for bits in rows}
    assert at_million[1] < at_million[8] < at_million[32]
    report = CliRunner().invoke(
        main,
        [
            "recommend",
            "--store",
            str(tmp_path / "runs.db"),
            "--memory",
            "2e9",
            "--latency-ms",
            "1e4",
            "--map-size",
            "1000000",
        ],
    )
    assert report.exit_code == 0, report.output
