import hashlib

from edgevpr.config import DataConfig
from edgevpr.data.dataset import load_dataset
from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.jpg")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_generator_is_deterministic_and_in_folder_format(tmp_path, tiny_street):
    spec = SyntheticSpec(num_places=30, query_every=3, width=96, height=72, step_px=24)
    again = generate_synthetic(tmp_path / "again", spec)
    assert _digest(again) == _digest(tiny_street)
    other = generate_synthetic(
        tmp_path / "other", SyntheticSpec(seed=1, num_places=30, width=96, height=72, step_px=24)
    )
    assert _digest(other) != _digest(tiny_street)

    dataset = load_dataset(DataConfig(dataset=str(tiny_street)))
    assert len(dataset.database_paths) == 30 and len(dataset.query_paths) == 10
    assert all(len(p) >= 2 for p in dataset.positives)  # places 10 m apart, threshold 25 m
    conditions = {p.name.split("_")[1].split("@")[0] for p in dataset.query_paths}
    assert conditions <= {"day", "dusk", "night"} and len(conditions) >= 2


def test_generator_reuses_an_existing_set(tiny_street):
    marker = tiny_street / "edgevpr_synthetic.json"
    stamp = marker.stat().st_mtime_ns
    generate_synthetic(tiny_street, SyntheticSpec(num_places=30, query_every=3, width=96, height=72, step_px=24))
    assert marker.stat().st_mtime_ns == stamp
