"""Index filling on a Ray cluster (``map build --ray ADDRESS --shards N``): the driver trains
the index once (on a sample, ``search.index``), then each shard is a Ray task that receives the
trained, empty index and its contiguous rows, adds them ``ADD_BATCH`` at a time and sends the
filled shard back serialized. Every shard starts from the same trained index, so the map is
the one a single process builds; a task whose worker dies is retried."""

from __future__ import annotations

import numpy as np

from edgevpr.maps.ray_extract import connect
from edgevpr.search.index import add_rows, shard_bounds


def _serializers(binary: bool):
    import faiss

    if binary:
        return faiss.serialize_index_binary, faiss.deserialize_index_binary
    return faiss.serialize_index, faiss.deserialize_index


def _fill_shard(trained: np.ndarray, binary: bool, rows: np.ndarray) -> np.ndarray:
    """On a worker: the serialized trained index with ``rows`` (already in stored form) added."""
    serialize, deserialize = _serializers(binary)
    return serialize(add_rows(deserialize(trained), rows, lambda batch: batch))


def ray_filler(address: str | None, log=None):
    """A ``fill`` for ``search.index.build_index`` whose shards are filled by the cluster's workers."""

    def fill(trained, database: np.ndarray, rows, shards: int, binary: bool) -> list:
        ray = connect(address)
        serialize, deserialize = _serializers(binary)
        task = ray.remote(num_cpus=1, max_retries=3)(_fill_shard)
        index_ref = ray.put(serialize(trained))
        pending = {}
        for number, (start, stop) in enumerate(shard_bounds(len(database), shards)):
            pending[task.remote(index_ref, binary, rows(database[start:stop]))] = number
        filled = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            filled[pending.pop(done[0])] = deserialize(ray.get(done[0]))
            if log:
                log(f"ray: {len(filled)}/{shards} index shards filled")
        return [filled[number] for number in range(shards)]

    return fill
