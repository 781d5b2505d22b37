"""Patch-NetVLAD's own implementation (the PyPI package ``patchnetvlad``, Hausler et al. 2021) as
the referee of edgevpr's VGG16 + NetVLAD: the same random weights, saved as its ``.pth.tar``
and loaded by edgevpr with ``--weights``, give the same global descriptors (WPCA included) and
the same patch descriptors, and edgevpr's ``ransac`` re-ranker finds the same mutual nearest
neighbours and, within RANSAC's sampling noise, the same inlier counts as its OpenCV matcher.

Its ``faiss`` requirement names a distribution PyPI has no build of for this Python, so it is
installed without dependencies (README's test command); the test skips when it is absent."""

from __future__ import annotations

import configparser

import numpy as np
import pytest
import torch
from PIL import Image

from edgevpr.compat import torchvision
from edgevpr.config import IMAGENET_MEAN, IMAGENET_STD, load_config
from edgevpr.extraction.patches import PatchModel, PatchSpec
from edgevpr.models import build_model
from edgevpr.models.resolve import resolve_config
from edgevpr.rerank.mutual import mutual_matches
from edgevpr.rerank.registry import PatchSet, make_reranker
from tests.conftest import GARDENS_POINT, needs

pytest.importorskip("cv2", reason="OpenCV is absent: pip install opencv-python-headless")
generic = pytest.importorskip(
    "patchnetvlad.models.models_generic", reason="patchnetvlad is absent: pip install --no-deps patchnetvlad==0.1.8"
)
from patchnetvlad.models.local_matcher import calc_keypoint_centers_from_patches  # noqa: E402
from patchnetvlad.tools.patch_matcher import PatchMatcher, torch_nn  # noqa: E402

HEIGHT, WIDTH, PATCH = 224, 288, 3
PLACES = (10, 40, 70, 100, 130, 160)


def _images() -> torch.Tensor:
    """Gardens Point day_left then day_right at the same places, ImageNet-normalised."""
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]

    def load(path):
        image = Image.open(path).convert("RGB").resize((WIDTH, HEIGHT), Image.BILINEAR)
        return (torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 - mean) / std

    return torch.stack(
        [load(GARDENS_POINT / side / f"Image{i:03d}.jpg") for side in ("day_left", "day_right") for i in PLACES]
    )


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(Patch-NetVLAD's outputs, edgevpr's outputs, edgevpr's patch model) on the same images."""
    torch.manual_seed(0)
    options = {"pooling": "patchnetvlad", "num_clusters": "16", "vladv2": "False", "num_pcs": "128"}
    config = configparser.ConfigParser()
    config["global_params"] = options | {"patch_sizes": str(PATCH), "strides": "1"}
    encoder = torch.nn.Sequential(*list(torchvision.models.vgg16().features.children())[:-2])
    theirs = generic.get_model(encoder, 512, config["global_params"], append_pca_layer=True).eval()
    path = tmp_path_factory.mktemp("pnv") / "patchnetvlad.pth.tar"
    torch.save({"epoch": 1, "state_dict": theirs.state_dict(), "best_score": 0.0}, path)

    resolved = resolve_config(load_config(overrides={"model": {"weights": str(path)}}))
    assert resolved.data.size == (480, 640) and resolved.model.mean == IMAGENET_MEAN
    ours = PatchModel(build_model(resolved.model).eval(), PatchSpec((PATCH,), (1,)))
    images = _images()
    with torch.no_grad():
        local, vlad = theirs.pool(theirs.encoder(images))
        patches = local[0].permute(2, 0, 1).reshape(-1, local[0].size(1))  # as its feature_extract.py
        their_patches = generic.get_pca_encoding(theirs, patches).reshape(local[0].size(2), len(images), -1)
        their = (generic.get_pca_encoding(theirs, vlad), their_patches.permute(1, 0, 2))
        return their, ours(images), ours


@needs(GARDENS_POINT)
def test_global_and_patch_descriptors_equal_patchnetvlads(both):
    (their_global, their_patches), (our_global, our_patches), _ = both
    assert our_global.shape == (12, 128) and our_patches.shape == their_patches.shape == (12, 12 * 16, 128)
    assert torch.allclose(our_global, their_global, atol=1e-5)
    assert torch.allclose(our_patches, their_patches, atol=1e-5)


@needs(GARDENS_POINT)
@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside patchnetvlad's keypoint code
def test_ransac_agrees_with_patchnetvlads_matcher(both):
    """On Patch-NetVLAD's patches: the same mutual neighbour pairs; inliers: OpenCV's RANSAC (up to 2000 hypotheses,
    then stops at 99.5 % confidence) against edgevpr's 256 batched hypotheses, both at 1.5
    patch strides; measured here within 10 % + 3 of each other (largest gap 9 of 97), and
    the same best candidate for every query."""
    (_, their_patches), _, model = both
    keypoints, indices = calc_keypoint_centers_from_patches(
        {"imageresizeH": HEIGHT, "imageresizeW": WIDTH}, PATCH, PATCH, 1, 1
    )
    matcher = PatchMatcher("RANSAC", [PATCH], [1], [keypoints], [indices])
    sets = [PatchSet(p.numpy(), model.centres(), 1) for p in their_patches]  # the same patches for both
    ransac, count = make_reranker("ransac"), their_patches.shape[1]
    for query in range(len(PLACES)):
        candidates = range(len(PLACES), 2 * len(PLACES))
        theirs = np.array(
            [-matcher.match([their_patches[query]], [their_patches[c].T.contiguous()])[0][0] for c in candidates]
        )
        ours = ransac.score(sets[query], [sets[c] for c in candidates])
        their_inliers, our_inliers = np.round(theirs * count), np.round(ours * count)
        assert np.all(np.abs(their_inliers - our_inliers) <= 0.1 * np.maximum(their_inliers, our_inliers) + 3)
        assert their_inliers.argmax() == our_inliers.argmax() == query
        for candidate in candidates:
            forward, backward = torch_nn(their_patches[query], their_patches[candidate].T.contiguous())
            forward, backward = forward.numpy(), backward.numpy()
            pairs = {(int(forward[d]), d) for d in range(count) if backward[forward[d]] == d}
            assert pairs == set(
                zip(*(a.tolist() for a in mutual_matches(sets[query].patches, sets[candidate].patches)))
            )
