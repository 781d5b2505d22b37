"""Maps: build once, localize frames and streams, add images atomically, refuse what does not
fit in one line, export hloc's files."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.config import load_config
from edgevpr.data.positions_csv import read_positions_csv
from edgevpr.errors import ConfigError, DatasetError
from edgevpr.maps import Localizer, Map, ModelSource
from edgevpr.maps.known import calibrate_min_score
from edgevpr.maps.positions import positions_for
from edgevpr.search.index import build_index
from edgevpr.search.sequence import contrast_enhanced, sequence_scores_for, sequence_similarity
from tests.conftest import write_image

SQUEEZE = {"model": {"backbone": "squeezenet", "aggregator": "gem"}, "data": {"size": (72, 96)}}


@pytest.fixture(scope="module")
def street_map(tmp_path_factory, request):
    tiny_street = request.getfixturevalue("tiny_street")
    folder = tmp_path_factory.mktemp("maps") / "street"
    return Map.build(ModelSource(config=load_config(overrides=SQUEEZE)), tiny_street / "database", folder)


def test_a_map_localizes_its_own_images_with_their_positions(street_map, tiny_street):
    image = sorted((tiny_street / "database").glob("*.jpg"))[7]
    answer = street_map.localize(image, top_k=3)
    assert answer["matches"][0]["name"] == image.name and answer["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert answer["known"] is True and len(answer["matches"]) == 3
    assert answer["matches"][0]["position"] == pytest.approx(list(map(float, image.name.split("@")[1:3])))
    assert set(answer["ms"]) == {"decode", "extract", "search", "rerank", "total"}
    assert answer["ms"]["total"] >= answer["ms"]["extract"] + answer["ms"]["search"]
    reloaded = Map.load(street_map.folder)
    assert reloaded.localize(image)["matches"][0]["name"] == image.name
    assert street_map.manifest["positions"]["kind"] == "utm" and street_map.manifest["contract"]["size"] == [72, 96]


def test_unknown_places_fall_below_the_calibrated_threshold():
    """Four places, two views each; an impostor is a view of another place."""
    rng = np.random.default_rng(0)
    places = rng.standard_normal((4, 16))
    views = np.repeat(places, 2, axis=0) + 0.2 * rng.standard_normal((8, 16))
    views /= np.linalg.norm(views, axis=1, keepdims=True)
    positions = [[100.0 * (i // 2), 0.0] for i in range(8)]
    known = calibrate_min_score(build_index(views.astype(np.float32), "Flat"), views, positions, "utm", ["a"] * 8)
    assert known["impostors"] == 8 and "more than 25 m away" in known["rule"]
    impostor_best = max(float(views[i] @ views[j]) for i in range(8) for j in range(8) if i // 2 != j // 2)
    assert known["min_score"] <= impostor_best + 1e-6  # float32 search against a float64 product
    same_place = float(views[0] @ views[1])
    assert same_place > known["min_score"]  # a second view of a mapped place is known
    unseen = rng.standard_normal(16)
    unseen -= views.T @ np.linalg.lstsq(views.T, unseen, rcond=None)[0]  # orthogonal to every map view
    unseen /= np.linalg.norm(unseen)
    assert float(np.max(views @ unseen)) < known["min_score"]  # a place not in the map is unknown


def test_sequence_matching_resolves_what_single_frames_cannot():
    """Database of 6 frames; query frames 3..5 each look as much like frame 0 as like their own,
    but the last three frames together follow the database route 3, 4, 5."""
    similarity = np.full((6, 6), 0.1, dtype=np.float32)
    for t in range(6):
        similarity[t, t] = 0.9
    similarity[5, 0] = 0.95  # the newest frame alone would pick frame 0
    single = np.argmax(similarity[5])
    sequence = sequence_similarity(similarity, length=3, velocities=(1.0,))
    assert single == 0 and np.argmax(sequence[5]) == 5
    assert sequence_similarity(similarity, 1, (1.0,)).tolist() == similarity.tolist()
    vectors = np.eye(6, dtype=np.float32)
    history = similarity[3:6] @ vectors  # rows whose dot product with database entry j is similarity[t, j]
    scores = sequence_scores_for(history, vectors, np.array([0, 5]), 3, (1.0,))
    assert scores[1] > scores[0]


def test_contrast_enhancement_is_seqslams_local_z_score():
    """Each similarity against the mean and spread of the R map entries around it (Milford and
    Wyeth 2012): a frame similar to every place a little loses to one that singles out a place."""
    rng = np.random.default_rng(0)
    similarity = rng.random((4, 30))
    enhanced = contrast_enhanced(similarity, 10)
    for j in range(30):
        window = similarity[:, max(0, j - 5) : j + 6]
        expected = (similarity[:, j] - window.mean(1)) / window.std(1)
        assert np.allclose(enhanced[:, j], expected, atol=1e-5)
    flat = np.full((1, 20), 0.5)
    flat[0, 12] = 0.52  # slightly above its neighbours
    broad = 0.5 + 0.3 * np.exp(-(((np.arange(20) - 4) / 3.0) ** 2))[None]  # higher, but like its neighbours
    rows = flat + broad - 0.5
    assert np.argmax(rows[0]) == 4 and np.argmax(contrast_enhanced(rows, 4)[0]) == 12


def _frame_of(answer) -> int:
    return int(answer["matches"][0]["name"][1:4])


def test_the_localizer_keeps_a_stream_and_sequence_matching_fixes_frames(noisy_route):
    route_map, stream = noisy_route
    single = [_frame_of(Localizer(route_map, length=1, top_k=2)(path)) for path, _ in stream]
    localizer = Localizer(route_map, length=5, top_k=2)
    answers = [localizer(path) for path, _ in stream]
    sequence = [_frame_of(a) for a in answers]
    truth = [t for _, t in stream]
    right_single = sum(s == t for s, t in zip(single, truth))
    right_sequence = sum(s == t for s, t in zip(sequence, truth))
    assert right_sequence >= right_single + 3, (single, sequence)
    assert answers[0]["matches"][0]["name"] == f"f{single[0]:03d}.png"  # one frame seen: a single-frame answer
    assert "sequence" in answers[-1]["ms"] and "sequence" not in answers[0]["ms"]


def test_localize_sequence_from_the_cli_changes_the_answers(noisy_route, tmp_path):
    route_map, stream = noisy_route
    folder = stream[0][0].parent
    answers = {}
    for length in (1, 5):
        out = tmp_path / f"L{length}.jsonl"
        result = CliRunner().invoke(
            main,
            [
                "localize",
                str(route_map.folder),
                "--images",
                str(folder),
                "--sequence",
                str(length),
                "--jsonl",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        answers[length] = [_frame_of(json.loads(line)) for line in out.read_text().splitlines()]
    truth = [t for _, t in stream]
    right = {length: sum(a == t for a, t in zip(found, truth)) for length, found in answers.items()}
    assert right[5] >= right[1] + 3, answers


@pytest.mark.slow
def test_map_add_appends_and_a_kill_at_any_step_leaves_a_usable_map(street_map, tiny_street, tmp_path):
    from tests.killpoints import kill_at_every_step

    folder = tmp_path / "map"
    shutil.copytree(street_map.folder, folder)
    extra = tmp_path / "extra"
    for i in range(3):
        write_image(extra / f"@{600000 + i}.00@{4100000}.00@33@T@0@0@x{i}@@@@@@@@.jpg", 50 + i, size=(96, 72))
    old_count = len(street_map.names)
    script = f"from edgevpr.maps import Map\nMap.load({str(folder)!r}).add({str(extra)!r})\n"
    seen = []

    def check(killed_at):
        loaded = Map.load(folder)
        count = len(loaded.names)
        assert count in (old_count, old_count + 3), f"killed at step {killed_at}: {count} entries"
        probe = loaded.localize(sorted((tiny_street / "database").glob("*.jpg"))[2])
        assert probe["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        seen.append(count)
        if killed_at is not None:  # the next run adds to the old map again
            shutil.rmtree(folder)
            shutil.copytree(street_map.folder, folder)

    steps = kill_at_every_step(script, check, writers=("faiss.write_index", "numpy.save", "torch.save"))
    assert steps >= 5 and seen[0] == old_count and seen[-1] == old_count + 3
    added = Map.load(folder)
    assert added.localize(next(extra.glob("*x1*")))["matches"][0]["name"].endswith("x1@@@@@@@@.jpg")
    assert len(list(folder.iterdir())) == 5  # map.json and the four parts of the current version


def test_bad_maps_are_one_line_errors_naming_the_file(street_map, tmp_path):
    def broken(edit):
        folder = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        shutil.copytree(street_map.folder, folder)
        edit(folder)
        with pytest.raises(ConfigError) as caught:
            Map.load(folder)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "map.json: not valid JSON" in broken(lambda f: (f / "map.json").write_text("{oops"))
    assert "not an edgevpr map manifest" in broken(lambda f: (f / "map.json").write_text('{"format": "x"}'))
    manifest = street_map.manifest

    def edit_manifest(change):
        def edit(folder):
            data = json.loads((folder / "map.json").read_text())
            change(data)
            (folder / "map.json").write_text(json.dumps(data))

        return edit

    assert "its model file" in broken(lambda f: (f / manifest["model"]["file"]).unlink())
    assert "SHA-256 differs" in broken(lambda f: (f / manifest["model"]["file"]).write_bytes(b"other"))
    message = broken(edit_manifest(lambda d: d["descriptors"].update(dim=64)))
    assert manifest["descriptors"]["file"] in message and "the manifest says" in message
    assert "lacks spec" in broken(edit_manifest(lambda d: d["index"].pop("spec")))
    with pytest.raises(ConfigError, match="already holds a map"):
        Map.build(ModelSource(config=load_config(overrides=SQUEEZE)), tmp_path, street_map.folder)


def test_positions_from_csv_names_and_frames(tmp_path):
    paths = [tmp_path / f"f{i}.jpg" for i in range(3)]
    (tmp_path / "p.csv").write_text("name,x,y,heading\nf0.jpg,1,2,90\nf1.jpg,3,4,0\nf2.jpg,5,6,180\n")
    assert positions_for(paths, tmp_path / "p.csv") == ("xy", [[1.0, 2.0, 90.0], [3.0, 4.0, 0.0], [5.0, 6.0, 180.0]])
    (tmp_path / "ll.csv").write_text("name,lat,lon\nf0.jpg,-27.47,153.03\n")
    kind, table = read_positions_csv(tmp_path / "ll.csv")
    assert kind == "utm" and 500_000 < table["f0.jpg"][0] < 510_000  # Brisbane, UTM zone 56
    assert positions_for(paths) == ("frame", [[0.0], [1.0], [2.0]])
    (tmp_path / "bad.csv").write_text("name,x,y\nf0.jpg,1,nan\n")
    with pytest.raises(DatasetError, match="bad.csv: line 2: y is nan"):
        read_positions_csv(tmp_path / "bad.csv")
    with pytest.raises(DatasetError, match="no position for f1.jpg"):
        positions_for(paths, tmp_path / "ll.csv")


def test_cli_build_localize_info_and_hloc_export(tmp_path, tiny_street):
    h5py = pytest.importorskip("h5py")
    runner = CliRunner()
    folder = tmp_path / "m"
    built = runner.invoke(
        main,
        [
            "map",
            "build",
            "--backbone",
            "squeezenet",
            "--aggregator",
            "gem",
            "--size",
            "72x96",
            "--images",
            str(tiny_street / "database"),
            "--out",
            str(folder),
        ],
    )
    assert built.exit_code == 0, built.output
    queries = sorted((tiny_street / "queries").glob("*.jpg"))[:3]
    out = tmp_path / "frames.jsonl"
    located = runner.invoke(main, ["localize", str(folder), *map(str, queries), "--jsonl", str(out), "--top-k", "2"])
    assert located.exit_code == 0, located.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["query"] for line in lines] == [q.name for q in queries]
    assert all(len(line["matches"]) == 2 and len(line["matches"][0]["position"]) == 2 for line in lines)
    info = runner.invoke(main, ["map", "info", str(folder), "--json"])
    assert info.exit_code == 0 and json.loads(info.output)["latency"]["extract_ms"] > 0
    again = runner.invoke(
        main, ["map", "build", "--onnx", "x.onnx", "--images", str(tiny_street), "--out", str(folder)]
    )
    assert again.exit_code != 0 and "already holds a map" in again.output
    small = runner.invoke(
        main,
        [
            "map",
            "build",
            "--backbone",
            "squeezenet",
            "--size",
            "72x96",
            "--images",
            str(tiny_street / "database"),
            "--index",
            "IVF1024,PQ64,Rerank1000",
            "--out",
            str(tmp_path / "ivf"),
        ],
    )
    assert small.exit_code != 0 and "needs at least 1024 vectors" in small.output and "use Flat" in small.output
    ivf = runner.invoke(
        main,
        ["map", "build", "--backbone", "squeezenet", "--size", "72x96", "--images", str(tiny_street / "database")]
        + ["--index", "IVF2,Flat", "--search-params", "nprobe=2", "--out", str(tmp_path / "ivf2")],
    )
    assert ivf.exit_code == 0, ivf.output
    assert json.loads((tmp_path / "ivf2" / "map.json").read_text())["index"]["params"] == "nprobe=2"
    rerank = runner.invoke(main, ["localize", str(folder), str(queries[0]), "--rerank", "ransac", "--rerank-k", "10"])
    assert rerank.exit_code != 0 and "holds no patch descriptors" in rerank.output

    exported = runner.invoke(
        main,
        [
            "map",
            "export-hloc",
            str(folder),
            "--queries",
            str(tiny_street / "queries"),
            "--top-k",
            "3",
            "--out",
            str(tmp_path / "hloc"),
        ],
    )
    assert exported.exit_code == 0, exported.output
    with h5py.File(tmp_path / "hloc" / "global-feats.h5", "r") as handle:  # as hloc's readers open it
        name = f"queries/{queries[0].name}"
        descriptor = handle[name]["global_descriptor"].__array__()
        assert descriptor.shape == (512,) and abs(float(np.linalg.norm(descriptor)) - 1) < 1e-4
        assert f"database/{sorted((tiny_street / 'database').glob('*.jpg'))[0].name}" in handle
    pairs = (tmp_path / "hloc" / "pairs.txt").read_text().splitlines()
    assert len(pairs) == 3 * len(list((tiny_street / "queries").glob("*.jpg")))
    assert pairs[0].split() == [f"queries/{queries[0].name}", f"database/{lines[0]['matches'][0]['name']}"]


def test_eval_sequence_names_its_length_and_needs_frame_aligned_folders(tmp_path, tiny_street):
    for folder in ("db", "q"):
        for i in range(8):
            write_image(tmp_path / folder / f"f{i:02d}.jpg", i if folder == "db" else 100 + i, size=(96, 72))
    runner = CliRunner()
    out = tmp_path / "r.json"
    result = runner.invoke(
        main,
        [
            "eval",
            "--backbone",
            "squeezenet",
            "--size",
            "72x96",
            "--database",
            str(tmp_path / "db"),
            "--queries",
            str(tmp_path / "q"),
            "--tolerance-frames",
            "1",
            "--sequence",
            "3",
            "--latency-runs",
            "20",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert (
        saved["protocol"]["positives"] == "frames<=1,sequence=3" and ":frames<=1,sequence=3:" in saved["protocol_name"]
    )
    refused = runner.invoke(
        main,
        [
            "eval",
            "--backbone",
            "squeezenet",
            "--size",
            "72x96",
            "--dataset",
            str(tiny_street),
            "--sequence",
            "3",
            "--latency-runs",
            "20",
        ],
    )
    assert refused.exit_code != 0 and "needs frame-aligned folders" in refused.output


def test_recording_a_route_twice_keeps_the_known_threshold(noisy_route, tmp_path):
    """map add of a second recording of the same places (frame positions): the calibrated
    threshold stays where it was, and a frame known before is known after."""
    route_map, stream = noisy_route
    folder = tmp_path / "map"
    shutil.copytree(route_map.folder, folder)
    again = tmp_path / "again"
    shutil.copytree(route_map.folder.parent / "route", again)
    before = Map.load(folder)
    known_before = [before.localize(path)["known"] for path, _ in stream]
    after = before.add(again)
    assert len(after.names) == 2 * len(before.names)
    assert after.manifest["known"]["min_score"] == pytest.approx(before.manifest["known"]["min_score"], abs=2e-3)
    assert any(known_before)  # so that the check below can see a frame turn unknown
    assert [after.localize(path)["known"] for path, _ in stream] == known_before


def test_a_robot_that_localizes_imports_no_training_exploration_or_research(street_map, tiny_street):
    import subprocess
    import sys

    query = sorted((tiny_street / "queries").glob("*.jpg"))[0]
    code = (
        "import sys, edgevpr\n"
        f"answer = edgevpr.Map.load({str(street_map.folder)!r}).localize({str(query)!r})\n"
        "assert answer['matches']\n"
        "loaded = [m for m in sys.modules if m.split('.')[:2] in (['edgevpr', 'research'], ['edgevpr', 'train'],"
        " ['edgevpr', 'explore'])]\n"
        "print('LOADED', loaded)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "LOADED []" in result.stdout, result.stdout[-300:] + result.stderr[-500:]
