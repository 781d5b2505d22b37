"""``edgevpr train`` end to end on the synthetic street: checkpoints, resume after kill -9,
two processes through torchrun (gloo), place-grouped batches, and one-line config errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.config import load_config
from tests.conftest import write_image

SMALL = [
    "--backbone",
    "resnet18_conv4",
    "--aggregator",
    "gem",
    "--size",
    "72x96",
    "--threads",
    "1",
    "--queries-per-epoch",
    "16",
    "--refresh-every",
    "8",
    "--negatives",
    "4",
    "--cache-database",
    "10",
    "--batch-triplets",
    "4",
    "--frozen-bn",
]


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _comparable(metrics):
    return [(e["epoch"], round(e["loss"], 6), e["val_recall"]) for e in metrics["history"]]


def _process(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "edgevpr.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | {"TQDM_DISABLE": "1"},
    )


@pytest.mark.slow
def test_train_writes_run_folder_and_checkpoint_evaluates_the_same(tmp_path, training_street):
    run = tmp_path / "run"
    result = _cli(
        "train",
        *SMALL,
        "--train-dataset",
        training_street,
        "--dataset",
        training_street,
        "--epochs",
        2,
        "--miner",
        "full",
        "--flip",
        "--brightness",
        0.2,
        "--crop-scale",
        0.7,
        "--run-dir",
        run,
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "train.log",
        "metrics.json",
        "last.pt",
        "best.pt",
        "test_results.json",
    }
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["history"]] == [1, 2] and metrics["finished"] == "all epochs"
    assert metrics["history"][0]["cache"]["images"] == 2 * (24 + 8)  # full mining: the database and the queries
    assert (
        metrics["initial_val_recall"] is not None and str(training_street / "val") in (run / "config.yaml").read_text()
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (
        saved["train"]["miner"] == "full"
        and saved["train"]["flip"] is True
        and saved["model"]["backbone"] == "resnet18_conv4"
    )

    out = tmp_path / "eval.json"
    result = _cli(
        "eval", "--checkpoint", run / "best.pt", "--dataset", training_street, "--out", out, "--latency-runs", 20
    )
    assert result.exit_code == 0, result.output
    evaluated = json.loads(out.read_text())
    assert evaluated["recall"] == metrics["test"]["recall"]
    assert evaluated["model"]["backbone"] == "resnet18_conv4" and evaluated["protocol"]["resize"] == "size=72x96"


@pytest.mark.slow
def test_kill_9_then_resume_ends_like_an_uninterrupted_run(tmp_path, training_street):
    common = [
        *SMALL,
        "--train-dataset",
        training_street,
        "--epochs",
        2,
        "--queries-per-epoch",
        32,
        "--crop-scale",
        0.6,
        "--flip",
        "--contrast",
        0.3,
        "--miner",
        "partial",
    ]
    straight = _process("train", *common, "--run-dir", tmp_path / "straight")
    assert straight.wait(timeout=300) == 0, straight.stdout.read()

    killed_dir = tmp_path / "killed"
    victim = _process("train", *common, "--run-dir", killed_dir)
    deadline = time.time() + 240
    while time.time() < deadline:
        metrics = killed_dir / "metrics.json"
        if metrics.exists() and json.loads(metrics.read_text())["epochs"] >= 1:
            break
        assert victim.poll() is None, victim.stdout.read()
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    interrupted = json.loads((killed_dir / "metrics.json").read_text())
    assert interrupted["epochs"] < 2 and interrupted["finished"] is None

    resumed = _process("train", *common, "--run-dir", killed_dir, "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resumed from" in output
    expected = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert _comparable(json.loads((killed_dir / "metrics.json").read_text())) == _comparable(expected)


@pytest.mark.slow
def test_two_processes_through_torchrun_match_one(tmp_path, training_street):
    common = [*SMALL, "--train-dataset", training_street, "--epochs", 1]
    single = _cli("train", *common, "--run-dir", tmp_path / "one")
    assert single.exit_code == 0, single.output
    launched = _process("train", *common, "--run-dir", tmp_path / "two", "--distributed", "torchrun", "--nproc", 2)
    output = launched.communicate(timeout=300)[0]
    assert launched.returncode == 0, output
    assert "2 process(es)" in (tmp_path / "two" / "train.log").read_text()
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["history"][0]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["history"][0]
    # Same batches, same caches; DDP averages the two halves' gradients: only float summation order differs.
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)
    assert two["cache"]["images"] == one["cache"]["images"]


def test_place_grouped_batches_with_a_metric_learning_loss(tmp_path):
    for place in range(6):
        for k in range(3):
            write_image(tmp_path / "places" / f"p{place}" / f"{k}.jpg", seed=place, size=(48, 36))
    result = _cli(
        "train",
        "--backbone",
        "resnet18_conv4",
        "--aggregator",
        "netvlad",
        "--clusters",
        4,
        "--threads",
        1,
        "--train-places",
        tmp_path / "places",
        "--loss",
        "MultiSimilarityLoss",
        "--miner",
        "MultiSimilarityMiner",
        "--places-per-batch",
        3,
        "--images-per-place",
        2,
        "--queries-per-epoch",
        12,
        "--epochs",
        2,
        "--run-dir",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert [e["batches"] for e in history] == [2, 2] and all(e["val_recall"] is None for e in history)
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    assert bool(state["aggregator.initialised"])  # NetVLAD clusters came from k-means on training images


def test_yaml_config_with_flag_overrides(tmp_path, training_street):
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"backbone": "resnet18_conv4", "aggregator": "mac"},
                "data": {"size": [72, 96]},
                "train": {
                    "dataset": str(training_street),
                    "epochs": 5,
                    "queries_per_epoch": 8,
                    "refresh_every": 8,
                    "negatives": 4,
                    "miner": "random",
                    "optimizer": "sgd",
                    "lr": 0.01,
                    "binary_weight": 0.5,
                },
                "eval": {"threads": 1},
            }
        )
    )
    result = _cli("train", "--config", config, "--epochs", 1, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["train"]["optimizer"] == "sgd"
    assert saved["train"]["binary_weight"] == 0.5
    assert saved["train"]["weight_decay"] == 0.001 and saved["model"]["aggregator"] == "mac"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss", "NoSuchLoss"], "unknown train.loss 'NoSuchLoss'"),
        (["--miner", "hardest"], "unknown train.miner 'hardest'"),
        (["--train-dataset", "MISSING"], "no train split"),
        (["--epochs", 0], "train.epochs must be >= 1"),
        (["--binary-weight", "-1"], "binary_weight"),
    ],
)
def test_bad_training_config_is_a_one_line_error(tmp_path, training_street, args, message):
    base = ["train", "--backbone", "resnet18_conv4", "--run-dir", tmp_path / "run"]
    if "--train-dataset" not in args:
        base += ["--train-dataset", training_street]
    args = [str(tmp_path / "nowhere") if a == "MISSING" else a for a in args]
    result = _cli(*base, *args)
    assert result.exit_code != 0
    assert message in result.output and result.output.strip().count("\n") == 0, result.output


def test_resume_refuses_a_changed_config(tmp_path, training_street):
    run = tmp_path / "run"
    assert _cli("train", *SMALL, "--train-dataset", training_street, "--epochs", 1, "--run-dir", run).exit_code == 0
    result = _cli(
        "train", *SMALL, "--train-dataset", training_street, "--epochs", 1, "--run-dir", run, "--lr", 0.5, "--resume"
    )
    assert result.exit_code != 0 and "train.lr: 0.0001 -> 0.5" in result.output
    again = _cli("train", *SMALL, "--train-dataset", training_street, "--epochs", 1, "--run-dir", run)
    assert again.exit_code != 0 and "pass --resume" in again.output


def test_a_run_whose_every_epoch_is_worse_keeps_the_starting_model(tmp_path, training_street, monkeypatch):
    from edgevpr.models import build_model
    from edgevpr.models.checkpoint import read_checkpoint
    from edgevpr.train import loop

    recalls = iter([{"1": 50.0, "5": 90.0}, {"1": 40.0, "5": 70.0}, {"1": 45.0, "5": 80.0}])
    monkeypatch.setattr(loop.Trainer, "validate", lambda self: next(recalls))
    run = tmp_path / "run"
    result = _cli("train", *SMALL, "--train-dataset", training_street, "--epochs", 2, "--run-dir", run)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] == 0 and metrics["best_val_recall5"] == 90.0 and metrics["epochs"] == 2
    torch.manual_seed(0)
    config = read_checkpoint(run / "best.pt")["config"]
    start = build_model(load_config(overrides={"model": config["model"]}).model).state_dict()
    best = read_checkpoint(run / "best.pt")["model"]
    last = read_checkpoint(run / "last.pt")["model"]
    assert all(torch.equal(best[k], start[k]) for k in start)  # best.pt is the model before training
    assert not all(torch.equal(last[k], start[k]) for k in start)
    assert "no epoch beat the model before training" in (run / "train.log").read_text()
