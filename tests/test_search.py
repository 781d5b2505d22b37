import faiss
import numpy as np
import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.errors import ConfigError
from edgevpr.search.descriptors import save_descriptor_set
from edgevpr.search.index import IndexSpec, build_index, exact_scores
from edgevpr.search.store import DiskRows, load_index, save_index

SPECS = ["Flat", "IVF16,Flat", "PQ8", "IVF16,PQ8", "IMI2x4,PQ8", "HNSW16", "IVF16,PQ8,Rerank30", "IMI2x4,PQ8,Rerank30"]


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    centres = _unit(rng, 20, 32)
    database = centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 32)).astype(np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    queries = database[:40] + 0.02 * rng.normal(size=(40, 32)).astype(np.float32)
    return database, queries / np.linalg.norm(queries, axis=1, keepdims=True)


@pytest.mark.parametrize("spec", SPECS)
def test_every_index_type_builds_saves_loads_searches(tmp_path, vectors, spec):
    database, queries = vectors
    index = build_index(database, spec)
    scores, ids = index.search(queries, 5)
    assert ids.shape == (40, 5) and (ids >= 0).all()
    assert (np.diff(scores, axis=1) <= 1e-5).all()  # best first, as similarities
    hit_rate = np.mean(ids[:, 0] == np.arange(40))
    assert hit_rate >= (1.0 if spec in ("Flat", "IVF16,Flat") or "Rerank" in spec else 0.6), hit_rate
    save_index(index, tmp_path / "x.faiss")
    loaded = load_index(tmp_path / "x.faiss", dim=32, metric="ip")
    assert loaded.params == index.params and str(loaded.spec) == spec
    if "Rerank" in spec:  # re-ranking rows are read from disk when asked for, never held
        assert isinstance(loaded.vectors, DiskRows) and loaded.vectors.shape == (index.ntotal, 32)
    _, again = loaded.search(queries, 5)
    assert (again == ids).all()


def test_imi_uses_l2_and_reports_inner_products(vectors):
    database, queries = vectors
    index = build_index(database, "IMI2x4,Flat")
    assert index.index.metric_type == faiss.METRIC_L2
    scores, ids = index.search(queries, 1)
    assert np.allclose(scores[:, 0], np.einsum("qd,qd->q", database[ids[:, 0]], queries), atol=1e-4)


def test_rerank_never_worsens_the_shortlist_top1(vectors):
    database, queries = vectors
    noisy = queries + 0.2 * np.random.default_rng(1).normal(size=queries.shape).astype(np.float32)
    plain = build_index(database, "PQ4")
    reranked = build_index(database, "PQ4,Rerank20")
    _, shortlist_top = plain.search(noisy, 1)
    _, rerank_top = reranked.search(noisy, 1)
    before = exact_scores(database, noisy, shortlist_top, "ip")[:, 0]
    after = exact_scores(database, noisy, rerank_top, "ip")[:, 0]
    assert (after >= before - 1e-6).all() and (after > before + 1e-6).any()


def test_mismatches_are_one_line_errors(tmp_path, vectors):
    database, _ = vectors
    save_index(build_index(database, "Flat"), tmp_path / "i.faiss")
    with pytest.raises(ConfigError, match=r"i\.faiss: index has dimension 32, descriptors have 64") as caught:
        load_index(tmp_path / "i.faiss", dim=64)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="built for metric ip, descriptors use l2"):
        load_index(tmp_path / "i.faiss", dim=32, metric="l2")
    with pytest.raises(ConfigError, match="cannot build index 'Nonsense12'"):
        build_index(database, "Nonsense12")
    with pytest.raises(ConfigError, match="do not fit"):
        build_index(database, "Flat", params="nprobe=4,bogus=3")
    assert IndexSpec.parse("IVF8,PQ4,Rerank50") == IndexSpec("IVF8,PQ4", 50)


def test_interrupted_write_keeps_previous_index(tmp_path, vectors, monkeypatch):
    database, queries = vectors
    path = tmp_path / "map.faiss"
    save_index(build_index(database, "Flat"), path)
    before = path.read_bytes()

    def dying_write(index, name):
        with open(name, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(faiss, "write_index", dying_write)
    with pytest.raises(KeyboardInterrupt):
        save_index(build_index(database[:100], "Flat"), path)
    assert path.read_bytes() == before  # the manifest still names the old parts
    assert len(list(tmp_path.glob("map.faiss.v*.faiss"))) == 1  # the old part; the broken new one is removed
    monkeypatch.undo()
    assert load_index(path).ntotal == 3000
    save_index(build_index(database[:100], "Flat"), path)  # the next write removes the leftovers
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "map.faiss" and len(list(tmp_path.iterdir())) == 2
    assert load_index(path).ntotal == 100


def test_cli_build_and_search(tmp_path, vectors):
    database, queries = vectors
    positives = {"positives": [[i] for i in range(40)]}
    save_descriptor_set(tmp_path / "d", database, queries, "ip", positives)
    runner = CliRunner()
    built = runner.invoke(
        main,
        [
            "index",
            "build",
            "--descriptors",
            str(tmp_path / "d"),
            "--index",
            "IVF16,PQ8,Rerank30",
            "--out",
            str(tmp_path / "m.faiss"),
        ],
    )
    assert built.exit_code == 0, built.output
    found = runner.invoke(
        main,
        [
            "index",
            "search",
            "--index",
            str(tmp_path / "m.faiss"),
            "--descriptors",
            str(tmp_path / "d"),
            "--k",
            "5",
            "--out",
            str(tmp_path / "p.npy"),
        ],
    )
    assert found.exit_code == 0, found.output
    assert '"1": 100.0' in found.output and np.load(tmp_path / "p.npy").shape == (40, 5)
    save_descriptor_set(tmp_path / "other", database[:, :16].copy(), queries[:, :16].copy())
    wrong = runner.invoke(
        main, ["index", "search", "--index", str(tmp_path / "m.faiss"), "--descriptors", str(tmp_path / "other")]
    )
    assert wrong.exit_code == 1 and "index has dimension 32, descriptors have 16" in wrong.output


@pytest.mark.slow
def test_a_kill_at_any_step_of_index_build_leaves_the_old_or_the_new_index(tmp_path, vectors):
    """Re-ranking index over a re-ranking index of another content: after a kill at every
    step of the write, the index answers exactly as the old one or exactly as the new one."""
    from tests.killpoints import kill_at_every_step

    database, queries = vectors
    old_db, new_db = database[:1500], database[1500:]
    np.save(tmp_path / "new.npy", new_db)
    path = tmp_path / "map.faiss"
    save_index(build_index(old_db, "PQ4,Rerank50"), path)
    old_answers = load_index(path).search(queries, 5)[1]
    new_answers = build_index(new_db, "PQ4,Rerank50").search(queries, 5)[1]
    script = "\n".join(
        [
            "import numpy as np",
            "from edgevpr.search.index import build_index",
            "from edgevpr.search.store import save_index",
            f"save_index(build_index(np.load({str(tmp_path / 'new.npy')!r}), 'PQ4,Rerank50'), {str(path)!r})",
        ]
    )
    states = []

    def check(killed_at):
        answers = load_index(path).search(queries, 5)[1]
        state = (
            "old" if np.array_equal(answers, old_answers) else "new" if np.array_equal(answers, new_answers) else "mix"
        )
        states.append(state)
        assert state != "mix", f"killed at step {killed_at}: a mix of the old and new index"

    steps = kill_at_every_step(script, check)
    assert steps >= 4 and states[0] == "old" and states[-1] == "new"
    assert len(list(tmp_path.glob("map.faiss.v*"))) == 2  # the last write removed every leftover part


def test_memory_mapped_rerank_vectors_are_linked_not_copied(tmp_path):
    """A map of millions of fp16 vectors already on disk is saved by a hard link."""
    vectors = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float16)
    np.save(tmp_path / "v.npy", vectors)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    index = build_index(np.asarray(mapped, dtype=np.float32), "IVF4,Flat,Rerank10")
    index.vectors = mapped
    save_index(index, tmp_path / "i.faiss")
    assert (tmp_path / "v.npy").stat().st_nlink == 2
    loaded = load_index(tmp_path / "i.faiss")
    assert loaded.vectors.dtype == np.float16
    assert np.array_equal(
        loaded.search(vectors[:5].astype(np.float32), 3)[1], index.search(vectors[:5].astype(np.float32), 3)[1]
    )
