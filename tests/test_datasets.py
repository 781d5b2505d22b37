import numpy as np
import pytest

from edgevpr.config import DataConfig
from edgevpr.data.dataset import load_dataset
from edgevpr.data.folder_format import parse_utm
from edgevpr.errors import ConfigError, DatasetError
from tests.conftest import write_image


def test_folder_format_positives_by_radius(utm_dataset):
    dataset = load_dataset(DataConfig(dataset=str(utm_dataset)))
    assert len(dataset.database_paths) == 10 and len(dataset.query_paths) == 3
    # 500003 m: database points 0, 10, 20 m are within 25 m.
    assert dataset.positives[0].tolist() == [0, 1, 2]
    assert dataset.positives[1].tolist() == [3, 4, 5, 6, 7]
    assert dataset.positives[2].tolist() == []
    protocol = dataset.protocol()
    assert protocol["positives"] == "meters<=25"
    assert protocol["queries_without_positives"] == 1
    assert protocol["dataset"] == "utm"


def test_folder_format_custom_threshold(utm_dataset):
    dataset = load_dataset(DataConfig(dataset=str(utm_dataset), threshold_m=5))
    assert dataset.positives[0].tolist() == [0]
    assert dataset.positive_rule == "meters<=5"


def test_frame_aligned_sequences(tmp_path):
    for i in range(12):
        write_image(tmp_path / "day" / f"Image{i}.jpg", i)  # natural order: Image2 before Image10
        write_image(tmp_path / "night" / f"Image{i}.jpg", 50 + i)
    dataset = load_dataset(
        DataConfig(database=str(tmp_path / "day"), queries=str(tmp_path / "night"), tolerance_frames=2)
    )
    assert [p.name for p in dataset.database_paths[:3]] == ["Image0.jpg", "Image1.jpg", "Image2.jpg"]
    assert dataset.positives[0].tolist() == [0, 1, 2]
    assert dataset.positives[5].tolist() == [3, 4, 5, 6, 7]
    assert dataset.positives[11].tolist() == [9, 10, 11]
    assert dataset.positive_rule == "frames<=2"


def _frames(tmp_path, count=4):
    for i in range(count):
        write_image(tmp_path / "db" / f"{i:03d}.png", i)
        write_image(tmp_path / "q" / f"{i:03d}.png", 9 + i)
    return DataConfig(database=str(tmp_path / "db"), queries=str(tmp_path / "q"))


def test_vprbench_ground_truth(tmp_path):
    config = _frames(tmp_path)
    rows = np.empty((4, 2), dtype=object)
    for q in range(4):
        rows[q, 0] = q
        rows[q, 1] = np.array([q, min(q + 1, 3)]) if q % 2 else [q]
    np.save(tmp_path / "ground_truth_new.npy", rows, allow_pickle=True)
    config.ground_truth = str(tmp_path / "ground_truth_new.npy")
    dataset = load_dataset(config)
    assert [p.tolist() for p in dataset.positives] == [[0], [1, 2], [2], [3]]
    assert dataset.positive_rule == "ground_truth=ground_truth_new.npy"


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_vprbench_refuses_arbitrary_objects(tmp_path, capsys):
    config = _frames(tmp_path)
    rows = np.empty((1, 2), dtype=object)
    rows[0, 0], rows[0, 1] = 0, Exploit()
    np.save(tmp_path / "evil.npy", rows, allow_pickle=True)
    config.ground_truth = str(tmp_path / "evil.npy")
    with pytest.raises(DatasetError, match=r"evil\.npy.*only integers, lists and integer arrays"):
        load_dataset(config)
    assert "pwned" not in capsys.readouterr().out


def test_vprbench_rejects_bad_indices(tmp_path):
    config = _frames(tmp_path)
    rows = np.empty((4, 2), dtype=object)
    for q in range(4):
        rows[q, 0], rows[q, 1] = q, [q]
    rows[2, 1] = [17]
    np.save(tmp_path / "gt.npy", rows, allow_pickle=True)
    config.ground_truth = str(tmp_path / "gt.npy")
    with pytest.raises(DatasetError, match=r"gt\.npy: row 2: database index 17 outside 0\.\.3"):
        load_dataset(config)


def test_missing_positive_rule_is_explained(tmp_path):
    with pytest.raises(DatasetError, match="--tolerance-frames"):
        load_dataset(_frames(tmp_path))


def test_conflicting_options(tmp_path, utm_dataset):
    with pytest.raises(ConfigError, match="either --dataset"):
        load_dataset(DataConfig(dataset=str(utm_dataset), database=str(tmp_path)))
    with pytest.raises(ConfigError, match="one positive rule"):
        load_dataset(DataConfig(dataset=str(utm_dataset), threshold_m=5, tolerance_frames=1))


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: dataset folder not found"):
        load_dataset(DataConfig(dataset=str(tmp_path / "nowhere")))
    (tmp_path / "empty" / "database").mkdir(parents=True)
    with pytest.raises(DatasetError, match="database: no .jpg"):
        load_dataset(DataConfig(dataset=str(tmp_path / "empty")))


def test_parse_utm_names_the_file():
    assert parse_utm("/x/@500010.50@4000020.25@33@T@.jpg") == (500010.5, 4000020.25)
    with pytest.raises(DatasetError, match="photo.jpg"):
        parse_utm("photo.jpg")


def test_subset_renumbers_positives(utm_dataset):
    dataset = load_dataset(DataConfig(dataset=str(utm_dataset)))
    smaller = dataset.subset(np.array([0, 2, 3, 4, 5, 6, 7, 8, 9]), np.array([0, 1]), ["x: bad"])
    assert smaller.positives[0].tolist() == [0, 1]  # database 1 dropped, 2 became 1
    assert smaller.protocol()["skipped_images"] == ["x: bad"]


def _npz_dataset(tmp_path, **arrays):
    for i in range(3):
        write_image(tmp_path / "db" / f"d{i}.jpg", i)
    for j in range(2):
        write_image(tmp_path / "q" / f"q{j}.jpg", 10 + j)
    np.savez(tmp_path / "gt.npz", **arrays)
    return DataConfig(database=str(tmp_path / "db"), queries=str(tmp_path / "q"), ground_truth=str(tmp_path / "gt.npz"))


def test_patchnetvlad_ground_truth_by_distance(tmp_path):
    config = _npz_dataset(
        tmp_path,
        utmQ=np.array([[0.0, 0.0], [100.0, 0.0]]),
        utmDb=np.array([[3.0, 4.0], [30.0, 0.0], [95.0, 0.0]]),
        posDistThr=np.array(25.0),
        qImages=np.array(["q/q0.jpg", "q/q1.jpg"]),
        dbImages=np.array(["d0.jpg", "d1.jpg", "d2.jpg"]),
    )
    dataset = load_dataset(config)
    assert [p.tolist() for p in dataset.positives] == [[0], [2]]  # 5 m and 5 m; 30 m is beyond 25
    assert dataset.positive_rule == "meters<=25,ground_truth=gt.npz"


def test_patchnetvlad_ground_truth_is_checked(tmp_path):
    base = dict(utmQ=np.zeros((2, 2)), utmDb=np.zeros((3, 2)), posDistThr=np.array(25.0))
    with pytest.raises(DatasetError, match="missing posDistThr"):
        load_dataset(_npz_dataset(tmp_path / "a", utmQ=base["utmQ"], utmDb=base["utmDb"]))
    with pytest.raises(DatasetError, match="utmDb has 4 rows, the folder has 3 images"):
        load_dataset(_npz_dataset(tmp_path / "b", **base | {"utmDb": np.zeros((4, 2))}))
    with pytest.raises(DatasetError, match=r"qImages\[1\] is other.jpg, the folder's image 1 is q1.jpg"):
        load_dataset(
            _npz_dataset(
                tmp_path / "c",
                **base,
                qImages=np.array(["q0.jpg", "other.jpg"]),
                dbImages=np.array(["d0.jpg", "d1.jpg", "d2.jpg"]),
            )
        )
    with pytest.raises(DatasetError, match="not a Patch-NetVLAD ground-truth .npz"):
        load_dataset(_npz_dataset(tmp_path / "d", **base, names=np.array([{"a": 1}], dtype=object)))
