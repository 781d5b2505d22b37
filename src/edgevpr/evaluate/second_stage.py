"""The second stage of an evaluation (``--rerank NAME --rerank-k K [--matcher FILE]``): patch
descriptors extracted in the same pass as the global ones (``extraction.patches``), stored as
a map stores them (fp16, or compact with ``--patch-dim``/``--patch-bits``: the codec fitted on
the database's patches, as ``map build`` fits it on the map's), the first stage's top-K of each
query re-ordered by the re-ranker (``rerank``), and what it costs: ``rerank_ms`` per query
(median at that K, counted in ``total_ms``), ``patch_bytes`` per database image and, for a
trained matcher, its parameters and FLOPs per pair."""

from __future__ import annotations

import numpy as np
import torch

from edgevpr.config import RunConfig
from edgevpr.errors import ConfigError
from edgevpr.extraction.patch_codec import PatchCodec
from edgevpr.extraction.patches import PatchSpec, patch_extractor
from edgevpr.rerank import PatchSet, make_reranker, rerank_predictions


class SecondStage:
    def __init__(self, config: RunConfig):
        self.name, self.k = config.rerank.name, config.rerank.k
        self.reranker = make_reranker(self.name, config.rerank.matcher)
        self.matcher_file = config.rerank.matcher
        self.spec = self._checked(PatchSpec(tuple(config.rerank.patch_size), tuple(config.rerank.patch_stride)))
        self.patch_model = None  # extraction.patches: PatchModel, or OnnxPatchModel for a file
        self.times: list[float] = []
        self.compact = (config.rerank.patch_dim, config.rerank.patch_bits)
        self.codec: PatchCodec | None = None

    def _checked(self, spec: PatchSpec) -> PatchSpec:
        """``spec``, when the matcher (if any) was trained on it."""
        trained = getattr(self.reranker, "meta", {}).get("patch_spec")
        if trained and PatchSpec.from_dict(trained) != spec:
            raise ConfigError(
                f"{self.matcher_file}: the matcher was trained on {PatchSpec.from_dict(trained).rule()}, "
                f"this evaluation extracts {spec.rule()}; give the same --patch-size/--patch-stride"
            )
        return spec

    @classmethod
    def configured(cls, config: RunConfig) -> SecondStage | None:
        if not config.rerank.name:
            return None
        if config.eval.sequence > 1 or config.eval.test_method != "single":
            raise ConfigError("--rerank does not combine with --sequence or --test-method; choose one")
        return cls(config)

    def forward(self, network):
        """The network (a PyTorch model, or an ONNX file exported with patches) giving
        descriptors and patches in one pass."""
        self.patch_model = patch_extractor(network, self.spec)
        self.spec = self._checked(self.patch_model.spec)  # an ONNX file's patches are its own
        return self.patch_model

    def _sets(self, patches) -> list[PatchSet]:
        height, width = self.patch_model.map_size
        centres, stride = self.patch_model.centres(), min(self.spec.strides)
        return [PatchSet(p, centres, stride, (width, height)) for p in patches]

    def rerank(self, predictions: np.ndarray, queries, database) -> tuple[np.ndarray, np.ndarray]:
        database_patches, query_patches = database.patches, queries.patches
        self.codec = PatchCodec.fit_if_compact(database.patches, *self.compact)
        if self.codec is not None:  # stored as the map stores them, queries projected
            database_patches = self.codec.decode(self.codec.encode(database.patches))
            query_patches = self.codec.project(queries.patches)
        self.patches_per_image = int(database_patches.shape[1])
        self.patch_dim = int(database_patches.shape[2])
        if hasattr(self.reranker, "check"):
            self.reranker.check(self.patch_dim)
        scores, reordered, self.times = rerank_predictions(
            self.reranker, predictions, self._sets(query_patches), self._sets(database_patches), self.k
        )
        return scores, reordered

    def cost(self, cost: dict) -> dict:
        rerank_ms = float(np.median(self.times)) if self.times else 0.0
        added = {
            "rerank_ms": rerank_ms,
            "rerank_p90_ms": float(np.percentile(self.times, 90)) if self.times else 0.0,
            "patch_bytes": self.patches_per_image
            * (self.codec.bytes_per_patch() if self.codec else 2 * self.patch_dim),
            "patches_per_image": self.patches_per_image,
            "total_ms": cost["total_ms"] + rerank_ms,
        }
        matcher = getattr(self.reranker, "matcher", None)
        if matcher is not None:
            added |= {
                "matcher_params": sum(p.numel() for p in matcher.parameters()),
                "matcher_flops": self.pair_flops(),
            }
        return added

    def pair_flops(self) -> int:
        """FLOPs of matching one pair of images (``torch.utils.flop_counter``; 2 per multiply-add)."""
        from torch.utils.flop_counter import FlopCounterMode

        matcher, n = self.reranker.matcher, self.patches_per_image
        patches, positions = torch.zeros(1, n, self.patch_dim), torch.zeros(1, n, 2)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            matcher(patches, positions, patches, positions)
        return int(counter.get_total_flops())

    def describe(self) -> dict:
        described = {"name": self.name, "k": self.k, "patches": self.spec.rule(), **self.reranker.describe()}
        if self.codec is not None:
            described["patch_codec"] = self.codec.describe()
        return described
