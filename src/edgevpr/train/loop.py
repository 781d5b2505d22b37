"""``edgevpr train``: the training loop.

Triplet data (Berton et al. 2022 protocol): an epoch is ``queries_per_epoch`` training queries in a
seeded random order, in rounds of ``refresh_every``; each round mines its triplets from a
fresh cache (see ``mining``) and trains on batches of ``batch_triplets`` triplets, each a
query, its best positive and ``negatives`` negatives. Place-grouped data: batches of P places
x K images with a pytorch-metric-learning loss and optional miner.

After each epoch the model is validated (Recall@N on the validation set), ``last.pt`` is
written, and ``best.pt`` when validation Recall@5 improved; training stops early when it has
not improved for ``patience`` epochs. Every epoch reseeds all randomness from (seed, epoch),
so a run resumed from ``last.pt`` after a kill ends exactly as an uninterrupted run does.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from edgevpr.config import DataConfig, RunConfig
from edgevpr.data.train_sets import load_place_set, load_triplet_set
from edgevpr.errors import ConfigError, DatasetError
from edgevpr.evaluate.runner import evaluate, recall_only
from edgevpr.extraction.extract import extract
from edgevpr.models import build_model
from edgevpr.models.checkpoint import read_checkpoint, save_checkpoint
from edgevpr.models.describer import Describer
from edgevpr.models.initialise import initialise_aggregator
from edgevpr.models.resolve import contract_of, resolve_config
from edgevpr.progress import Progress
from edgevpr.train.augment import Augment
from edgevpr.train.batches import batch_loader
from edgevpr.train.distributed import Context, context_from_environment
from edgevpr.train.freeze import freeze_batch_norm, freeze_stages, set_training
from edgevpr.train.losses import (
    metric_learning_loss,
    metric_learning_miner,
    straight_through_codes,
    triplet_loss,
)
from edgevpr.train.mining import Miner
from edgevpr.train.qat import attach_weight_fake_quant, load_plain_state_dict, plain_state_dict, qat_weight_max
from edgevpr.train.run_folder import RunFolder, plain

OPTIMIZERS = ("adam", "sgd")


def has_data(data: DataConfig) -> bool:
    return bool(data.dataset or data.database)


def resolve_defaults(config: RunConfig) -> RunConfig:
    """A copy of ``config`` with what follows from other settings filled (the input contract,
    the validation set, the weight decay), before it is saved."""
    config = resolve_config(config, log=lambda message: print(message, file=sys.stderr))
    train = config.train
    if not has_data(config.val) and train.dataset and (Path(train.dataset) / "val").is_dir():
        config.val.dataset = str(Path(train.dataset) / "val")
    for name in ("resize", "size", "resize_factor"):  # one image-size rule for train, validation and test
        if getattr(config.val, name) is None:
            setattr(config.val, name, getattr(config.data, name))
    if train.weight_decay is None:
        train.weight_decay = 1e-3 if train.optimizer == "sgd" else 0.0
    return config


def _check(config: RunConfig) -> None:
    train = config.train
    if train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown train.optimizer {train.optimizer!r}; choose {', '.join(OPTIMIZERS)}")
    positive = (
        "batch_triplets",
        "negatives",
        "epochs",
        "queries_per_epoch",
        "patience",
        "refresh_every",
        "places_per_batch",
        "images_per_place",
    )
    for name in positive:
        if getattr(train, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(train, name)}")
    if train.lr <= 0:
        raise ConfigError(f"train.lr must be positive, got {train.lr}")
    if 5 not in config.eval.recall_at:
        raise ConfigError("early stopping follows validation Recall@5: keep 5 in eval.recall_at")
    if train.binary_weight and train.places is not None:
        raise ConfigError("train.binary_weight adds a triplet loss on sign codes: it needs triplet data, not places")


class Trainer:
    def __init__(self, config: RunConfig, context: Context):
        config = self.config = resolve_defaults(config)
        self.ctx = context
        _check(config)
        train = config.train
        if config.eval.threads:
            torch.set_num_threads(config.eval.threads)
        self.folder = RunFolder(config, context.main)
        self.log = self.folder.log
        self.preprocess = contract_of(config)
        self.val_contract = contract_of(config, config.val)  # val.resize, val.size or, unset, data's
        try:
            self.augment = Augment(train.brightness, train.contrast, train.saturation, train.crop_scale)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.by_places = train.places is not None
        if self.by_places:
            self.places = load_place_set(train.places, train.images_per_place)
            if train.places_per_batch > len(self.places.place_names):
                raise ConfigError(
                    f"train.places_per_batch ({train.places_per_batch}) exceeds the "
                    f"{len(self.places.place_names)} places in {train.places}"
                )
            self.place_images = [np.flatnonzero(self.places.labels == p) for p in range(len(self.places.place_names))]
            self.metric_loss = metric_learning_loss(train.loss, train.margin)
            self.batch_miner = metric_learning_miner(train.miner)
            init_paths = self.places.paths
        else:
            self.data = load_triplet_set(train, config.data)
            self.loss = triplet_loss(train.loss)
            self.code_centre = None  # running mean of the descriptors, for train.binary_weight
            self.miner = Miner(train.miner, self.data, train.negatives, train.cache_database)
            self.trainable = self.data.trainable(train.negatives)
            if len(self.trainable) == 0:
                raise DatasetError(
                    f"{self.data.query_paths[0].parent}: no training query has both a positive "
                    f"({self.data.rule}) and {train.negatives} negatives"
                )
            init_paths = self.data.database_paths

        torch.manual_seed(train.seed)
        self.model = build_model(config.model)
        initialise_aggregator(self.model, init_paths, self.preprocess, train.seed, config.data.max_pixels)
        frozen = freeze_stages(self.model.backbone, train.freeze_stages)
        if train.frozen_bn:
            freeze_batch_norm(self.model)
        self.qat_layers = 0
        if train.qat:  # weights on the deployed int8 grid while training (train.qat)
            self.qat_layers = attach_weight_fake_quant(self.model, qat_weight_max(config.quantize))
        self.model.to(context.device)
        self.net = self.model
        if context.world > 1:
            self.net = DistributedDataParallel(self.model, find_unused_parameters=False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if train.optimizer == "adam":
            self.optimizer = torch.optim.Adam(trainable, lr=train.lr, weight_decay=train.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                trainable, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
            )
        self.state = {
            "epoch": 0,
            "best_score": None,
            "best_epoch": None,
            "stale": 0,
            "finished": None,
            "initial_val": None,
            "history": [],
        }
        if train.resume:
            self._resume()
        self.log.info(
            f"run folder {self.folder.path}; {context.world} process(es) on {context.device}; "
            f"{sum(p.numel() for p in trainable)} trainable parameters, {frozen} frozen in "
            f"{train.freeze_stages} stage(s)"
            + (", BatchNorm frozen" if train.frozen_bn else "")
            + (f"; int8 weights fake-quantized in {self.qat_layers} layers (--qat)" if train.qat else "")
        )

    # -- state ---------------------------------------------------------------------------
    def _payload(self, with_optimizer: bool) -> dict:
        payload = {
            "config": plain(self.config),
            "contract": self.preprocess.to_dict(),
            "model": plain_state_dict(self.model),
            "state": self.state,
        }
        if with_optimizer:
            payload["optimizer"] = self.optimizer.state_dict()
        return payload

    def _resume(self) -> None:
        if not self.folder.last.is_file():
            self.log.info(f"{self.folder.last}: no epoch finished before the interruption; starting from the beginning")
            return
        payload = read_checkpoint(self.folder.last)
        load_plain_state_dict(self.model, payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state = payload["state"]
        self.log.info(f"resumed from {self.folder.last} after epoch {self.state['epoch']}")

    def _forward_cpu(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.to(self.ctx.device)).cpu()

    # -- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict | None:
        if not has_data(self.config.val):
            return None
        recall = None
        if self.ctx.main:
            self.model.eval()
            describer = Describer.torch(self.model, self.val_contract)
            recall = recall_only(describer, self.config.val, self.config.eval, "val ")
        return self.ctx.broadcast(recall)

    # -- triplet epochs ------------------------------------------------------------------
    @torch.no_grad()
    def describe(self, database: np.ndarray, queries: np.ndarray):
        """Descriptors of database and query images, each process encoding its share."""
        self.model.eval()
        paths = [self.data.database_paths[i] for i in database] + [self.data.query_paths[i] for i in queries]
        mine = self.ctx.share(paths)
        settings = self.config.eval
        rows = extract(
            self._forward_cpu,
            mine,
            self.preprocess,
            settings.batch_size,
            settings.workers,
            max_pixels=self.config.data.max_pixels,
            label="mining cache",
        ).descriptors
        rows = self.ctx.gather_rows(rows, len(paths))
        set_training(self.model, self.config.train.frozen_bn)
        return rows[: len(database)], rows[len(database) :]

    def _epoch_queries(self, rng: np.random.Generator) -> np.ndarray:
        count = self.config.train.queries_per_epoch
        repeats = math.ceil(count / len(self.trainable))
        return np.concatenate([rng.permutation(self.trainable) for _ in range(repeats)])[:count]

    def _triplet_items(self, triplet, rng):
        flip = bool(self.config.train.flip and rng.random() < 0.5)
        seeds = rng.integers(0, 2**31 - 1, size=2 + len(triplet.negatives))
        paths = [
            self.data.query_paths[triplet.query],
            self.data.database_paths[triplet.positive],
            *(self.data.database_paths[n] for n in triplet.negatives),
        ]
        return [(path, flip, int(seed)) for path, seed in zip(paths, seeds)]

    def _train_steps(self, batches, step, progress, deadline) -> list[float]:
        losses = []
        loader = batch_loader(
            batches, self.preprocess, self.augment, self.config.eval.workers, self.config.data.max_pixels
        )
        for images in loader:
            loss = step(images.to(self.ctx.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
            progress.set(progress.n + 1, loss=f"{np.mean(losses):.4f}")
            # decided together: a process that stopped alone would leave the others in an all-reduce
            if deadline is not None and self.ctx.any_process(time.monotonic() > deadline):
                self.state["finished"] = "time limit"
                break
        return losses

    def _triplet_step(self, images):
        train = self.config.train
        out = self.net(images)
        out = out.view(-1, 2 + train.negatives, out.shape[-1])
        loss = self.loss(out[:, 0], out[:, 1], out[:, 2:], train.margin)
        if train.binary_weight:
            flat = out.detach().reshape(-1, out.shape[-1]).mean(0)
            self.code_centre = flat if self.code_centre is None else 0.99 * self.code_centre + 0.01 * flat
            codes = straight_through_codes(out, self.code_centre)
            loss = loss + train.binary_weight * self.loss(codes[:, 0], codes[:, 1], codes[:, 2:], train.margin)
        return loss

    def triplet_epoch(self, rng, progress, deadline) -> tuple[list[float], list[dict]]:
        train = self.config.train
        queries = self._epoch_queries(rng)
        losses, costs = [], []
        for start in range(0, len(queries), train.refresh_every):
            triplets, cost = self.miner.mine(queries[start : start + train.refresh_every], self.describe, rng)
            costs.append(dataclasses.asdict(cost))
            batches = []
            for first in range(0, len(triplets), train.batch_triplets):
                batch = [self._triplet_items(t, rng) for t in triplets[first : first + train.batch_triplets]]
                share = self.ctx.share(batch)
                if len(batch) >= self.ctx.world:
                    batches.append([item for items in share for item in items])
            losses += self._train_steps(batches, self._triplet_step, progress, deadline)
            if self.state["finished"]:
                break
        return losses, costs

    # -- place-grouped epochs ------------------------------------------------------------
    def _pk_batch(self, rng):
        train = self.config.train
        places = rng.choice(len(self.place_images), size=train.places_per_batch, replace=False)
        items, labels = [], []
        for place in places:
            for image in rng.choice(self.place_images[place], size=train.images_per_place, replace=False):
                flip = bool(train.flip and rng.random() < 0.5)
                items.append((self.places.paths[image], flip, int(rng.integers(0, 2**31 - 1))))
                labels.append(int(place))
        per_place = train.images_per_place
        groups = [(items[i : i + per_place], labels[i : i + per_place]) for i in range(0, len(items), per_place)]
        share = self.ctx.share(groups)
        return [x for g, _ in share for x in g], [y for _, g in share for y in g]

    def pk_epoch(self, rng, progress, deadline) -> tuple[list[float], list[dict]]:
        drawn = [self._pk_batch(rng) for _ in range(self._steps_per_epoch())]
        labels = iter([torch.tensor(y) for _, y in drawn])

        def step(images):
            embeddings = self.net(images)
            target = next(labels).to(self.ctx.device)
            pairs = self.batch_miner(embeddings, target) if self.batch_miner is not None else None
            return self.metric_loss(embeddings, target, pairs)

        return self._train_steps([x for x, _ in drawn], step, progress, deadline), []

    # -- the run ---------------------------------------------------------------------------
    def _steps_per_epoch(self) -> int:
        train = self.config.train
        if self.by_places:
            return math.ceil(train.queries_per_epoch / (train.places_per_batch * train.images_per_place))
        return sum(
            math.ceil(min(train.refresh_every, train.queries_per_epoch - s) / train.batch_triplets)
            for s in range(0, train.queries_per_epoch, train.refresh_every)
        )

    def _start_from_the_untrained_model(self) -> None:
        """The model before training is validated and is the first candidate for best.pt, so
        that a run whose every epoch is worse keeps the model it started from."""
        recall = self.state["initial_val"] = self.validate()
        self.log.info(f"before training: validation recall {recall}")
        if recall is not None:
            self.state["best_score"], self.state["best_epoch"] = [recall["5"], recall["1"]], 0
        if self.ctx.main:
            save_checkpoint(self.folder.best, self._payload(with_optimizer=False))
        self.ctx.barrier()

    def run(self) -> dict:
        train = self.config.train
        deadline = time.monotonic() + 60 * train.max_minutes if train.max_minutes else None
        if self.state["epoch"] == 0 and self.state["initial_val"] is None and not self.state["finished"]:
            self._start_from_the_untrained_model()
        while self.state["epoch"] < train.epochs and not self.state["finished"]:
            epoch = self.state["epoch"]
            torch.manual_seed(train.seed * 100_003 + epoch)
            rng = np.random.default_rng([train.seed, epoch])
            set_training(self.model, train.frozen_bn)
            started = time.perf_counter()
            with Progress(
                self._steps_per_epoch(), f"epoch {epoch + 1}/{train.epochs}", "batch", enabled=self.ctx.main
            ) as progress:
                run_epoch = self.pk_epoch if self.by_places else self.triplet_epoch
                losses, costs = run_epoch(rng, progress, deadline)
            losses = self.ctx.mean_over_processes(losses)  # one collective per epoch, not per step
            recall = self.validate()
            self._record(epoch, losses, costs, recall, time.perf_counter() - started)
        self.ctx.barrier()
        return self._finish()

    def _record(self, epoch, losses, costs, recall, seconds) -> None:
        train, state = self.config.train, self.state
        state["epoch"] = epoch + 1
        score = None if recall is None else (recall["5"], recall["1"])  # Recall@1 breaks ties
        improved = score is not None and (state["best_score"] is None or score > tuple(state["best_score"]))
        if improved:
            state["best_score"], state["best_epoch"], state["stale"] = list(score), epoch + 1, 0
        elif recall is not None:
            state["stale"] += 1
        entry = {
            "epoch": epoch + 1,
            "batches": len(losses),
            "loss": float(np.mean(losses)) if losses else None,
            "val_recall": recall,
            "seconds": round(seconds, 2),
        }
        if costs:
            entry["cache"] = {
                "builds": len(costs),
                "images": sum(c["images"] for c in costs),
                "seconds": round(sum(c["seconds"] for c in costs), 2),
                "max_bytes": max(c["bytes"] for c in costs),
            }
        state["history"].append(entry)
        if state["stale"] >= train.patience:
            state["finished"] = f"early stop: validation Recall@5 not better for {train.patience} epochs"
        elif state["epoch"] >= train.epochs and not state["finished"]:
            state["finished"] = "all epochs"
        self.log.info(
            f"epoch {epoch + 1}: loss {entry['loss']}, validation recall {recall}"
            + (f", cache {entry['cache']}" if costs else "")
            + f", {seconds:.1f} s"
        )
        if self.ctx.main:
            if improved or recall is None:
                save_checkpoint(self.folder.best, self._payload(with_optimizer=False))
            save_checkpoint(self.folder.last, self._payload(with_optimizer=True))
            self.folder.write_metrics(self._metrics())
        self.ctx.barrier()

    def _best_recall5(self) -> float | None:
        return self.state["best_score"][0] if self.state["best_score"] else None

    def _metrics(self, test: dict | None = None) -> dict:
        state = self.state
        metrics = {
            "run_dir": str(self.folder.path),
            "finished": state["finished"],
            "epochs": state["epoch"],
            "best_epoch": state["best_epoch"],
            "best_val_recall5": self._best_recall5(),
            "initial_val_recall": state["initial_val"],
            "history": state["history"],
        }
        if test is not None:
            metrics["test"] = {
                "checkpoint": test["config"]["model"]["checkpoint"],
                "protocol_name": test["protocol_name"],
                "recall": test["recall"],
            }
        return metrics

    def _finish(self) -> dict:
        self.log.info(
            f"finished ({self.state['finished']}); best validation Recall@5 {self._best_recall5()} "
            f"at epoch {self.state['best_epoch']}"
        )
        if self.state["best_epoch"] == 0 and self.state["epoch"] > 0:
            self.log.info("no epoch beat the model before training: best.pt is the starting model")
        test = None
        if self.ctx.main and has_data(self.config.data):
            config = dataclasses.replace(
                self.config,
                model=dataclasses.replace(self.config.model, checkpoint=str(self.folder.best)),
                output=dataclasses.replace(self.config.output, out=str(self.folder.path / "test_results.json")),
            )
            test = evaluate(config)
            self.log.info(f"test ({test['protocol_name']}): recall {test['recall']}")
        metrics = self._metrics(test)
        self.folder.write_metrics(metrics)
        self.folder.close()
        return metrics


def train(config: RunConfig) -> dict:
    context = context_from_environment()
    try:
        return Trainer(config, context).run()
    finally:
        context.close()
