"""The dataset descriptor ``edgevpr_dataset.json`` at a dataset root, written by
``edgevpr convert``: which folders hold the database and the queries, the positive rule
(``tolerance_frames``, ``threshold_m`` or a ``ground_truth`` file beside it), the counts, the
content fingerprint and where the data came from. ``eval --dataset ROOT`` follows it, so a
converted set evaluates exactly as its original did."""

from __future__ import annotations

from pathlib import Path

from edgevpr.atomic import read_json
from edgevpr.errors import DatasetError

DESCRIPTOR = "edgevpr_dataset.json"
FORMAT = "edgevpr-dataset"
RULES = ("tolerance_frames", "threshold_m", "ground_truth")


def read_descriptor(root: str | Path) -> dict | None:
    """The descriptor of ``root``, checked, or None when the root has none (plain folder format)."""
    path = Path(root) / DESCRIPTOR
    if not path.is_file():
        return None
    descriptor = read_json(path, "dataset descriptor", keys=("format", "database", "queries", "positives"))
    if descriptor["format"] != FORMAT:
        raise DatasetError(f"{path}: format is {descriptor['format']!r}, expected {FORMAT!r}")
    rule = descriptor["positives"]
    if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in RULES:
        raise DatasetError(f"{path}: positives must be one of {', '.join(RULES)}")
    return descriptor


def positive_rule(descriptor: dict, root: str | Path) -> dict:
    """The data-section fields of the descriptor's positive rule (file names made absolute)."""
    rule = dict(descriptor["positives"])
    if "ground_truth" in rule:
        rule["ground_truth"] = str(Path(root) / rule["ground_truth"])
    return rule
