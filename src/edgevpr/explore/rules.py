"""The seeds' design rules checked against stored runs.

A rule compares runs that differ in one setting only (for example the aggregator, MAC
against GeM), optionally among runs that share another (precision int8), and reports the mean
Recall@1 difference over the matched pairs. No pairs, no verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


def cell_settings(row: dict) -> dict:
    """A run's cell as flat ``section.key`` settings, plus its precision."""
    cell = json.loads(row["cell_json"])
    flat = {
        f"{section}.{key}": json.dumps(value, sort_keys=True)
        for section, values in cell["overrides"].items()
        for key, value in values.items()
    }
    flat["precision"] = json.dumps(cell["precision"])
    flat.setdefault("model.backbone", json.dumps(row["backbone"]))  # what a bundle named is still compared
    flat["dataset"] = json.dumps(row["dataset"])
    return flat


@dataclass(frozen=True)
class Rule:
    claim: str
    setting: str  # e.g. "model.aggregator"
    first: object  # e.g. "mac"
    second: object  # e.g. "gem"; None = the setting absent (the default)
    given: tuple = ()  # ((setting, value), ...)
    expect: str = "higher"  # first's Recall@1 compared with second's: "higher", "lower", "within1"


RULES = [
    Rule("MAC beats GeM under int8 (Grainge et al. 2024)", "model.aggregator", "mac", "gem", (("precision", "int8"),)),
    Rule("MAC beats GeM in fp32", "model.aggregator", "mac", "gem", (("precision", "fp32"),)),
    Rule("int8 keeps Recall@1 within 1 point of fp32", "precision", "int8", "fp32", (), "within1"),
    Rule("60 % resolution loses recall (Berton et al. 2022)", "data.resize_factor", 0.6, None, (), "lower"),
]


def _encoded(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def check(rule: Rule, rows: list[dict]) -> dict:
    settings = [cell_settings(row) for row in rows]
    given = {name: _encoded(value) for name, value in rule.given}

    def context(flat: dict) -> tuple:
        return tuple(sorted((k, v) for k, v in flat.items() if k != rule.setting))

    firsts, seconds = {}, {}
    for row, flat in zip(rows, settings):
        if any(flat.get(name) != value for name, value in given.items()):
            continue
        value = flat.get(rule.setting)
        if value == _encoded(rule.first):
            firsts[context(flat)] = row
        elif value == _encoded(rule.second):
            seconds[context(flat)] = row
    pairs = [(firsts[c], seconds[c]) for c in firsts if c in seconds]
    if not pairs:
        return {"claim": rule.claim, "pairs": 0, "verdict": "not tested: no matching pairs in this store"}
    differences = [a["recall_1"] - b["recall_1"] for a, b in pairs]
    mean = sum(differences) / len(differences)
    holds = {"higher": mean > 0, "lower": mean < 0, "within1": all(abs(d) <= 1.0 for d in differences)}[rule.expect]
    return {
        "claim": rule.claim,
        "pairs": len(pairs),
        "mean_recall1_difference": mean,
        "differences": differences,
        "verdict": "holds here" if holds else "does not hold here",
    }


def check_all(rows: list[dict]) -> list[dict]:
    return [check(rule, rows) for rule in RULES]
