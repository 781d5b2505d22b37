"""``edgevpr train-matcher``: the attention matcher (``rerank.matcher``) trained on the
first stage's triplet sets (``data.train_sets``: the same folders, positive and negative rules).

Patches come from the frozen first-stage model (``extraction.patches``), extracted once and
kept in the run folder. For each training query: its best positive (highest global similarity
among the candidate positives, as NetVLAD picks it) and its hardest negatives by global
similarity (full mining). The datasets here have no camera geometry, so a positive pair's
correspondences are its mutual nearest neighbours that RANSAC accepts (homography, Patch-
NetVLAD's threshold); the other patches of the pair, and every patch of a negative pair, belong
to the dustbin. Loss: SuperGlue's negative log-likelihood of that assignment, plus
``ranking_weight`` times a hinge that ranks the positive pair's image score above the negative's.
By default the matcher starts from the raw patches' similarity (``rerank.matcher``'s prior).

Validation holds out the last fifth of the queries (for frame-aligned traversals, later places):
the share of them whose positive outscores all of its hard negatives, beside the same share for
``ransac`` on the same pairs; ties are broken by the mean margin of the positive over the best
negative. The matcher before training is the first candidate, and the best one is kept; the
run resumes from its last epoch."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from edgevpr.atomic import atomic_path, write_json
from edgevpr.config import RunConfig
from edgevpr.data.train_sets import load_triplet_set
from edgevpr.errors import ConfigError
from edgevpr.extraction.extract import extract
from edgevpr.extraction.patches import PatchModel, PatchSpec
from edgevpr.models import build_model
from edgevpr.models.initialise import initialise_aggregator
from edgevpr.models.resolve import contract_of, resolve_config
from edgevpr.progress import Progress
from edgevpr.rerank.attention import patch_tensors
from edgevpr.rerank.matcher import AttentionMatcher, nll_loss, ranking_loss
from edgevpr.rerank.matcher_file import save_matcher
from edgevpr.rerank.mutual import mutual_matches
from edgevpr.rerank.ransac import THRESHOLD_STRIDES, RansacReranker, inlier_mask
from edgevpr.rerank.registry import PatchSet

HARD_NEGATIVES = 5
# the train fields that say which images a set holds and which are positives
SET_FIELDS = (
    "dataset",
    "database",
    "queries",
    "places",
    "frames",
    "tolerance_frames",
    "negative_frames",
    "positive_m",
    "negative_m",
)


def _patch_sets(extraction, centres: np.ndarray, stride: int, extent) -> list[PatchSet]:
    return [PatchSet(p, centres, stride, extent) for p in extraction.patches]


def verified_matches(query: PatchSet, database: PatchSet) -> np.ndarray:
    """(k, 2) query/database patch indices: mutual nearest neighbours kept by RANSAC."""
    q, d = mutual_matches(query.patches, database.patches)
    keep = inlier_mask(database.positions[d], query.positions[q], "homography", THRESHOLD_STRIDES * query.stride)
    return np.stack([q[keep], d[keep]], axis=1) if keep.any() else np.zeros((0, 2), dtype=np.int64)


class MatcherData:
    """Patches of the training sets, each query's best positive, hard negatives and labels.
    Several sets (``configs``: one model, each its own ``train`` and ``data`` sections) are
    indexed one after another; each holds out the last fifth of its own queries, and a batch
    never mixes sets (their images, and so their patch counts, may differ in size)."""

    def __init__(self, configs: list[RunConfig], spec: PatchSpec, folder: Path, log):
        first = configs[0]
        model = build_model(first.model).eval()
        sets = [load_triplet_set(config.train, config.data) for config in configs]
        initialise_aggregator(
            model, sets[0].database_paths, contract_of(first), first.train.seed, first.data.max_pixels
        )
        patch_model = PatchModel(model, spec)
        self.database, self.queries, self.set_of = [], [], {}
        self.positive, self.negatives, self.labels = {}, {}, {}
        self.train, self.val = [], []
        for number, (config, triplets) in enumerate(zip(configs, sets)):
            self._add(number, config, triplets, patch_model, spec, log)
        self.train, self.val = np.asarray(self.train), np.asarray(self.val)
        self.patch_dim = int(self.queries[0].patches.shape[1])
        log(
            f"{len(self.train)} training and {len(self.val)} validation queries from {len(configs)} set(s); "
            f"{self.patch_dim}-D patches; {np.mean([len(v) for v in self.labels.values()]):.1f} "
            f"verified correspondences per positive pair"
        )

    def _add(self, number: int, config: RunConfig, triplets, patch_model: PatchModel, spec: PatchSpec, log) -> None:
        contract = contract_of(config)
        where = f"set {number + 1} " if number else ""
        options = dict(max_pixels=config.data.max_pixels, batch_size=8)
        database = extract(patch_model, triplets.database_paths, contract, label=f"{where}database ", **options)
        queries = extract(patch_model, triplets.query_paths, contract, label=f"{where}queries ", **options)
        extent = (patch_model.map_size[1], patch_model.map_size[0])
        stride = min(spec.strides)
        db_offset, q_offset = len(self.database), len(self.queries)
        self.database += _patch_sets(database, patch_model.centres(), stride, extent)
        self.queries += _patch_sets(queries, patch_model.centres(), stride, extent)
        similarity = queries.descriptors @ database.descriptors.T
        trainable = triplets.trainable(HARD_NEGATIVES)
        if len(trainable) < 5:
            raise ConfigError(
                f"{where or 'the training set '}: only {len(trainable)} training queries have a positive and "
                f"{HARD_NEGATIVES} negatives"
            )
        for q in trainable:
            candidates = triplets.positives[q]
            allowed = np.setdiff1d(np.arange(len(triplets.database_paths)), triplets.non_negatives[q])
            key = q_offset + q
            self.set_of[key] = number
            self.positive[key] = db_offset + int(candidates[np.argmax(similarity[q, candidates])])
            self.negatives[key] = db_offset + allowed[np.argsort(-similarity[q, allowed])[:HARD_NEGATIVES]]
            self.labels[key] = torch.from_numpy(verified_matches(self.queries[key], self.database[self.positive[key]]))
        split = int(len(trainable) * 0.8)
        self.train += [q_offset + q for q in trainable[:split]]
        self.val += [q_offset + q for q in trainable[split:]]

    def chunks(self, rng, size: int) -> list[np.ndarray]:
        """The training queries in a random order, cut into batches of at most ``size`` queries of
        one set each, the batches themselves shuffled."""
        order = rng.permutation(self.train)
        batches = []
        for number in sorted(set(self.set_of.values())):
            mine = np.asarray([q for q in order if self.set_of[q] == number])
            batches += [mine[begin : begin + size] for begin in range(0, len(mine), size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def batch(self, queries: np.ndarray, rng) -> tuple:
        """Stacked tensors of (query, positive) and (query, a random hard negative) pairs."""
        negatives = [self.negatives[q][rng.integers(len(self.negatives[q]))] for q in queries]
        q_p, q_x = patch_tensors([self.queries[q] for q in queries])
        p_p, p_x = patch_tensors([self.database[self.positive[q]] for q in queries])
        n_p, n_x = patch_tensors([self.database[n] for n in negatives])
        return q_p, q_x, p_p, p_x, n_p, n_x, [self.labels[q] for q in queries]


@torch.inference_mode()
def validation_accuracy(matcher: AttentionMatcher, data: MatcherData) -> tuple[float, float]:
    """Share of validation queries whose positive outscores all their hard negatives, and the
    mean margin by which it does (positive score minus the best negative's)."""
    from edgevpr.rerank.attention import AttentionReranker

    return _accuracy(AttentionReranker.of(matcher), data)


def _accuracy(reranker, data: MatcherData) -> tuple[float, float]:
    wins, margins = 0, []
    for q in data.val:
        candidates = [data.database[data.positive[q]]] + [data.database[n] for n in data.negatives[q]]
        scores = reranker.score(data.queries[q], candidates)
        wins += int(scores[0] > scores[1:].max())
        margins.append(float(scores[0] - scores[1:].max()))
    return wins / max(len(data.val), 1), float(np.mean(margins)) if margins else 0.0


def also_training_set(config: RunConfig, path: str | Path) -> RunConfig:
    """Another training set for the matcher: a copy of ``config`` whose training data (which
    folders, frames and positive rules: ``SET_FIELDS``) starts from the defaults, then the
    ``train`` and ``data`` sections of the YAML file at ``path`` (nothing else may be in it)."""
    from edgevpr.config import TrainConfig, apply_overrides, load_config, read_yaml

    sections = read_yaml(path, "training-set file") or {}
    if not isinstance(sections, dict) or set(sections) - {"train", "data"}:
        extra = sorted(set(sections) - {"train", "data"}) if isinstance(sections, dict) else ["(not a mapping)"]
        raise ConfigError(f"{path}: a further training set holds only train and data sections, not {extra}")
    other = load_config(overrides=config.to_dict())
    defaults = TrainConfig()
    for name in SET_FIELDS:
        setattr(other.train, name, getattr(defaults, name))
    return apply_overrides(other, sections, where=str(path))


def train_matcher(
    config: RunConfig,
    spec: PatchSpec,
    run_dir: str | Path,
    dim: int = 64,
    heads: int = 2,
    layers: int = 4,
    iterations: int = 20,
    batch_pairs: int = 8,
    lr: float = 1e-3,
    ranking_weight: float = 1.0,
    prior: bool = True,
    epochs: int = 30,
    max_minutes: float | None = None,
    log=print,
    also: tuple[RunConfig, ...] = (),
) -> dict:
    """``also``: more training sets, each a config of the same model with its own ``train`` and
    ``data`` sections (``also_training_set``)."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    config = resolve_config(config)
    torch.manual_seed(config.train.seed)
    data = MatcherData([config, *(resolve_config(other) for other in also)], spec, folder, log)
    matcher = AttentionMatcher(data.patch_dim, dim, heads, layers, iterations, prior)
    optimizer = torch.optim.Adam(matcher.parameters(), lr=lr)
    state_file, best_file = folder / "matcher_state.pt", folder / "matcher.npz"
    history, start_epoch, best, best_epoch = [], 0, (-1.0, -np.inf), -1
    if state_file.is_file():  # resume: tensors and plain data only
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        matcher.load_state_dict(state["matcher"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]) + 1, list(state["history"])
        best = tuple(float(v) for v in state["best"]) if np.ndim(state["best"]) else (float(state["best"]), -np.inf)
        log(f"resumed after epoch {start_epoch} (best validation accuracy {best[0]:.3f})")
    ransac_accuracy = _accuracy(RansacReranker(), data)[0]
    began = time.monotonic()
    info = {
        "patch_spec": spec.to_dict(),
        "model": config.to_dict()["model"],
        "contract": contract_of(config).to_dict(),
        "train": {
            "database": config.train.database,
            "queries": list(config.train.queries),
            "frames": config.train.frames,
        },
        "also_trained_on": [
            {"dataset": o.train.dataset, "database": o.train.database, "queries": list(o.train.queries)} for o in also
        ],
    }
    if start_epoch == 0:  # the matcher before training is the first candidate for best
        best = validation_accuracy(matcher, data)
        save_matcher(matcher, best_file, info | {"val_accuracy": best[0], "val_margin": best[1], "epoch": -1})
        log(f"before training: validation accuracy {best[0]:.3f} (ransac {ransac_accuracy:.3f}), margin {best[1]:.3f}")
    for epoch in range(start_epoch, epochs):
        matcher.train()
        rng = np.random.default_rng([config.train.seed, epoch])
        losses = []
        with Progress(len(data.train), f"epoch {epoch}", "query") as bar:
            for chunk in data.chunks(rng, batch_pairs):
                q_p, q_x, p_p, p_x, n_p, n_x, labels = data.batch(chunk, rng)
                log_pos, score_pos = matcher(q_p, q_x, p_p, p_x)
                log_neg, score_neg = matcher(q_p, q_x, n_p, n_x)
                loss = nll_loss(log_pos, labels) + nll_loss(log_neg, [labels[0][:0]] * len(chunk))
                if ranking_weight:
                    loss = loss + ranking_weight * ranking_loss(score_pos, score_neg)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                bar.update(len(chunk))
        accuracy, margin = validation_accuracy(matcher, data)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_accuracy": accuracy, "val_margin": margin})
        log(
            f"epoch {epoch}: loss {np.mean(losses):.4f}, validation accuracy {accuracy:.3f} "
            f"(ransac {ransac_accuracy:.3f}), margin {margin:.3f}"
        )
        if (accuracy, margin) > best:  # the margin separates epochs once the accuracy saturates
            best, best_epoch = (accuracy, margin), epoch
            save_matcher(matcher, best_file, info | {"val_accuracy": accuracy, "val_margin": margin, "epoch": epoch})
        with atomic_path(state_file) as tmp:
            torch.save(
                {
                    "matcher": matcher.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "best": list(best),
                    "history": history,
                },
                tmp,
            )
        if max_minutes is not None and time.monotonic() - began > 60 * max_minutes:
            log(f"stopped after {max_minutes} minutes")
            break
    if best_epoch == -1 and start_epoch == 0:
        log("no epoch beat the matcher before training: it is the one kept")
    summary = {
        "matcher": str(best_file),
        "best_epoch": best_epoch if start_epoch == 0 or best_epoch >= 0 else None,
        "best_val_accuracy": best[0],
        "best_val_margin": best[1] if np.isfinite(best[1]) else None,
        "ransac_val_accuracy": ransac_accuracy,
        "history": history,
        "params": sum(p.numel() for p in matcher.parameters()),
        "ranking_weight": ranking_weight,
        "prior": prior,
    }
    write_json(folder / "matcher_summary.json", summary)
    return summary
