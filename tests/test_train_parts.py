"""Losses, miners, augmentation, training sets and freezing, on hand-made or generated data."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgevpr.config import ModelConfig, TrainConfig
from edgevpr.data.folder_format import utm_array
from edgevpr.data.train_sets import TripletSet, load_place_set, load_triplet_set
from edgevpr.errors import ConfigError, DatasetError
from edgevpr.models import build_model
from edgevpr.train.augment import Augment
from edgevpr.train.freeze import freeze_batch_norm, freeze_stages, set_training
from edgevpr.train.losses import (
    metric_learning_loss,
    metric_learning_miner,
    straight_through_codes,
    triplet_cosine,
    triplet_l2,
)
from edgevpr.train.mining import Miner
from tests.conftest import write_image


def test_triplet_l2_on_a_hand_made_case():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8]])  # ||q-p||^2 = 0.16 + 0.64 = 0.8
    n = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # 2.0 and 4.0
    # max(0, 0.8 - 2.0 + 0.1) + max(0, 0.8 - 4.0 + 0.1) = 0
    assert triplet_l2(q, p, n, 0.1).item() == pytest.approx(0.0)
    # margin 1.5: (0.8 - 2 + 1.5) + 0 = 0.3
    assert triplet_l2(q, p, n, 1.5).item() == pytest.approx(0.3)
    # two triplets are averaged: the second one costs 0.8 - 0.8 + 0.1 = 0.1 per negative
    q2, p2, n2 = torch.cat([q, q]), torch.cat([p, p]), torch.cat([n, torch.tensor([[[0.6, 0.8], [0.6, 0.8]]])])
    assert triplet_l2(q2, p2, n2, 0.1).item() == pytest.approx((0.0 + 0.2) / 2)


def test_sign_codes_pass_gradients_straight_through():
    x = torch.tensor([[0.3, -0.2, 0.5, 0.1]], requires_grad=True)
    centre = torch.tensor([0.2, 0.0, 0.0, 0.2])
    codes = straight_through_codes(x, centre)
    assert codes.tolist() == [[0.5, -0.5, 0.5, -0.5]]  # sign(x - centre) / sqrt(4)
    (codes * torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum().backward()
    assert x.grad.tolist() == [[0.5, 1.0, 1.5, 2.0]]  # the identity, scaled by 1 / sqrt(4)
    # a triplet whose codes already separate costs nothing; flipping the positive's signs costs
    q = straight_through_codes(torch.tensor([[1.0, -1.0]]), torch.zeros(2))
    n = straight_through_codes(torch.tensor([[[-1.0, 1.0]]]), torch.zeros(2))
    assert triplet_l2(q, q, n, 0.1).item() == 0.0 and triplet_l2(q, n[:, 0], q[:, None], 0.1).item() > 0


def test_triplet_cosine_on_a_hand_made_case():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8]])  # cos 0.6
    n = torch.tensor([[[0.8, 0.6], [0.0, 1.0]]])  # cos 0.8 and 0
    # max(0, 0.1 - 0.6 + 0.8) + max(0, 0.1 - 0.6 + 0) = 0.3
    assert triplet_cosine(q, p, n, 0.1).item() == pytest.approx(0.3)


def test_metric_learning_loss_by_name_and_bad_names():
    loss = metric_learning_loss("MultiSimilarityLoss")
    embeddings = F.normalize(torch.randn(8, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    value = loss(embeddings, labels, metric_learning_miner("MultiSimilarityMiner")(embeddings, labels))
    assert torch.isfinite(value)
    with pytest.raises(ConfigError, match="unknown train.loss 'NoSuchLoss'"):
        metric_learning_loss("NoSuchLoss")
    with pytest.raises(ConfigError, match="needs triplet data"):
        metric_learning_loss("triplet_l2")


def _line_set(n=60, spacing=5.0):
    """Database and queries along a line, every ``spacing`` metres, queries offset by 1 m."""
    positions = np.arange(n) * spacing
    from sklearn.neighbors import NearestNeighbors

    knn = NearestNeighbors().fit(positions[:, None])
    pos = [np.sort(i) for i in knn.radius_neighbors((positions + 1)[:, None], 10.0, return_distance=False)]
    near = [np.sort(i) for i in knn.radius_neighbors((positions + 1)[:, None], 25.0, return_distance=False)]
    paths = [f"img{i}.jpg" for i in range(n)]
    return TripletSet(paths, paths, pos, near, "test"), positions


@pytest.mark.parametrize("strategy", ["random", "full", "partial"])
def test_miners_return_valid_indices(strategy):
    data, positions = _line_set()
    rng = np.random.default_rng(0)
    features = F.normalize(torch.randn(len(positions), 16), dim=1).numpy()

    def describe(database, queries):
        return features[database], features[queries] * 0.5 + features[queries]

    miner = Miner(strategy, data, negatives=10, cache_database=20)
    queries = data.trainable(10)[:25]
    triplets, cost = miner.mine(queries, describe, rng)
    assert [t.query for t in triplets] == list(queries)
    for t in triplets:
        assert t.positive in data.positives[t.query]
        assert len(t.negatives) == 10 and len(set(t.negatives)) == 10
        assert all(abs(positions[n] - (positions[t.query] + 1)) > 25 for n in t.negatives)
    expected_db = {"full": 60, "partial": None, "random": None}[strategy]
    if expected_db:
        assert cost.images == expected_db + len(queries)
    assert cost.bytes == cost.images * 16 * 4 and cost.seconds >= 0
    if strategy == "full":  # the hardest valid negative is the most similar one beyond 25 m
        t = triplets[0]
        query_descriptor = features[t.query] * 1.5
        valid = np.setdiff1d(np.arange(60), data.non_negatives[t.query])
        assert t.negatives[0] == valid[np.argmax(features[valid] @ query_descriptor)]
        # the best positive is the most similar of the candidates
        candidates = data.positives[t.query]
        assert t.positive == candidates[np.argmax(features[candidates] @ query_descriptor)]


def test_miner_rejects_unknown_strategy():
    data, _ = _line_set()
    with pytest.raises(ConfigError, match="unknown train.miner 'hardest'"):
        Miner("hardest", data, 10)


def test_triplet_set_from_synthetic_split(training_street):
    data = load_triplet_set(TrainConfig(dataset=str(training_street)))
    assert len(data.database_paths) == 24 and len(data.query_paths) == 24
    database, queries = utm_array(data.database_paths), utm_array(data.query_paths)
    for q in range(len(queries)):
        distance = np.linalg.norm(database - queries[q], axis=1)
        assert (distance[data.positives[q]] <= 10).all()
        beyond = np.setdiff1d(np.arange(len(database)), data.non_negatives[q])
        assert (distance[beyond] > 25).all()
    # the train street is disjoint from the test street: nowhere within a kilometre
    test = utm_array(sorted((training_street / "database").glob("*.jpg")))
    assert np.min(np.linalg.norm(test[:, None] - database[None], axis=2)) > 1000


def test_frame_aligned_triplet_set_with_two_query_folders(tmp_path):
    for folder in ("db", "qa", "qb"):
        for i in range(30):
            write_image(tmp_path / folder / f"Image{i:03d}.jpg", seed=i)
    data = load_triplet_set(
        TrainConfig(
            database=str(tmp_path / "db"),
            queries=(str(tmp_path / "qa"), str(tmp_path / "qb")),
            tolerance_frames=2,
            negative_frames=5,
            frames=(0, 19),
        )
    )
    assert len(data.database_paths) == 20 and len(data.query_paths) == 40
    assert list(data.positives[22]) == [0, 1, 2, 3, 4] and list(data.non_negatives[22]) == list(range(0, 8))
    with pytest.raises(ConfigError, match="no training data"):
        load_triplet_set(TrainConfig())
    with pytest.raises(DatasetError, match="no train split"):
        load_triplet_set(TrainConfig(dataset=str(tmp_path)))


def test_place_set_groups_by_folder(tmp_path):
    for place in range(3):
        for k in range(place + 2):
            write_image(tmp_path / f"place{place}" / f"{k}.jpg", seed=10 * place + k)
    places = load_place_set(tmp_path, min_images=3)
    assert places.place_names == ["place1", "place2"] and list(places.labels) == [0, 0, 0, 1, 1, 1, 1]
    with pytest.raises(DatasetError, match="at least two place folders"):
        load_place_set(tmp_path, min_images=4)


def test_augmentation_is_seeded_keeps_size_and_flips():
    image = torch.rand(3, 40, 60)
    augment = Augment(brightness=0.4, contrast=0.4, saturation=0.4, crop_scale=0.5)
    a = augment(image, torch.Generator().manual_seed(3))
    b = augment(image, torch.Generator().manual_seed(3))
    c = augment(image, torch.Generator().manual_seed(4))
    assert a.shape == image.shape and torch.equal(a, b) and not torch.equal(a, c)
    plain = Augment()
    assert torch.equal(plain(image, torch.Generator().manual_seed(0), flip=True), image.flip(-1))
    with pytest.raises(ValueError, match="crop_scale"):
        Augment(crop_scale=0.0)


def test_frozen_stages_and_batch_norm_do_not_change():
    model = build_model(ModelConfig(backbone="resnet18_conv4", aggregator="gem"))
    freeze_stages(model.backbone, 5)  # conv1, bn1, relu, maxpool, layer1
    freeze_batch_norm(model)
    set_training(model, frozen_bn=True)
    first_conv = model.backbone.body[0].weight.clone()
    norm = model.backbone.body[-1][0].bn1
    stats = norm.running_mean.clone()
    later_conv = model.backbone.body[-1][0].conv1.weight.clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    assert torch.equal(model.backbone.body[0].weight, first_conv)
    assert torch.equal(norm.running_mean, stats) and not norm.training
    assert not torch.equal(model.backbone.body[-1][0].conv1.weight, later_conv)
    with pytest.raises(ConfigError, match="freeze_stages"):
        freeze_stages(model.backbone, 99)


def _any_process_worker(rank, port, results):
    import torch.distributed as dist

    from edgevpr.train.distributed import Context

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    context = Context(rank=rank, world=2)
    results[rank] = (context.any_process(rank == 1), context.any_process(False))
    dist.destroy_process_group()


@pytest.mark.slow
def test_time_limit_is_decided_by_all_processes_together():
    """One process past the deadline stops all of them (else the others wait in DDP's all-reduce)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_any_process_worker, args=(port, results), nprocs=2)
    assert dict(results) == {0: (True, False), 1: (True, False)}
