import json

import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.errors import ConfigError
from edgevpr.search.advise import advise
from edgevpr.search.cost_model import (
    MatchingCostModel,
    fit_cost_model,
    max_dim_for_memory,
)

K1, K2 = 2e-7, 5e-6  # ms per dimension per image, ms per image


def _scaling(ann=()):
    exact = [{"n": n, "d": d, "ms": n * (K1 * d + K2)} for n in (1000, 10000, 100000, 300000) for d in (256, 1024)]
    return {"source": "hand-made", "exact": exact, "ann": list(ann)}


def test_fit_recovers_k1_and_k2():
    model = fit_cost_model(_scaling()["exact"])
    assert model.k1_ms == pytest.approx(K1) and model.k2_ms == pytest.approx(K2)


def test_equations_11_and_12():
    model = MatchingCostModel(K1, K2)
    d = model.max_dim_for_latency(latency_ms=30, extraction_ms=10, num_images=100_000)
    assert model.matching_ms(100_000, d) == pytest.approx(20)  # exactly uses the remaining budget
    assert max_dim_for_memory(8e6, 1000) == 2000


def test_advise_exact_when_it_fits():
    answer = advise(memory_bytes=600e6, latency_ms=40, map_size=100_000, extraction_ms=10, scaling=_scaling())
    # Memory allows 1500 dims, latency allows (30 / 1e5 - 5e-6) / 2e-7 = 1475: 1024 is the largest standard size.
    assert answer["binding"] == "latency" and answer["exact"]["dim"] == 1024
    assert answer["exact"]["database_bytes"] == 100_000 * 1024 * 4


def test_advise_falls_back_to_the_best_fitting_ann_index():
    ann = [
        {
            "index": "IVF1024,PQ64,Rerank100",
            "n": 1_000_000,
            "d": 1024,
            "memory_bytes": 80e6,
            "matching_ms": 1.0,
            "nn_recall": 0.995,
        },
        {
            "index": "IVF1024,PQ32",
            "n": 1_000_000,
            "d": 1024,
            "memory_bytes": 40e6,
            "matching_ms": 0.5,
            "nn_recall": 0.90,
        },
        {"index": "HNSW32", "n": 1_000_000, "d": 1024, "memory_bytes": 4300e6, "matching_ms": 0.3, "nn_recall": 0.999},
    ]
    answer = advise(memory_bytes=100e6, latency_ms=20, map_size=1_000_000, extraction_ms=10, scaling=_scaling(ann))
    assert answer["exact"] is None and answer["binding"] == "memory"
    assert answer["ann"]["index"] == "IVF1024,PQ64,Rerank100"  # HNSW is better but does not fit the memory
    assert answer["ann"]["recall_cost_points"] == pytest.approx(0.5)
    tight = advise(memory_bytes=10e6, latency_ms=20, map_size=1_000_000, extraction_ms=10, scaling=_scaling(ann))
    assert tight["ann"]["found"] is False


def test_advise_cli_with_scaling_file(tmp_path):
    path = tmp_path / "scaling.json"
    path.write_text(json.dumps(_scaling()))
    result = CliRunner().invoke(
        main,
        [
            "advise",
            "--memory",
            "600e6",
            "--latency-ms",
            "40",
            "--map-size",
            "100000",
            "--extraction-ms",
            "10",
            "--scaling",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "use D = 1024 with exact search" in result.output and "binding: latency" in result.output
    with pytest.raises(ConfigError):
        advise(memory_bytes=0, latency_ms=1, map_size=1)


def test_advise_weighs_binary_descriptors_with_their_own_constants():
    scaling = _scaling()
    k1_binary = K1 / 20  # Hamming distances: 1 bit per dimension, popcount over 64 at a time
    scaling["exact_bits"] = {
        "1": [{"n": n, "d": d, "ms": n * (k1_binary * d + K2)} for n in (100_000, 300_000) for d in (256, 1024)]
    }
    answer = advise(memory_bytes=20e6, latency_ms=40, map_size=100_000, scaling=scaling, descriptor_bits=(32, 1))
    rows = {row["bits"]: row for row in answer["by_bits"]}
    assert rows[32]["max_dim_memory"] == pytest.approx(50)  # 20 MB / (1e5 x 4 B): float barely fits D = 32
    assert rows[1]["max_dim_memory"] == pytest.approx(1600) and rows[1]["dim"] == 1024
    assert rows[1]["cost_model"]["k1_ms"] == pytest.approx(k1_binary)
    assert rows[1]["database_bytes"] == 100_000 * 1024 / 8
    with pytest.raises(ConfigError, match="descriptor-bits"):
        advise(memory_bytes=20e6, latency_ms=40, map_size=100_000, scaling=scaling, descriptor_bits=(4,))


def test_binary_matching_is_measured_when_no_scaling_file_has_it():
    from edgevpr.search.cost_model import measure_exact_matching

    rows = measure_exact_matching(sizes=(2000,), dims=(256,), queries=3, bits=1)
    assert rows[0]["bits"] == 1 and rows[0]["ms"] > 0


def test_advise_says_what_it_times_and_flags_a_busy_machine(monkeypatch):
    """Without --scaling, advise times exact search now: each map it times is announced, and a
    measurement taken while other processes kept the machine busy carries a warning."""
    from edgevpr import timing
    from edgevpr.search import advise as advise_module
    from edgevpr.search.advise import format_advice
    from edgevpr.search.cost_model import measure_exact_matching as measure

    heard = []
    rows = measure(sizes=(2000, 4000), dims=(32, 64), queries=3, log=heard.append)
    assert len(heard) == 4 and "map 4/4 (N = 4,000, D = 64)" in heard[-1]

    def small_grid(*args, log=None, **kwargs):
        return measure(sizes=(2000, 4000), dims=(32, 64), queries=3, log=log)

    monkeypatch.setattr(advise_module, "measure_exact_matching", small_grid)
    # maps this small time too noisily to fit k1, k2 reliably; the fit is tested above
    monkeypatch.setattr(
        advise_module, "fit_cost_model", lambda rows, source, bits: MatchingCostModel(1e-6, 1e-6, source)
    )
    monkeypatch.setattr(timing, "BUSY_CORES", -1.0)  # any load at all counts as busy
    answer = advise(1e9, 100.0, 1000, log=heard.append)
    assert answer["cost_model"]["contended"] and len(heard) == 8 and rows
    assert "warning: timed on a busy machine" in format_advice(answer)
    monkeypatch.setattr(timing, "BUSY_CORES", 1e9)
    assert "busy machine" not in format_advice(advise(1e9, 100.0, 1000))
