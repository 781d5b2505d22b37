"""``edgevpr eval``: images -> descriptors -> index -> predictions -> recall, plus the cost block."""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch

from edgevpr.atomic import check_output, write_json
from edgevpr.config import DataConfig, EvalConfig, OutputConfig, RunConfig
from edgevpr.contract import InputContract
from edgevpr.data.dataset import VPRDataset, load_dataset
from edgevpr.errors import ConfigError, OutputError
from edgevpr.evaluate.cost import cost_block
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.gallery import save_gallery
from edgevpr.evaluate.pr import metrics_block, plot_pr_curve
from edgevpr.evaluate.protocol import build_protocol, protocol_name
from edgevpr.evaluate.recall import first_positive_ranks, recall_at_n, recall_from_ranks
from edgevpr.evaluate.repeats import summarise_runs
from edgevpr.evaluate.second_stage import SecondStage
from edgevpr.evaluate.test_time import CROPS, crop_descriptors, search_with_crops
from edgevpr.extraction.binary_codec import fit_binary_codec
from edgevpr.extraction.extract import extract
from edgevpr.models import VPRModel, build_model
from edgevpr.models.checkpoint import architecture_of, read_checkpoint
from edgevpr.models.describer import Describer
from edgevpr.models.initialise import initialise_aggregator
from edgevpr.models.model import model_from_checkpoint
from edgevpr.models.resolve import (
    adopt_stored_contract,
    contract_of,
    contract_origin,
    resolve_config,
)
from edgevpr.search.descriptor_bits import storage_spec, stored_bits
from edgevpr.search.descriptors import save_descriptor_set
from edgevpr.search.index import build_index, check_fits, search
from edgevpr.search.sequence import sequence_similarity
from edgevpr.search.timing import time_matching


def save_descriptors(
    folder: str, dataset: VPRDataset, database: np.ndarray, queries: np.ndarray, protocol: dict
) -> None:
    save_descriptor_set(
        folder,
        database,
        queries,
        "ip",
        {
            "protocol": protocol,
            "database_paths": [str(p) for p in dataset.database_paths],
            "query_paths": [str(p) for p in dataset.query_paths],
            "positives": [p.tolist() for p in dataset.positives],
        },
    )


def extract_dataset(
    forward, dataset: VPRDataset, preprocess: InputContract, settings: EvalConfig, data: DataConfig, label: str = ""
):
    """Database and query descriptors; images skipped as bad are dropped from the dataset."""
    options = dict(
        batch_size=settings.batch_size,
        workers=settings.workers,
        skip_bad=data.skip_bad_images,
        max_pixels=data.max_pixels,
    )
    db = extract(forward, dataset.database_paths, preprocess, label=f"{label}database", **options)
    q = extract(forward, dataset.query_paths, preprocess, label=f"{label}queries", **options)
    if db.skipped or q.skipped:
        dataset = dataset.subset(db.kept, q.kept, db.skipped + q.skipped)
    return db, q, dataset


def recall_only(describer: Describer, data: DataConfig, settings: EvalConfig, label: str = "") -> dict:
    """Recall@N of the deployed model by exact search, without the cost block (validation
    during training)."""
    db, q, dataset = extract_dataset(describer, load_dataset(data), describer.contract, settings, data, label)
    _, predictions = search(build_index(db.descriptors, "Flat"), q.descriptors, max(settings.recall_at))
    return recall_at_n(predictions, dataset.positives, settings.recall_at)


def sequence_predictions(
    database: np.ndarray, queries: np.ndarray, dataset: VPRDataset, length: int, k: int, enhance: int = 0
) -> np.ndarray:
    """Top-k database indices by sequence matching (``search.sequence``) over the queries in
    order; only frame-aligned traversals have an order to match along."""
    if not dataset.positive_rule.startswith("frames<="):
        raise ConfigError(
            f"--sequence {length} needs frame-aligned folders (--tolerance-frames), "
            f"not positives by {dataset.positive_rule}"
        )
    scores = sequence_similarity(queries @ database.T, length, enhance=enhance)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def sequence_rule(dataset: VPRDataset, length: int, enhance: int = 0) -> dict:
    """The positive rule names the sequence length when it is more than one frame, and the
    contrast window when there is one."""
    if length <= 1:
        return {}
    enhanced = f",enhance={enhance}" if enhance > 1 else ""
    return {"positives": f"{dataset.positive_rule},sequence={length}{enhanced}", "sequence": length}


def _evaluate_quietly(config: RunConfig, model: VPRModel | None, label: str | None, seed: int) -> dict:
    """One more run of ``config`` with another seed, writing nothing (``--repeat``)."""
    config = copy.deepcopy(config)
    config.eval.seed, config.eval.repeat = seed, 1
    config.output = OutputConfig()
    return evaluate(config, copy.deepcopy(model), label)


def _check_settings(config: RunConfig) -> None:
    """One line, before any work, for output paths that cannot be written and settings that do not combine."""
    check_output(config.output.out, "--out")
    check_output(config.output.gallery, "--gallery")
    check_output(config.output.pr_curve, "--pr-curve")
    check_output(config.output.save_descriptors, "--save-descriptors", folder=True)
    if config.eval.test_method not in CROPS:
        raise ConfigError(f"unknown --test-method {config.eval.test_method!r}; use one of {', '.join(CROPS)}")
    if config.eval.test_method != "single" and config.eval.sequence > 1:
        raise ConfigError("--test-method and --sequence do not combine; choose one")
    if config.eval.sequence < 1:
        raise ConfigError(f"--sequence must be >= 1, got {config.eval.sequence}")
    search, length = config.search, config.eval.sequence
    if length > 1 and (search.index != "Flat" or search.descriptor_bits != 32 or config.rerank.name):
        raise ConfigError(
            f"--sequence {length} scores every map entry exactly in float (as localize --sequence does): "
            "--index, --descriptor-bits and --rerank do not apply; leave them out"
        )
    if not config.eval.recall_at or min(config.eval.recall_at) < 1:
        raise ConfigError(f"--recall-at needs positive N, got {','.join(map(str, config.eval.recall_at)) or 'none'}")
    if config.eval.repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {config.eval.repeat}")


def _deployed(config: RunConfig, model: VPRModel | None):
    """The model that runs: an ONNX file, a checkpoint or a PyTorch model, with the config
    resolved under the contract it carries. Returns (config, model or None, the deployed ONNX
    model or None, where the contract came from)."""
    deployed = None
    if config.model.onnx:
        # its contract is resolved below with the flags' overrides (adopt_stored_contract)
        deployed = Describer.onnx(config.model.onnx, config.eval.threads, config.eval.ort_optimization, InputContract())
        fixed = deployed.fixed_size
        if fixed and config.data.size is not None and tuple(config.data.size) != fixed:
            raise ConfigError(
                f"{config.model.onnx}: the model takes {fixed[0]}x{fixed[1]} images only; "
                f"give --size {fixed[0]}x{fixed[1]} or no resize"
            )
        origin = {"source": f"stored in {config.model.onnx}"}
        config = adopt_stored_contract(config, deployed.info or {}, config.model.onnx)
        if fixed and config.data.size is None and config.data.resize is None:
            config.data.size = fixed
    elif config.model.checkpoint and model is None:  # one read: contract, architecture and weights
        path = config.model.checkpoint
        payload = read_checkpoint(path)
        origin = {"source": f"stored in {path}"}
        config = adopt_stored_contract(config, payload, path)
        config.model = architecture_of(payload, path)
        model = model_from_checkpoint(payload, path)
    else:
        origin = contract_origin(config)
    config = resolve_config(config, log=lambda message: print(message, file=sys.stderr))
    if not config.model.onnx:
        model = (model or build_model(config.model, seed=config.eval.seed)).eval()
    return config, model, deployed, origin


def _ranked(config: RunConfig, index, db, q, dataset, extractor, preprocess, second) -> tuple[np.ndarray, np.ndarray]:
    """Scores and predictions (Q, k) of the queries: sequence matching, test-time crops or one
    search, then the second stage when configured."""
    k = max(config.eval.recall_at)
    method = config.eval.test_method
    if config.eval.sequence > 1:
        scores, predictions = sequence_predictions(
            db.descriptors, q.descriptors, dataset, config.eval.sequence, k, config.eval.sequence_enhance
        )
    elif method != "single":  # the queries described from crops (evaluate.test_time)
        crops = crop_descriptors(extractor, dataset.query_paths, preprocess, method, config.data.max_pixels)
        scores, predictions = search_with_crops(index, crops, method, k)
    else:
        scores, predictions = search(index, q.descriptors, max(k, second.k) if second else k)
    if second:  # evaluate.second_stage: the top-K re-ordered by the re-ranker
        scores, predictions = second.rerank(predictions, q, db)
        scores, predictions = scores[:, :k], predictions[:, :k]
    return scores, predictions


def _cost(config: RunConfig, extractor, protocol: dict, index, queries: np.ndarray, second) -> dict:
    """The cost block: parameters, FLOPs, bytes, and extraction, matching and re-ranking time."""
    method = config.eval.test_method
    input_shape = (1, 3, *protocol["image_size"])
    search_bytes, fixed_bytes = index.footprint()
    matching = time_matching(index, queries, max(config.eval.recall_at))
    searches = CROPS[method] if method in ("nearest_crop", "maj_voting") else 1
    cost = cost_block(
        params=extractor.params,
        flops=extractor.flops(input_shape),
        model_bytes=extractor.model_bytes,
        extraction=extractor.latency(input_shape, config.eval.latency_runs),
        matching=matching | {"median_ms": matching["median_ms"] * searches},
        database_size=search_bytes,
    )
    cost["index_fixed_bytes"] = fixed_bytes  # held once whatever the map size
    if second:
        cost |= second.cost(cost)
    if method != "single":  # a query costs its crops, as one batch
        side = min(protocol["image_size"])
        per_query = extractor.latency((CROPS[method], 3, side, side), config.eval.latency_runs)
        cost |= {
            "test_method": method,
            "query_extraction_ms": per_query["median_ms"],
            "searches_per_query": searches,
            "total_ms": per_query["median_ms"] + cost["matching_ms"],
        }
    return cost


def _model_block(config: RunConfig, extractor, dim: int) -> dict:
    source = extractor.info.get("config", {}).get("model", {}) if extractor.info else {}
    model_config = source or config.to_dict()["model"]
    return {
        "backbone": model_config["backbone"],
        "aggregator": model_config["aggregator"],
        "projection": f"fc{model_config['dim']}" if model_config.get("dim") else None,
        "descriptor_dim": dim,
        "weights": model_config["weights"] or ("pretrained" if model_config["pretrained"] else "random"),
        "onnx": config.model.onnx,
    }


def _write_outputs(config: RunConfig, result: dict, dataset, db, q, predictions) -> None:
    """The files asked for; the numbers are computed, so a failed write hands them back."""
    try:
        if config.output.out:
            write_json(config.output.out, result)
        if config.output.save_descriptors:
            save_descriptors(config.output.save_descriptors, dataset, db.descriptors, q.descriptors, result["protocol"])
        if config.output.pr_curve:
            plot_pr_curve(result["metrics"], config.output.pr_curve, result["protocol_name"])
        if config.output.gallery:
            save_gallery(
                config.output.gallery, dataset.query_paths, dataset.database_paths, predictions, dataset.positives
            )
    except OSError as error:
        raise OutputError(f"{error.filename or 'writing the results'}: {error.strerror or error}", result) from None


def evaluate(config: RunConfig, model: VPRModel | None = None, label: str | None = None) -> dict:
    """Recall@N and the cost block of ``config``'s model (or of ``model``, already built) under
    its protocol. ``config`` is resolved into a copy first (``models.resolve``) and never changed.
    The stages: the deployed model, descriptors of the database and queries, the index, the
    ranked candidates (``_ranked``), the metrics, the cost block (``_cost``)."""
    _check_settings(config)
    second = SecondStage.configured(config)  # a bad --rerank name fails here, before any work
    others = [_evaluate_quietly(config, model, label, config.eval.seed + i) for i in range(1, config.eval.repeat)]
    torch.manual_seed(config.eval.seed)
    if config.eval.threads:
        torch.set_num_threads(config.eval.threads)
    config, model, extractor, origin = _deployed(config, model)
    preprocess = contract_of(config)  # the carried contract, with what the flags override
    dataset = load_dataset(config.data)
    if extractor is None:
        initialise_aggregator(model, dataset.database_paths, preprocess, config.eval.seed, config.data.max_pixels)
        extractor = Describer.torch(model, preprocess)
    extractor = extractor.with_contract(preprocess)

    forward = second.forward(model if model is not None else extractor.network) if second else extractor
    db, q, dataset = extract_dataset(forward, dataset, preprocess, config.eval, config.data)
    if not config.model.onnx and model.pca is not None and not bool(model.pca.fitted):
        model.pca.fit(db.descriptors)  # learned on the database, then part of the model
        db.descriptors, q.descriptors = model.pca.apply_numpy(db.descriptors), model.pca.apply_numpy(q.descriptors)
        extractor = Describer.torch(model, preprocess)

    spec = storage_spec(config.search.index, config.search.descriptor_bits, config.search.int8_scale)
    check_fits(spec, len(db.descriptors), where=f"--index {config.search.index}")
    codec = None
    if spec.binary:  # extraction.binary_codec: the rotation is fitted on other images
        settings = config.eval
        codec = fit_binary_codec(
            extractor,
            preprocess,
            config.search.descriptor_fit,
            db.descriptors.shape[1],
            config.search.binary_rotation,
            settings.seed,
            indexed=dataset.database_dir,
            batch_size=settings.batch_size,
            workers=settings.workers,
            skip_bad=config.data.skip_bad_images,
            max_pixels=config.data.max_pixels,
        )
    index = build_index(db.descriptors, spec, params=config.search.params, seed=config.eval.seed, codec=codec)
    scores, predictions = _ranked(config, index, db, q, dataset, extractor, preprocess, second)
    ranks = first_positive_ranks(predictions, dataset.positives)
    k = predictions.shape[1]

    protocol = build_protocol(
        dataset.protocol() | sequence_rule(dataset, config.eval.sequence, config.eval.sequence_enhance),
        preprocess.rule() + ("" if config.eval.test_method == "single" else f",test={config.eval.test_method}"),
        db.sizes + q.sizes,
        extractor.precision,
        extractor.runtime,
        extractor.int8,
    ) | {"contract": preprocess.to_dict(), "contract_source": origin}
    if codec is not None:
        protocol["descriptor_codec"] = codec.describe()
    if second:  # a re-ranked result is a protocol of its own: its name says so
        protocol["rerank"] = {"name": second.name, "k": second.k}
    search_bytes, fixed_bytes = index.footprint()
    result = {
        "protocol": protocol,
        "protocol_name": protocol_name(protocol),
        "model": _model_block(config, extractor, int(db.descriptors.shape[1])),
        "recall": recall_from_ranks(ranks, config.eval.recall_at),
        # top-1 precision-recall (VPR-Bench) and mAP@k: evaluate.pr
        "metrics": metrics_block(scores, predictions, dataset.positives, [n for n in (1, 5, 10) if n <= k]),
        "per_query": {"first_positive_rank": ranks.tolist()},  # for paired comparisons (evaluate.significance)
        "cost": _cost(config, extractor, protocol, index, q.descriptors, second),
        "search": {
            "index": str(index.spec),
            "params": index.params,
            "memory_bytes": search_bytes + fixed_bytes,
            "descriptor_bits": stored_bits(spec),
        }
        | ({"codec": codec.describe()} if codec is not None else {})
        | ({"rerank": second.describe()} if second else {}),
        "config": config.to_dict(),
        "environment": environment(),
    }
    if extractor.info:
        result["deployment"] = {k: v for k, v in extractor.info.items() if k != "config"}
    if label:
        result["label"] = label
    if others:  # evaluate.repeats: mean and spread over seeds
        result["repeats"] = summarise_runs([result, *others], [config.eval.seed + i for i in range(len(others) + 1)])
    _write_outputs(config, result, dataset, db, q, predictions)
    return result
