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
