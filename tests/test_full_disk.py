"""A full disk while writing an index or a training checkpoint: one line naming the file, exit
1, and nothing half-written left behind. The disk is a tmpfs of a few hundred KB, which needs
root (CI and the developers' machines run as root); elsewhere the tests skip and say so."""

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()

    def mounted(kilobytes: int):
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(mount)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
        return mount

    yield mounted
    subprocess.run(["umount", str(mount)], capture_output=True)


def _one_storage_line(result, name: str) -> None:
    output = result.output.strip()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), output[-300:]
    last = output.splitlines()[-1]
    assert last.startswith("Error: ") and name in last and "no space left on the device" in last, last


def test_index_build_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_disk):
    descriptors = tmp_path / "descriptors"
    descriptors.mkdir()
    np.save(descriptors / "database.npy", np.random.default_rng(0).random((2000, 128), dtype=np.float32))
    disk = tiny_disk(64)
    result = CliRunner().invoke(
        main, ["index", "build", "--descriptors", str(descriptors), "--index", "Flat", "--out", str(disk / "i.faiss")]
    )
    _one_storage_line(result, "i.faiss")
    assert list(disk.iterdir()) == []  # no part of the unfinished index


@pytest.mark.slow
def test_train_on_a_full_disk_is_one_line_naming_the_checkpoint(tmp_path, tiny_disk):
    data = generate_synthetic(
        tmp_path / "street", SyntheticSpec(num_places=24, train_places=16, val_places=4, width=96, height=72)
    )
    disk = tiny_disk(300)
    argv = ["train", "--backbone", "squeezenet", "--aggregator", "gem", "--train-dataset", str(data)]
    argv += ["--size", "72x96", "--epochs", "1", "--queries-per-epoch", "8", "--run-dir", str(disk / "run")]
    result = subprocess.run([sys.executable, "-m", "edgevpr.cli", *argv], capture_output=True, text=True)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-500:]
    assert last.startswith("Error: ") and "best.pt: no space left on the device" in last, last
    assert not [p for p in (disk / "run").iterdir() if p.name.endswith(".tmp")]
