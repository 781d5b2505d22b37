"""``edgevpr eval``: images -> descriptors -> index -> predictions -> recall, plus the cost block."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edgevpr.atomic import write_json, write_npy
from edgevpr.config import RunConfig
from edgevpr.data.dataset import VPRDataset, load_dataset
from edgevpr.data.transforms import Preprocess
from edgevpr.evaluate.cost import (
    cost_block,
    count_flops,
    count_params,
    database_bytes,
    serialized_bytes,
    time_matching,
    time_torch_extraction,
)
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.extract import extract, sample_local_features
from edgevpr.evaluate.gallery import save_gallery
from edgevpr.evaluate.protocol import build_protocol, protocol_name
from edgevpr.evaluate.recall import recall_at_n
from edgevpr.models import VPRModel, build_model
from edgevpr.search.index import build_index, search


def preprocess_from(config: RunConfig) -> Preprocess:
    return Preprocess(config.data.resize, config.data.size, config.model.mean, config.model.std)


def initialise_aggregator(model: VPRModel, dataset: VPRDataset, preprocess: Preprocess, config: RunConfig) -> None:
    """NetVLAD-style aggregators start from k-means on local features of database images."""
    aggregator = model.aggregator
    if hasattr(aggregator, "init_from_features") and not bool(aggregator.initialised):
        features = sample_local_features(
            model.backbone, dataset.database_paths, preprocess, seed=config.eval.seed, max_pixels=config.data.max_pixels
        )
        aggregator.init_from_features(features, seed=config.eval.seed)


def save_descriptors(folder: str, dataset: VPRDataset, database: np.ndarray, queries: np.ndarray, protocol: dict) -> None:
    folder = Path(folder)
    write_npy(folder / "database.npy", database)
    write_npy(folder / "queries.npy", queries)
    write_json(
        folder / "ground_truth.json",
        {
            "protocol": protocol,
            "database_paths": [str(p) for p in dataset.database_paths],
            "query_paths": [str(p) for p in dataset.query_paths],
            "positives": [p.tolist() for p in dataset.positives],
        },
    )


def evaluate(config: RunConfig, model: VPRModel | None = None, label: str | None = None) -> dict:
    torch.manual_seed(config.eval.seed)
    if config.eval.threads:
        torch.set_num_threads(config.eval.threads)
    model = (model or build_model(config.model)).eval()
    preprocess = preprocess_from(config)
    dataset = load_dataset(config.data)
    initialise_aggregator(model, dataset, preprocess, config)

    options = dict(
        batch_size=config.eval.batch_size,
        workers=config.eval.workers,
        skip_bad=config.data.skip_bad_images,
        max_pixels=config.data.max_pixels,
    )
    db = extract(model, dataset.database_paths, preprocess, label="database", **options)
    q = extract(model, dataset.query_paths, preprocess, label="queries", **options)
    if db.skipped or q.skipped:
        dataset = dataset.subset(db.kept, q.kept, db.skipped + q.skipped)

    index = build_index(db.descriptors, "Flat")
    k = max(config.eval.recall_at)
    _, predictions = search(index, q.descriptors, k)
    recall = recall_at_n(predictions, dataset.positives, config.eval.recall_at)

    protocol = build_protocol(dataset.protocol(), preprocess.rule(), db.sizes + q.sizes, "fp32", "pytorch")
    input_shape = (1, 3, *protocol["image_size"])
    cost = cost_block(
        params=count_params(model),
        flops=count_flops(model, input_shape),
        model_bytes=serialized_bytes(model),
        extraction=time_torch_extraction(model, input_shape, config.eval.latency_runs),
        matching=time_matching(index, q.descriptors, k),
        database_size=database_bytes(len(db.descriptors), db.descriptors.shape[1]),
    )
    result = {
        "protocol": protocol,
        "protocol_name": protocol_name(protocol),
        "model": {
            "backbone": config.model.backbone,
            "aggregator": config.model.aggregator,
            "projection": f"fc{config.model.dim}" if config.model.dim else None,
            "descriptor_dim": int(db.descriptors.shape[1]),
            "weights": config.model.weights or ("pretrained" if config.model.pretrained else "random"),
        },
        "recall": recall,
        "cost": cost,
        "config": config.to_dict(),
        "environment": environment(),
    }
    if label:
        result["label"] = label
    if config.eval.save_descriptors:
        save_descriptors(config.eval.save_descriptors, dataset, db.descriptors, q.descriptors, protocol)
    if config.eval.gallery:
        save_gallery(config.eval.gallery, dataset.query_paths, dataset.database_paths, predictions, dataset.positives)
    if config.eval.out:
        write_json(config.eval.out, result)
    return result


def load_result(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
