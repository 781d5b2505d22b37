"""Map extraction sharded over a Ray cluster (``map build --ray [ADDRESS]``): the images are
cut into shards, each a Ray task that loads the deployed model file once and describes its
images; the driver gathers the shards in order and commits the map as a single-process build
does (one atomic version), so a map built with or without Ray is the same map.

The model file and the images travel as bytes through Ray's object store, so the workers need
no shared file system. A task whose worker dies is retried (``max_retries``): a lost worker
costs its shard, never the map. The driver's progress is one line per finished shard."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edgevpr.errors import ConfigError

SHARDS_PER_CPU = 4  # more shards than workers, so that a slow or lost worker costs little


def _describe_shard(model_bytes: bytes, suffix: str, kind: str, images: list[tuple[str, bytes]], options: dict, hook):
    """On a worker: the shard's descriptors and image sizes (after resizing)."""
    from edgevpr.extraction.extract import extract
    from edgevpr.maps.model_file import load_model

    if hook is not None:
        hook()
    with tempfile.TemporaryDirectory() as folder:
        model_file = Path(folder) / f"model{suffix}"
        model_file.write_bytes(model_bytes)
        model = load_model(model_file, kind, threads=1)
        paths = []
        for number, (name, data) in enumerate(images):
            path = Path(folder) / f"{number:06d}-{name}"
            path.write_bytes(data)
            paths.append(path)
        found = extract(
            model, paths, model.contract, batch_size=options["batch_size"], max_pixels=options["max_pixels"]
        )
        return found.descriptors, [list(size) for size in found.sizes.elements()]


def connect(address: str | None):
    """``ray.init`` on ``address`` ("local" or None: a cluster of this machine's CPUs)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        target = None if address in (None, "local") else address
        try:
            ray.init(address=target, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except ConnectionError as error:
            raise ConfigError(f"--ray {address}: no Ray cluster there ({error})") from None
    return ray


def extract_on_ray(
    model_file: Path, kind: str, paths: list[Path], batch_size: int, max_pixels: int, address=None, log=None, hook=None
) -> tuple[np.ndarray, list[int]]:
    """The images' descriptors in ``paths`` order and the most common image size, described by
    the cluster's workers. ``hook`` runs on the worker before each shard (tests kill workers with it)."""
    ray = connect(address)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    count = max(1, min(len(paths), cpus * SHARDS_PER_CPU))
    shards = [list(part) for part in np.array_split(np.arange(len(paths)), count) if len(part)]
    task = ray.remote(num_cpus=1, max_retries=3)(_describe_shard)
    model_ref = ray.put(model_file.read_bytes())
    options = {"batch_size": batch_size, "max_pixels": max_pixels}
    pending = {}
    for number, shard in enumerate(shards):
        images = [(paths[i].name, paths[i].read_bytes()) for i in shard]
        pending[task.remote(model_ref, model_file.suffix, kind, images, options, hook)] = number
    results, sizes = {}, Counter()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        number = pending.pop(done[0])
        descriptors, shard_sizes = ray.get(done[0])
        results[number] = descriptors
        sizes.update(tuple(size) for size in shard_sizes)
        if log:
            log(f"ray: {len(results)}/{len(shards)} shards ({sum(len(shards[n]) for n in results)} images) described")
    return np.concatenate([results[n] for n in range(len(shards))]), list(sizes.most_common(1)[0][0])
