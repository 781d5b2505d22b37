import io

import numpy as np
import pytest
import torch

from edgevpr.evaluate.cost import cost_block, time_torch_extraction
from edgevpr.evaluate.recall import recall_at_n
from edgevpr.models.size import count_flops, count_params, serialized_bytes
from edgevpr.search.index import build_index, search
from edgevpr.search.timing import database_bytes, time_matching


def test_recall_on_a_hand_made_case():
    predictions = np.array([[3, 1, 2], [0, 4, 5], [9, 8, 7], [6, 2, 1]])
    positives = [np.array([3]), np.array([5]), np.array([]), np.array([1, 2])]
    # Query 0 hit at rank 1, query 1 at rank 3, query 2 never (no positive), query 3 at rank 2.
    assert recall_at_n(predictions, positives, ns=(1, 2, 3)) == {"1": 25.0, "2": 50.0, "3": 75.0}


def test_exact_search_finds_known_neighbours():
    rng = np.random.default_rng(0)
    database = rng.normal(size=(50, 16)).astype(np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    queries = database[[7, 21]] + 0.01 * rng.normal(size=(2, 16)).astype(np.float32)
    _, indices = search(build_index(database), queries, k=100)
    assert indices.shape == (2, 50) and indices[:, 0].tolist() == [7, 21]
    positives = [np.array([7]), np.array([3])]
    assert recall_at_n(indices, positives, ns=(1, 50))["1"] == 50.0


def test_cost_block_measures_what_it_says():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10)
    )
    assert count_params(model) == 3 * 8 * 9 + 8 * 36 * 10 + 10
    # conv: 2 * (8*6*6 outputs) * (3*3*3 MACs); linear: 2 * 288 * 10.
    assert count_flops(model, (1, 3, 8, 8)) == 2 * 8 * 36 * 27 + 2 * 288 * 10
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert serialized_bytes(model) == len(buffer.getvalue())
    timing = time_torch_extraction(model, (1, 3, 8, 8), runs=5)
    assert timing["runs"] == 5 and 0 < timing["median_ms"] <= timing["p90_ms"] and timing["threads"] >= 1
    database = np.eye(10, dtype=np.float32)
    matching = time_matching(build_index(database), database[:3], k=5)
    assert matching["runs"] == 20 and matching["median_ms"] > 0

    block = cost_block(
        params=1, flops=2, model_bytes=3, extraction=timing, matching=matching, database_size=database_bytes(10, 10)
    )
    assert block["database_bytes"] == 400
    assert block["total_ms"] == pytest.approx(block["extraction_ms"] + block["matching_ms"])
    assert set(block) >= {
        "params",
        "flops",
        "model_bytes",
        "extraction_ms",
        "matching_ms",
        "database_bytes",
        "total_ms",
    }


class _Attention(torch.nn.Module):
    def forward(self, tokens):
        return torch.nn.functional.scaled_dot_product_attention(tokens, tokens, tokens)


def test_flop_count_includes_fused_attention_on_cpu():
    heads, length, width = 6, 50, 64  # Q K^T and (softmax) V: 2 matmuls of length x length x width MACs
    assert count_flops(_Attention(), (1, heads, length, width)) == 2 * 2 * heads * length * length * width


def test_recall_and_map_are_rounded_for_the_reader():
    """7 of 50 queries is 14.0, not 14.000000000000002; mAP likewise."""
    import numpy as np

    from edgevpr.evaluate.pr import mean_average_precision
    from edgevpr.evaluate.recall import recall_from_ranks

    ranks = np.array([0] * 7 + [-1] * 43)
    assert recall_from_ranks(ranks, (1,)) == {"1": 14.0} and repr(recall_from_ranks(ranks, (1,))["1"]) == "14.0"
    predictions = np.array([[0, 1, 2]] * 3)
    positives = [np.array([1]), np.array([5]), np.array([5])]
    assert repr(mean_average_precision(predictions, positives, 3)) == "16.6667"
