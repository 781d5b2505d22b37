"""The re-rankers of the second stage, by name (``edgevpr list`` shows them).

A re-ranker scores a query against candidate database images from their patch descriptors
and positions (``extraction.patches``): ``score(query, candidates) -> (K,) scores``, higher is
better. ``PatchSet`` holds one image's patches (n_P, D) and their centres (n_P, 2) in feature
cells, with the patch stride that sets geometric tolerances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevpr.registry import Registry

RERANKERS = Registry("re-ranker")


@dataclass
class PatchSet:
    patches: np.ndarray  # (n_P, D), L2-normalised rows
    positions: np.ndarray  # (n_P, 2) patch centres (x, y) in feature cells
    stride: int = 1
    extent: tuple[int, int] = (1, 1)  # the feature map's (width, height), to normalise positions


class Reranker:
    """Base class: ``needs_matcher`` re-rankers take a trained file (``--matcher``) as their
    constructor's argument; the others take none."""

    needs_matcher = False

    def score(self, query: PatchSet, candidates: list[PatchSet]) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, database: list[PatchSet]) -> None:
        """Work that depends on the map's images only, done once when the map is loaded."""

    def describe(self) -> dict:
        return {}


def make_reranker(name: str, matcher: str | None = None) -> Reranker:
    """The re-ranker ``name``, with its matcher file when it needs one."""
    from edgevpr.errors import ConfigError

    kind = RERANKERS.get(name)
    if kind.needs_matcher:
        if not matcher and getattr(kind, "untrained_default", False):
            return kind(None)
        if not matcher:
            raise ConfigError(f"--rerank {name} needs --matcher FILE (from `edgevpr train-matcher`)")
        return kind(matcher)
    if matcher:
        raise ConfigError(f"--matcher applies to a trained re-ranker, not --rerank {name}")
    return kind()
