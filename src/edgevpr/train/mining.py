"""Negative mining for triplet batches (Berton et al. 2022 Table 6).

Every ``refresh_every`` triplets a cache of descriptors is computed with the current model
(in eval mode, no gradients); each query of the round gets its best positive (the most
similar of its candidate positives) and ``negatives`` negatives:

- ``random``: negatives drawn at random beyond the negative threshold; the cache holds only
  the round's queries and their candidate positives.
- ``full``: the hardest negatives of the whole database; the cache holds every database image.
- ``partial``: the hardest negatives among ``cache_database`` (k_db) database images drawn at
  random; the cache holds those, the round's queries (k_q = ``refresh_every``) and their
  positives.

``CacheCost`` reports what each cache took: images encoded, seconds and bytes of descriptors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgevpr.data.train_sets import TripletSet
from edgevpr.errors import ConfigError

MINERS = ("random", "full", "partial")

# describe(database_indices, query_indices) -> (database descriptors, query descriptors)
Describe = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Triplet:
    query: int
    positive: int
    negatives: tuple[int, ...]


@dataclass(frozen=True)
class CacheCost:
    images: int
    seconds: float
    bytes: int


def _random_negatives(rng, size: int, excluded: np.ndarray, count: int) -> np.ndarray:
    allowed = np.setdiff1d(np.arange(size), excluded, assume_unique=False)
    return rng.choice(allowed, size=count, replace=False)


class Miner:
    def __init__(self, strategy: str, triplets: TripletSet, negatives: int, cache_database: int = 1000):
        if strategy not in MINERS:
            raise ConfigError(f"unknown train.miner {strategy!r} for triplet data; choose {', '.join(MINERS)}")
        if negatives < 1 or cache_database < negatives:
            raise ConfigError(
                f"train.negatives ({negatives}) must be >= 1 and <= train.cache_database ({cache_database})"
            )
        self.strategy, self.data, self.negatives, self.cache_database = strategy, triplets, negatives, cache_database

    def _database_cache(self, queries: np.ndarray, rng) -> np.ndarray:
        size = len(self.data.database_paths)
        positives = np.concatenate([self.data.positives[q] for q in queries])
        if self.strategy == "full":
            return np.arange(size)
        if self.strategy == "partial":
            sample = rng.choice(size, size=min(self.cache_database, size), replace=False)
            return np.union1d(sample, positives)
        return np.unique(positives)

    def mine(
        self, queries: np.ndarray, describe: Describe, rng: np.random.Generator
    ) -> tuple[list[Triplet], CacheCost]:
        """Triplets for ``queries`` (in their order), from a cache built with ``describe``."""
        started = time.perf_counter()
        cached = self._database_cache(queries, rng)
        database, query_descriptors = describe(cached, queries)
        cost = CacheCost(
            len(cached) + len(queries), time.perf_counter() - started, int(database.nbytes + query_descriptors.nbytes)
        )
        position = np.full(len(self.data.database_paths), -1, dtype=np.int64)
        position[cached] = np.arange(len(cached))
        similarity = query_descriptors @ database.T  # (Q, cached)
        triplets = []
        for row, query in enumerate(queries):
            candidates = self.data.positives[query]
            positive = int(candidates[np.argmax(similarity[row, position[candidates]])])
            excluded = self.data.non_negatives[query]
            if self.strategy == "random":
                negatives = _random_negatives(rng, len(self.data.database_paths), excluded, self.negatives)
            else:
                scores = similarity[row].copy()
                scores[position[excluded][position[excluded] >= 0]] = -np.inf
                hardest = np.argsort(-scores, kind="stable")[: self.negatives]
                hardest = hardest[np.isfinite(scores[hardest])]
                negatives = cached[hardest]
                if len(negatives) < self.negatives:  # too few valid negatives in the cache
                    extra = _random_negatives(
                        rng,
                        len(self.data.database_paths),
                        np.union1d(excluded, negatives),
                        self.negatives - len(negatives),
                    )
                    negatives = np.concatenate([negatives, extra])
            triplets.append(Triplet(int(query), positive, tuple(int(n) for n in negatives)))
        return triplets, cost
