"""``edgevpr convert``: each format round-trips a fixture written here, and a converted set
evaluates exactly as the original it came from."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.io import savemat

from edgevpr.cli import main
from edgevpr.config import DataConfig
from edgevpr.data.convert import convert
from edgevpr.data.dataset import load_dataset
from edgevpr.data.folder_format import parse_utm, positives_within_radius
from edgevpr.errors import DatasetError
from tests.conftest import write_image


def _vprbench(root, positives, num_database):
    for i in range(num_database):
        write_image(root / "ref" / f"{i}.jpg", i)
    for q in range(len(positives)):
        write_image(root / "query" / f"{q}.jpg", 100 + q)
    rows = np.empty(len(positives), dtype=object)
    for q, p in enumerate(positives):
        rows[q] = np.array([q, np.array(p, dtype=np.int64)], dtype=object)
    np.save(root / "ground_truth_new.npy", rows, allow_pickle=True)
    return root


def _ranks(args):
    result = CliRunner().invoke(main, ["eval", "--backbone", "squeezenet", "--latency-runs", "20", *args])
    assert result.exit_code == 0, result.output
    return result


def test_vprbench_frame_ground_truth_becomes_a_frame_aligned_pair(tmp_path):
    positives = [[max(0, i - 1), i, min(11, i + 1)] for i in range(12)]
    source = _vprbench(tmp_path / "corridor", [sorted(set(p)) for p in positives], 12)
    descriptor = convert("vprbench", source, tmp_path / "out")
    assert descriptor["positives"] == {"tolerance_frames": 1}
    assert descriptor["num_database"] == 12 and descriptor["converted_from"]["files"] == {"hard link": 24}
    assert (tmp_path / "out" / "database" / "10.jpg").samefile(source / "ref" / "10.jpg")  # linked, not copied
    dataset = load_dataset(DataConfig(dataset=str(tmp_path / "out")))
    assert [p.tolist() for p in dataset.positives] == [sorted(set(p)) for p in positives]


def test_vprbench_lists_evaluate_as_the_original(tmp_path):
    positives = [[0, 1], [4], [2, 3, 7], [9], [5, 6]]  # five queries over ten references: not frame-aligned
    source = _vprbench(tmp_path / "sped", positives, 10)
    out = tmp_path / "converted"
    result = CliRunner().invoke(main, ["convert", "vprbench", str(source), str(out)])
    assert result.exit_code == 0, result.output
    assert "positives by ground_truth positives.npz" in result.output
    original = tmp_path / "a.json"
    _ranks(
        [
            "--database",
            str(source / "ref"),
            "--queries",
            str(source / "query"),
            "--ground-truth",
            str(source / "ground_truth_new.npy"),
            "--out",
            str(original),
        ]
    )
    converted = tmp_path / "b.json"
    _ranks(["--dataset", str(out), "--out", str(converted)])
    a, b = json.loads(original.read_text()), json.loads(converted.read_text())
    assert a["per_query"] == b["per_query"] and a["recall"] == b["recall"]
    assert b["protocol"]["positives"] == "ground_truth=positives.npz"


def test_nordland_seasons_become_a_frame_aligned_pair(tmp_path):
    for season in ("summer_images_test", "winter_images_test"):
        for section in (1, 2):
            for frame in range(3):
                write_image(tmp_path / "nordland" / season / f"section{section}" / f"{frame:05d}.png", frame)
    descriptor = convert("nordland", tmp_path / "nordland", tmp_path / "out", tolerance_frames=2)
    assert descriptor["positives"] == {"tolerance_frames": 2} and descriptor["num_queries"] == 6
    assert descriptor["converted_from"]["options"] == {
        "database": "summer_images_test",
        "queries": "winter_images_test",
    }
    dataset = load_dataset(DataConfig(dataset=str(tmp_path / "out")))
    assert dataset.positive_rule == "frames<=2" and dataset.positives[0].tolist() == [0, 1, 2]
    (tmp_path / "nordland" / "winter_images_test" / "section2" / "00002.png").unlink()
    with pytest.raises(DatasetError, match="same frames"):
        convert("nordland", tmp_path / "nordland", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_pitts_db_struct_becomes_the_folder_format(tmp_path):
    source = tmp_path / "Pittsburgh"
    db_names = [f"000/000{i:03d}_pitch1_yaw1.jpg" for i in range(6)]
    q_names = [f"000/q{i:03d}.jpg" for i in range(3)]
    db_utm = np.array([[585000.0 + 10 * i for i in range(6)], [4477000.0] * 6])
    q_utm = np.array([[585001.0, 585033.0, 586000.0], [4477002.0, 4477000.0, 4477000.0]])
    for i, name in enumerate(db_names):
        write_image(source / name, i)
    for i, name in enumerate(q_names):
        write_image(source / "queries_real" / name, 50 + i)
    names = np.empty((len(db_names), 1), dtype=object)
    names[:, 0] = db_names
    qnames = np.empty((len(q_names), 1), dtype=object)
    qnames[:, 0] = q_names
    struct = {
        "whichSet": "test",
        "dbImageFns": names,
        "utmDb": db_utm,
        "qImageFns": qnames,
        "utmQ": q_utm,
        "numImages": 6,
        "numQueries": 3,
        "posDistThr": 25,
        "posDistSqThr": 625,
        "nonTrivPosDistSqThr": 100,
    }
    savemat(source / "pitts30k_test.mat", {"dbStruct": struct})
    descriptor = convert("pitts", source, tmp_path / "out")
    assert (
        descriptor["positives"] == {"threshold_m": 25.0}
        and descriptor["converted_from"]["options"]["which_set"] == "test"
    )
    dataset = load_dataset(DataConfig(dataset=str(tmp_path / "out")))
    read_back = np.array([parse_utm(p) for p in dataset.database_paths])
    assert sorted(map(tuple, read_back)) == sorted(map(tuple, db_utm.T))
    expected = positives_within_radius(db_utm.T, q_utm.T, 25)
    by_position = {tuple(parse_utm(p)): i for i, p in enumerate(dataset.database_paths)}
    for query, found in zip(dataset.query_paths, dataset.positives):
        q = [i for i, utm in enumerate(q_utm.T) if tuple(utm) == parse_utm(query)][0]
        assert sorted(found.tolist()) == sorted(by_position[tuple(db_utm.T[i])] for i in expected[q])
    assert [len(p) for p in expected] == [3, 5, 0]  # within 25 m


def _msls_city(folder, rows, prefix):
    (folder / "images").mkdir(parents=True)
    with open(folder / "postprocessed.csv", "w") as f:
        f.write(",key,easting,northing,night,view_direction\n")
        f.writelines(f"{i},{prefix}{i},{e},{n},False,Forward\n" for i, (e, n, _, _) in enumerate(rows))
    with open(folder / "raw.csv", "w") as f:
        f.write(",key,lon,lat,ca,captured_at,pano\n")
        f.writelines(f"{i},{prefix}{i},0,0,0,0,{pano}\n" for i, (_, _, pano, _) in enumerate(rows))
    with open(folder / "subtask_index.csv", "w") as f:
        f.write(",all,s2w\n")
        f.writelines(f"{i},{task},False\n" for i, (_, _, _, task) in enumerate(rows))
    for i in range(len(rows)):
        write_image(folder / "images" / f"{prefix}{i}.jpg", i)


def test_msls_official_subset_follows_the_evaluation_code(tmp_path):
    city = tmp_path / "msls" / "train_val" / "cph"
    # database: (east, north, pano, in subtask all)
    _msls_city(
        city / "database", [(0, 0, False, True), (10, 0, False, True), (500, 0, True, True), (20, 0, False, False)], "d"
    )
    # queries: near d0/d1; near the panorama only; outside the subtask; far from everything
    _msls_city(
        city / "query", [(5, 0, False, True), (500, 0, False, True), (0, 0, False, False), (9000, 0, False, True)], "q"
    )
    official = convert("msls", tmp_path / "msls", tmp_path / "official", cities=("cph",))
    assert (official["num_database"], official["num_queries"]) == (2, 1)
    dataset = load_dataset(DataConfig(dataset=str(tmp_path / "official")))
    assert dataset.positives[0].tolist() == [0, 1] and "cph_q0" in dataset.query_paths[0].name
    everything = convert("msls", tmp_path / "msls", tmp_path / "all", cities=("cph",), subset="all")
    assert (everything["num_database"], everything["num_queries"]) == (4, 4)
    with pytest.raises(DatasetError, match="city folder not found"):
        convert("msls", tmp_path / "msls", tmp_path / "x", cities=("sf",))


def test_csv_lat_lon_becomes_utm_in_one_zone(tmp_path):
    source = tmp_path / "walk"
    # a route crossing the zone border at 12 E (zones 32 and 33), points ~11 m apart
    lats = [55.0 + 0.0001 * i for i in range(6)]
    lons = [11.9998 + 0.00005 * i for i in range(6)]
    with open(source.mkdir() or source / "database.csv", "w") as f:
        f.write("name,lat,lon\n")
        f.writelines(f"db{i}.jpg,{lat},{lon}\n" for i, (lat, lon) in enumerate(zip(lats, lons)))
    with open(source / "queries.csv", "w") as f:
        f.write("name,lat,lon\nq0.jpg,55.00021,12.00002\n")
    for i in range(6):
        write_image(source / "database" / f"db{i}.jpg", i)
    write_image(source / "queries" / "q0.jpg", 9)
    descriptor = convert("csv", source, tmp_path / "out", threshold_m=15)
    assert descriptor["converted_from"]["options"] == {"positions": "latlon"}
    dataset = load_dataset(DataConfig(dataset=str(tmp_path / "out")))
    east_north = np.array([parse_utm(p) for p in dataset.database_paths])
    steps = np.linalg.norm(np.diff(east_north, axis=0), axis=1)
    lat0 = math.radians(55.0)
    geodesic = math.hypot(0.0001 * 111_320, 0.00005 * 111_320 * math.cos(lat0))
    assert np.allclose(steps, geodesic, rtol=0.01)  # metric across the border: one zone for all
    assert dataset.positives[0].tolist() == [2, 3]  # 7.7 m and 10.9 m away; db1 (16.4 m) and db4 (21 m) are not


def test_a_conversion_never_overwrites_nor_leaves_half_a_dataset(tmp_path):
    source = _vprbench(tmp_path / "src", [[0], [1]], 2)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["convert", "vprbench", str(source), str(tmp_path / "taken")])
    assert result.exit_code == 1 and "exists and is not empty" in result.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    (source / "query" / "1.jpg").unlink()
    result = CliRunner().invoke(main, ["convert", "vprbench", str(source), str(tmp_path / "new")])
    assert result.exit_code == 1 and "query index 1 outside" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "taken"]  # no temporary left


def test_a_converted_dataset_whose_folders_changed_is_refused(tmp_path):
    source = _vprbench(tmp_path / "src", [[0], [1], [2]], 3)
    convert("vprbench", source, tmp_path / "out")
    (tmp_path / "out" / "database" / "2.jpg").unlink()
    with pytest.raises(DatasetError, match="lists 3 database images"):
        load_dataset(DataConfig(dataset=str(tmp_path / "out")))
