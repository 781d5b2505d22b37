"""Second-stage re-ranking of retrieval candidates with patch descriptors: registered
re-rankers (``ransac``, ``ransac_fundamental``, ``rapid``, ``attention``), one file each."""

from edgevpr.rerank import attention, ransac, rapid  # noqa: F401  (fill the registry)
from edgevpr.rerank.registry import RERANKERS, PatchSet, Reranker, make_reranker
from edgevpr.rerank.stage import rerank_one, rerank_predictions

__all__ = ["RERANKERS", "PatchSet", "Reranker", "make_reranker", "rerank_one", "rerank_predictions"]
