"""Is a change of Recall@N between two models real, or the luck of the query sample?

Both models answer the same queries, so the comparison is paired. Only the discordant queries
carry information: ``gained`` (a hit for B, a miss for A) and ``lost`` (the reverse).

- McNemar's exact test (McNemar 1947): under "no difference" each discordant query is equally
  likely to be a gain or a loss, so ``gained`` ~ Binomial(gained + lost, 1/2); the two-sided
  p-value is that binomial's.
- The 95 % paired bootstrap interval (Efron & Tibshirani 1993, percentile method) of
  R@N(B) - R@N(A): resampling the queries with replacement draws the counts of gained, lost
  and unchanged queries from Multinomial(Q; gained/Q, lost/Q, rest/Q), which is what is drawn
  here, without building the resampled query lists.

On 200 queries, 35 discordant queries give an interval about +/-6 points wide: a 1-point
recall goal cannot be told apart from a 3-point loss at that size.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from edgevpr.evaluate.recall import hits_at


def paired_recall_difference(
    ranks_a: np.ndarray, ranks_b: np.ndarray, n: int = 1, resamples: int = 10_000, seed: int = 0
) -> dict:
    """R@n of B minus R@n of A (points) on the same queries, from each query's first-positive
    rank (``recall.first_positive_ranks``), with its discordant counts, McNemar p-value and
    95 % paired bootstrap interval."""
    ranks_a, ranks_b = np.asarray(ranks_a), np.asarray(ranks_b)
    if ranks_a.shape != ranks_b.shape or ranks_a.ndim != 1 or not len(ranks_a):
        raise ValueError(f"need one rank per query for both models, got shapes {ranks_a.shape} and {ranks_b.shape}")
    hit_a, hit_b = hits_at(ranks_a, n), hits_at(ranks_b, n)
    queries = len(hit_a)
    gained, lost = int(np.sum(hit_b & ~hit_a)), int(np.sum(hit_a & ~hit_b))
    draws = np.random.default_rng(seed).multinomial(
        queries, [gained / queries, lost / queries, 1 - (gained + lost) / queries], size=resamples
    )
    differences = 100.0 * (draws[:, 0] - draws[:, 1]) / queries
    p_value = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
    return {
        "n": n,
        "queries": queries,
        "difference": 100.0 * (gained - lost) / queries,
        "gained": gained,
        "lost": lost,
        "mcnemar_p": float(p_value),
        "ci95": [float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))],
    }
