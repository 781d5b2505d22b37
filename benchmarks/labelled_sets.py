"""The labelled test sets the int8 and aggregator benchmarks evaluate on, as data sections:
Gardens Point day_right -> night_right (200 queries, +/-2 frames) and IE Tower's test split."""

from __future__ import annotations

from pathlib import Path


def night_and_tower(shared: Path) -> dict[str, dict]:
    gp, tower = shared / "data" / "gardens_point", shared / "data" / "ie_tower"
    night = {"database": str(gp / "day_right"), "queries": str(gp / "night_right"), "tolerance_frames": 2}
    return {"gardens_point_night": night, "ie_tower_test": {"dataset": str(tower)}}
