"""The attention matcher as a re-ranker (``--rerank attention [--matcher FILE]``): the
query's patches against all K candidates as one batch; each candidate's score is the
transported mass between real patches (``rerank.matcher.image_score``). Without a file it is
the untrained matcher with the similarity prior (Sinkhorn on the raw patch cosine; its learned
scores are gated at 0), the best attention matcher measured here (docs/reranking.md), and the
result says so."""

from __future__ import annotations

import numpy as np
import torch

from edgevpr.errors import ConfigError
from edgevpr.rerank.matcher import AttentionMatcher, image_score, normalised_positions, patch_norms
from edgevpr.rerank.matcher_file import load_matcher
from edgevpr.rerank.matcher_onnx import INPUTS
from edgevpr.rerank.registry import RERANKERS, PatchSet, Reranker


def stacked_patches(sets: list[PatchSet]) -> torch.Tensor:
    """Stacked patches (K, n, D) of sets of one patch count, as float32."""
    return torch.from_numpy(np.stack([np.asarray(s.patches, dtype=np.float32) for s in sets]))


def patch_tensors(sets: list[PatchSet]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked patches (K, n, D) and normalised positions (K, n, 2) of sets of one patch count."""
    patches = stacked_patches(sets)
    positions = torch.from_numpy(np.stack([np.asarray(s.positions, dtype=np.float32) for s in sets]))
    extent = torch.tensor([list(s.extent) for s in sets], dtype=torch.float32)[:, None, :]
    return patches, normalised_positions(positions, extent)


@RERANKERS.register("attention")
class AttentionReranker(Reranker):
    needs_matcher = True
    untrained_default = True  # without --matcher: the untrained matcher with the similarity prior
    UNTRAINED = "untrained, similarity prior"

    def __init__(self, path: str | None = None):
        self.path, self.session, self.meta = path or self.UNTRAINED, None, {}
        if path is None:
            self.matcher = None  # built for the patch dimension it first meets (check)
        elif str(path).endswith(".onnx"):  # exported by `edgevpr export-matcher`, run by ONNX Runtime
            self.session, self.meta = onnx_matcher(path)
            self.matcher = AttentionMatcher(**self.meta["config"])  # for its parameter count and FLOPs
        else:
            self.matcher, self.meta = load_matcher(path)

    @classmethod
    def of(cls, matcher: AttentionMatcher, name: str = "in training") -> AttentionReranker:
        """A re-ranker around a matcher held in memory (validation during training)."""
        reranker = cls.__new__(cls)
        reranker.path, reranker.session, reranker.matcher, reranker.meta = name, None, matcher.eval(), {}
        return reranker

    def check(self, patch_dim: int) -> None:
        if self.matcher is None:
            torch.manual_seed(0)  # the learned part is gated at 0: its values do not change the scores
            self.matcher = AttentionMatcher(in_dim=patch_dim, prior=True).eval()
        expected = self.matcher.config["in_dim"]
        if patch_dim != expected:
            raise ConfigError(f"{self.path}: the matcher takes {expected}-D patches, the model gives {patch_dim}-D")

    @torch.inference_mode()
    def prepare(self, database: list[PatchSet]) -> None:
        """Encode every map image's patches once (projection + position, and the patch norms
        the prior divides by): they depend on that image only, so a query then costs the
        attention layers, the similarity and the transport alone."""
        if self.session is not None or not database:
            return
        self.check(database[0].patches.shape[1])
        self.encoded = {}
        for start in range(0, len(database), 64):
            chunk = database[start : start + 64]
            patches, positions = patch_tensors(chunk)
            encoded = self.matcher.encode(patches, positions)
            norms = patch_norms(patches) if self.matcher.prior else [None] * len(chunk)
            self.encoded.update({id(s.patches): (e, n) for s, e, n in zip(chunk, encoded, norms)})

    @torch.inference_mode()
    def score(self, query: PatchSet, candidates: list[PatchSet]) -> np.ndarray:
        self.check(query.patches.shape[1])
        q_patches, q_positions = patch_tensors([query])
        cached = getattr(self, "encoded", {})
        count = len(candidates)
        d_norms = None
        if self.session is None and cached and all(id(c.patches) in cached for c in candidates):
            encoded_d = torch.stack([cached[id(c.patches)][0] for c in candidates])
            d_patches = stacked_patches(candidates) if self.matcher.prior else None
            d_norms = torch.stack([cached[id(c.patches)][1] for c in candidates]) if self.matcher.prior else None
        else:
            d_patches, d_positions = patch_tensors(candidates)
            if self.session is not None:
                feeds = [q_patches.expand(count, -1, -1), q_positions.expand(count, -1, -1), d_patches, d_positions]
                feeds = dict(zip(INPUTS, [np.ascontiguousarray(t.numpy()) for t in feeds]))
                return self.session.run(["score"], feeds)[0]
            encoded_d = self.matcher.encode(d_patches, d_positions)
        encoded_q = self.matcher.encode(q_patches, q_positions).expand(count, -1, -1)
        similarity = None if d_patches is None else self.matcher.similarity(q_patches, d_patches, d_norms)
        log_p = self.matcher.log_assignment(encoded_q, encoded_d, scaled=True, similarity=similarity)
        return image_score(log_p).numpy()

    def describe(self) -> dict:
        params = sum(p.numel() for p in self.matcher.parameters())
        runtime = "onnxruntime" if self.session is not None else "pytorch"
        return {"matcher": self.path, "runtime": runtime, "params": params, **self.matcher.config}


def onnx_matcher(path: str):
    """An ONNX Runtime session of an exported matcher and the metadata it carries."""
    import json

    import onnx

    from edgevpr.rerank.matcher_onnx import METADATA_KEY, session

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as error:  # onnx raises several types for a damaged file
        raise ConfigError(f"{path}: not a readable ONNX file ({error.__class__.__name__})") from None
    entries = {e.key: e.value for e in proto.metadata_props}
    if METADATA_KEY not in entries:
        raise ConfigError(f"{path}: not a matcher exported by `edgevpr export-matcher`")
    return session(path), json.loads(entries[METADATA_KEY])
