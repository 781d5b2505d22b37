"""A writer killed (SIGKILL) at every step of writing a checkpoint or a store row leaves the
old artefact or the new one, never a mix (index and map writes: test_search, test_maps)."""

import sqlite3
from pathlib import Path

import pytest
import torch

from edgevpr.explore.store import Store
from edgevpr.models.checkpoint import read_checkpoint, save_checkpoint
from tests.killpoints import kill_at_every_step
from tests.test_explore_analysis import _row


@pytest.mark.slow
def test_a_checkpoint_is_old_or_new_after_a_kill_at_any_step(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(1000)}, "config": {}, "state": {"epoch": 1}})
    payload = "{'model': {'w': torch.ones(1000)}, 'config': {}, 'state': {'epoch': 2}}"
    script = "\n".join(
        [
            "import torch",
            "from edgevpr.models.checkpoint import save_checkpoint",
            f"save_checkpoint({str(path)!r}, {payload})",
        ]
    )
    seen = []

    def check(killed_at):
        payload = read_checkpoint(path)
        epoch, weights = payload["state"]["epoch"], payload["model"]["w"]
        assert (epoch, float(weights.sum())) in ((1, 0.0), (2, 1000.0)), f"killed at step {killed_at}: a mix"
        seen.append(epoch)

    steps = kill_at_every_step(script, check, writers=("torch.save",))
    assert steps >= 2 and seen[0] == 1 and seen[-1] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temporary left behind


@pytest.mark.slow
def test_a_store_row_is_there_whole_or_not_at_all_after_a_kill_at_any_step(tmp_path):
    path = tmp_path / "runs.db"
    store = Store(path)
    store.add(_row("old", "mobilenetv2", 50.0, 2.0, 10.0))
    store.close()
    script = (
        "from edgevpr.explore.store import Store\nfrom tests.test_explore_analysis import _row\n"
        f"store = Store({str(path)!r})\n"
        "class Counted:\n"
        "    def __init__(self, connection): self.connection = connection\n"
        "    def __getattr__(self, name):\n"
        "        value = getattr(self.connection, name)\n"
        "        return step(value) if name in ('execute', 'commit') else value\n"
        "    def __enter__(self): return step(self.connection.__enter__)()\n"
        "    def __exit__(self, *exc): return step(self.connection.__exit__)(*exc)\n"
        "store.connection = Counted(store.connection)\n"
        "store.add(_row('new', 'squeezenet', 30.0, 1.0, 5.0))\n"
    )
    seen = []

    def check(killed_at):
        reopened = Store(path)
        rows = {row["key"]: row for row in reopened.rows()}
        assert reopened.integrity() == "ok" and set(rows) in ({"old"}, {"old", "new"}), f"killed at {killed_at}"
        if "new" in rows:
            assert rows["new"]["backbone"] == "squeezenet" and rows["new"]["recall_1"] == 30.0  # whole
        seen.append(len(rows))
        reopened.close()

    steps = kill_at_every_step(script, check, writers=("os.fsync",), cwd=str(Path(__file__).resolve().parents[1]))
    assert steps >= 2 and seen[0] == 1 and seen[-1] == 2
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_map_add_with_patches_killed_at_any_step_keeps_descriptors_and_patches_together(tmp_path, tiny_street):
    import shutil

    from edgevpr.config import load_config
    from edgevpr.extraction.patches import PatchSpec
    from edgevpr.maps import Map, ModelSource
    from tests.conftest import utm_name, write_image

    folder, pristine = tmp_path / "map", tmp_path / "pristine"
    config = load_config(overrides={"model": {"backbone": "squeezenet"}, "data": {"size": (72, 96)}})
    built = Map.build(ModelSource(config=config), tiny_street / "database", pristine, patches=PatchSpec((2,), (1,)))
    shutil.copytree(pristine, folder)
    old = len(built.names)
    extra = tmp_path / "extra"
    for i in range(2):
        write_image(extra / utm_name(600000 + 10 * i, 4100000, f"x{i}"), 70 + i, size=(96, 72))
    script = f"from edgevpr.maps import Map\nMap.load({str(folder)!r}).add({str(extra)!r})\n"
    seen = []

    def check(killed_at):
        loaded = Map.load(folder)
        count = len(loaded.names)
        assert count in (old, old + 2), f"killed at step {killed_at}: {count} entries"
        assert loaded.patches.array.shape[0] == count == len(loaded.descriptors), f"killed at step {killed_at}"
        seen.append(count)
        if killed_at is not None:  # the next run adds to the old map again
            shutil.rmtree(folder)
            shutil.copytree(pristine, folder)

    steps = kill_at_every_step(script, check, writers=("faiss.write_index", "numpy.save", "torch.save"))
    assert steps >= 5 and seen[0] == old and seen[-1] == old + 2


@pytest.mark.slow
def test_train_matcher_killed_at_any_step_leaves_a_loadable_matcher(tmp_path, training_street):
    """A first run of one epoch, then a resumed run to two epochs killed at every step: the
    matcher file and the resumable state always load, and the run can always finish."""
    from edgevpr.rerank.matcher_file import load_matcher

    run = tmp_path / "run"
    argv = ["train-matcher", "--backbone", "squeezenet", "--size", "72x96", "--train-dataset", str(training_street)]
    argv += ["--patch-size", "2", "--matcher-dim", "16", "--matcher-layers", "1", "--run-dir", str(run)]
    script = "from edgevpr.cli import main\nmain({!r}, standalone_mode=False)\n"
    first = subprocess_run(script.format([*argv, "--epochs", "1"]))
    assert first.returncode == 0, first.stderr[-500:]

    def check(killed_at):
        matcher, meta = load_matcher(run / "matcher.npz")
        assert meta["epoch"] in (-1, 0, 1), f"killed at step {killed_at}"
        state = torch.load(run / "matcher_state.pt", weights_only=True)
        assert state["epoch"] in (0, 1), f"killed at step {killed_at}"

    steps = kill_at_every_step(script.format([*argv, "--epochs", "2"]), check, writers=("torch.save", "numpy.savez"))
    assert steps >= 3
    assert torch.load(run / "matcher_state.pt", weights_only=True)["epoch"] == 1


def subprocess_run(script: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_convert_killed_at_any_step_leaves_no_half_dataset(tmp_path):
    from edgevpr.config import DataConfig
    from edgevpr.data.dataset import load_dataset
    from tests.conftest import write_image

    source = tmp_path / "walk"
    (source / "database").mkdir(parents=True)
    (source / "database.csv").write_text("name,x,y\n" + "".join(f"d{i}.jpg,{10 * i},0\n" for i in range(4)))
    (source / "queries.csv").write_text("name,x,y\nq0.jpg,12,0\n")
    for i in range(4):
        write_image(source / "database" / f"d{i}.jpg", i)
    write_image(source / "queries" / "q0.jpg", 9)
    destination = tmp_path / "out"
    script = f"from edgevpr.data.convert import convert\nconvert('csv', {str(source)!r}, {str(destination)!r})\n"

    def check(killed_at):
        if destination.exists():  # whole, or not there at all
            dataset = load_dataset(DataConfig(dataset=str(destination)))
            assert len(dataset.database_paths) == 4 and dataset.positives[0].tolist() == [0, 1, 2, 3]
        elif killed_at is None:
            raise AssertionError("a finished conversion left no dataset")

    steps = kill_at_every_step(script, check, writers=("edgevpr.atomic.write_json",))
    assert steps >= 2
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".converting")]
    assert leftovers == []  # the killed runs' temporaries were removed by the one that finished
