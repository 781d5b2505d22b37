"""Aggregators that start from the data: NetVLAD-style cluster centres from k-means on local
features of images (Arandjelovic et al. 2016, Section 3.1).

The protocol an aggregator follows to take part (see ``models.registry``): it defines
``init_from_features(features: (N, C) array, seed)`` and a boolean buffer ``initialised``,
saved in its state dict, so that a loaded or trained model is never initialised again.
"""

from __future__ import annotations

from edgevpr.config import DEFAULT_MAX_PIXELS
from edgevpr.extraction.extract import sample_local_features


def needs_initialisation(model) -> bool:
    aggregator = model.aggregator
    return hasattr(aggregator, "init_from_features") and not bool(aggregator.initialised)


def initialise_aggregator(model, paths, preprocess, seed: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """NetVLAD-style aggregators start from k-means on local features of ``paths``."""
    if needs_initialisation(model):
        features = sample_local_features(model.backbone, paths, preprocess, seed=seed, max_pixels=max_pixels)
        model.aggregator.init_from_features(features, seed=seed)
