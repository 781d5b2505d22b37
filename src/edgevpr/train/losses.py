"""Metric-learning losses.

Triplet losses take L2-normalised descriptors of queries (B, D), their best positives (B, D)
and negatives (B, N, D), sum the hinge over the N negatives (NetVLAD's weakly supervised
ranking loss) and average over the B triplets:

- ``triplet_l2`` (Gong et al. 2021 Eq. 7): sum_n max(0, ||q - p||^2 - ||q - n||^2 + m), m = 0.1.
- ``triplet_cosine`` (Grainge et al. 2024 Eq. 1): sum_n max(0, alpha - cos(q, p) + cos(q, n)).

Training-aware binarisation (``train.binary_weight`` W > 0): the same triplet loss is added,
times W, on sign codes of the descriptors centred on a running mean, sign(x - mu) / sqrt(D),
whose gradient passes straight through the sign (Bengio et al. 2013's straight-through
estimator), so that the descriptors a binary map keeps (``search.binary_codes``) are trained.

Any other name is a loss class of pytorch-metric-learning (for example ``MultiSimilarityLoss``),
used on P x K batches of labelled embeddings.
"""

from __future__ import annotations

import inspect

import torch

from edgevpr.errors import ConfigError

TRIPLET_LOSSES = ("triplet_l2", "triplet_cosine")


def triplet_l2(query, positive, negatives, margin: float = 0.1) -> torch.Tensor:
    d_pos = (query - positive).pow(2).sum(-1, keepdim=True)  # (B, 1)
    d_neg = (query.unsqueeze(1) - negatives).pow(2).sum(-1)  # (B, N)
    return torch.relu(d_pos - d_neg + margin).sum(1).mean()


def triplet_cosine(query, positive, negatives, margin: float = 0.1) -> torch.Tensor:
    s_pos = (query * positive).sum(-1, keepdim=True)
    s_neg = torch.einsum("bd,bnd->bn", query, negatives)
    return torch.relu(margin - s_pos + s_neg).sum(1).mean()


def straight_through_codes(descriptors: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """sign(x - centre) / sqrt(D) forward, identity backward (unit-norm codes, like descriptors)."""
    centred = descriptors - centre
    codes = centred + (torch.sign(centred) - centred).detach()
    return codes / descriptors.shape[-1] ** 0.5


def triplet_loss(name: str):
    if name == "triplet_l2":
        return triplet_l2
    if name == "triplet_cosine":
        return triplet_cosine
    _metric_learning_class("losses", name, "loss")  # an unknown name fails here
    raise ConfigError(
        f"train.loss {name!r} is a pytorch-metric-learning loss: it needs place-grouped data "
        f"(train.places); triplet data takes {', '.join(TRIPLET_LOSSES)}"
    )


def _metric_learning_class(module_name: str, name: str, kind: str):
    try:
        module = __import__(f"pytorch_metric_learning.{module_name}", fromlist=[name])
    except ImportError:
        raise ConfigError(
            f"train.{kind} {name!r} needs pytorch-metric-learning (pip install pytorch-metric-learning)"
        ) from None
    cls = getattr(module, name, None)
    if not inspect.isclass(cls):
        known = sorted(n for n in dir(module) if n[0].isupper() and n.endswith(kind.capitalize()))
        raise ConfigError(
            f"unknown train.{kind} {name!r}; ours: {', '.join(TRIPLET_LOSSES) if kind == 'loss' else 'none'}; "
            f"pytorch-metric-learning's: {', '.join(known)}"
        )
    return cls


def metric_learning_loss(name: str, margin: float | None = None):
    """A pytorch-metric-learning loss by class name; ``margin`` is passed where the class takes one."""
    if name in TRIPLET_LOSSES:
        raise ConfigError(
            f"train.loss {name!r} needs triplet data (train.dataset or train.database + train.queries), "
            f"not place-grouped batches; use e.g. TripletMarginLoss or MultiSimilarityLoss"
        )
    cls = _metric_learning_class("losses", name, "loss")
    kwargs = {"margin": margin} if margin is not None and "margin" in inspect.signature(cls).parameters else {}
    return cls(**kwargs)


def metric_learning_miner(name: str | None):
    if name in (None, "", "none"):
        return None
    return _metric_learning_class("miners", name, "miner")()
