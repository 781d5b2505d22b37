"""Precision-recall of the top-1 match, as VPR-Bench defines it (Zaffar et al. 2021): each
query's best database match is accepted when its similarity reaches a threshold; it is a true
positive when it is one of the query's positives. Sweeping the threshold gives the
precision-recall curve (recall relative to the queries whose top-1 match is correct, as
VPR-Bench's use of scikit-learn's ``precision_recall_curve`` has it), and from it:

- ``auc_pr``: the area under that curve (trapezoids, ``sklearn.metrics.auc``);
- ``recall_at_100_precision``: the largest recall at which precision is still 1;
- ``extended_precision`` (EP): (P_R0 + R_P100) / 2, P_R0 the precision at the lowest recall
  (the most confident match alone) and R_P100 the recall at 100 % precision;
- ``map_at``: mean average precision at K over the ranked lists (each query's AP@K is the mean
  of precision@k over the ranks k <= K that hold a positive, divided by min(K, its positives)).
"""

from __future__ import annotations

import numpy as np

CURVE_POINTS = 201  # the curve saved in the result, resampled on this many recall levels


def top1_precision_recall(scores: np.ndarray, correct: np.ndarray) -> dict:
    """PR metrics of top-1 matches with similarities ``scores`` and correctness ``correct``."""
    from sklearn.metrics import auc, precision_recall_curve

    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    if not correct.any():
        return {
            "auc_pr": 0.0,
            "recall_at_100_precision": 0.0,
            "extended_precision": 0.0,
            "pr_curve": {"recall": [0.0], "precision": [0.0]},
        }
    if correct.all():
        precision, recall = np.array([1.0, 1.0]), np.array([1.0, 0.0])
    else:
        precision, recall, _ = precision_recall_curve(correct, scores)
    at_full = recall[precision >= 1.0 - 1e-12]
    r_p100 = float(at_full.max()) if at_full.size else 0.0
    p_r0 = float(correct[scores == scores.max()].mean())  # precision at the highest threshold
    order = np.argsort(recall)
    levels = np.linspace(0, 1, CURVE_POINTS)
    curve = np.interp(levels, recall[order], precision[order])
    return {
        "auc_pr": round(float(auc(recall, precision)), 6),
        "recall_at_100_precision": round(r_p100, 6),
        "extended_precision": round((p_r0 + (r_p100 if p_r0 >= 1.0 else 0.0)) / 2, 6),
        "pr_curve": {"recall": [round(v, 4) for v in levels], "precision": [round(float(v), 4) for v in curve]},
    }


def mean_average_precision(predictions: np.ndarray, positives: list[np.ndarray], k: int) -> float:
    """mAP@k (percent) over the queries that have positives."""
    values = []
    for row, truth in zip(predictions, positives):
        if len(truth) == 0:
            continue
        hits = np.isin(row[:k], truth)
        if not hits.any():
            values.append(0.0)
            continue
        precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        values.append(float((precision_at * hits).sum() / min(k, len(truth))))
    return round(100.0 * float(np.mean(values)), 4) if values else 0.0


def metrics_block(scores: np.ndarray, predictions: np.ndarray, positives: list[np.ndarray], ks=(1, 5, 10)) -> dict:
    """The result's ``metrics``: top-1 precision-recall and mAP@k for each k that fits."""
    top1 = predictions[:, 0]
    correct = np.array([len(p) > 0 and t in p for t, p in zip(top1, positives)])
    block = top1_precision_recall(scores[:, 0], correct)
    block["map_at"] = {
        str(k): mean_average_precision(predictions, positives, k) for k in ks if k <= predictions.shape[1]
    }
    return block


def plot_pr_curve(block: dict, path, title: str) -> None:
    """The curve as a PNG (written atomically), its summary numbers in the title."""
    from edgevpr.charts import curve

    summary = (
        f"AUC-PR {block['auc_pr']:.3f}, R@100%P {block['recall_at_100_precision']:.3f}, "
        f"EP {block['extended_precision']:.3f}"
    )
    curve(
        block["pr_curve"]["recall"],
        block["pr_curve"]["precision"],
        path,
        f"{title}\n{summary}",
        "recall",
        "precision",
    )
