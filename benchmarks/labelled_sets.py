"""The labelled test sets the int8 and aggregator benchmarks evaluate on, as data sections:
Gardens Point day_right -> night_right (200 queries, +/-2 frames), Gardens Point day_right ->
day_left (the lateral shift, 200 queries, +/-2 frames) and IE Tower's test split."""

from __future__ import annotations

from pathlib import Path


def evaluation_sets(shared: Path) -> dict[str, dict]:
    gp, tower = shared / "data" / "gardens_point", shared / "data" / "ie_tower"
    night = {"database": str(gp / "day_right"), "queries": str(gp / "night_right"), "tolerance_frames": 2}
    lateral = {"database": str(gp / "day_right"), "queries": str(gp / "day_left"), "tolerance_frames": 2}
    return {"gardens_point_night": night, "gardens_point_lateral": lateral, "ie_tower_test": {"dataset": str(tower)}}
