import numpy as np
import pytest

from edgevpr.evaluate.recall import NO_POSITIVE, first_positive_ranks
from edgevpr.evaluate.significance import paired_recall_difference


def test_first_positive_ranks_on_a_hand_made_case():
    predictions = np.array([[3, 1, 2], [0, 4, 5], [9, 8, 7]])
    positives = [np.array([1]), np.array([0, 5]), np.array([])]
    assert first_positive_ranks(predictions, positives).tolist() == [1, 0, NO_POSITIVE]


def test_counts_only_the_discordant_queries_and_tests_them_exactly():
    a = np.array([0] * 10 + [NO_POSITIVE] * 5 + [3] * 5)  # R@1 hits: the first 10
    b = np.array([0] * 10 + [0] * 5 + [NO_POSITIVE] * 5)  # 5 queries gained, none lost
    result = paired_recall_difference(a, b, n=1)
    assert (result["gained"], result["lost"], result["queries"]) == (5, 0, 20)
    assert result["difference"] == pytest.approx(25.0)
    assert result["mcnemar_p"] == pytest.approx(2 / 2**5)  # both tails of Binomial(5, 1/2) at 0 and 5
    low, high = result["ci95"]
    assert 0.0 <= low < 25.0 < high <= 50.0
    at_5 = paired_recall_difference(a, b, n=5)  # rank 3 is a hit at 5: then A loses nothing, B gains 5, loses 5
    assert (at_5["gained"], at_5["lost"], at_5["difference"], at_5["mcnemar_p"]) == (5, 5, 0.0, 1.0)


def test_identical_models_differ_by_nothing():
    ranks = np.random.default_rng(0).integers(-1, 10, size=300)
    result = paired_recall_difference(ranks, ranks)
    assert result["difference"] == 0.0 and result["ci95"] == [0.0, 0.0] and result["mcnemar_p"] == 1.0


def test_interval_width_follows_the_discordant_count():
    rng = np.random.default_rng(1)
    a = np.zeros(200, dtype=int)
    b = a.copy()
    b[rng.choice(200, 35, replace=False)] = NO_POSITIVE  # 35 lost queries
    low, high = paired_recall_difference(a, b, seed=3)["ci95"]
    assert high - low == pytest.approx(2 * 1.96 * 100 * np.sqrt(35 / 200 * (1 - 35 / 200) / 200), rel=0.15)
    large = paired_recall_difference(np.zeros(5000, dtype=int), np.full(5000, NO_POSITIVE))
    assert large["mcnemar_p"] < 1e-300 or large["mcnemar_p"] == 0.0


def test_rejects_unpaired_inputs():
    with pytest.raises(ValueError, match="one rank per query"):
        paired_recall_difference(np.zeros(3), np.zeros(4))


def test_compare_precisions_table_shows_the_paired_change():
    from edgevpr.evaluate.precisions import format_rows

    row = {
        "precision": "int8",
        "target": "cpu",
        "calibration": "percentile",
        "runtime": "onnxruntime",
        "recall": {"1": 51.5, "5": 83.5, "10": 92.0},
        "model_bytes": 2_436_694,
        "extraction_ms": 7.7,
        "mean_cosine_to_fp32": 0.9926,
        "r1_vs_fp32": paired_recall_difference(np.array([0, 0, 1, -1]), np.array([0, 1, 0, 0])),
    }
    reference = row | {"precision": "fp32", "target": None, "calibration": None, "runtime": "pytorch"}
    del reference["r1_vs_fp32"]
    lines = format_rows([reference, row]).splitlines()
    assert lines[0].endswith("R@1 vs fp32: +q/-q, p")
    assert lines[2].endswith(" -") and lines[3].endswith("+2/-1, p 1.00")
