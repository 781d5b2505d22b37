"""The ``edgevpr`` command."""

from __future__ import annotations

import click

from edgevpr.atomic import check_output
from edgevpr.cli.options import (
    DATA_OPTIONS,
    EVAL_OPTIONS,
    MODEL_OPTIONS,
    QUANTIZE_OPTIONS,
    SEARCH_OPTIONS,
    TRAIN_OPTIONS,
    add_options,
    config_from,
    user_errors,
)
from edgevpr.validate import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, check_number


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """edgevpr: visual place recognition with recall, memory and latency side by side."""


@main.command("eval")
@click.option("--config", "config_file", type=click.Path(), help="YAML config; flags override it.")
@add_options(MODEL_OPTIONS)
@add_options(DATA_OPTIONS)
@add_options(EVAL_OPTIONS)
@user_errors
def eval_command(config_file, **kwargs):
    """Recall@N and the cost block of a model on a dataset."""
    from edgevpr.errors import OutputError
    from edgevpr.evaluate.repeats import format_repeats
    from edgevpr.evaluate.runner import evaluate
    from edgevpr.evaluate.table import format_table
    from edgevpr.timing import contention_warning

    config = config_from(config_file, kwargs, MODEL_OPTIONS, DATA_OPTIONS, EVAL_OPTIONS)
    try:
        result = evaluate(config)
    except OutputError as error:  # computed, but not saved: show it, then say why
        click.echo(f"protocol: {error.result['protocol_name']}")
        click.echo(format_table([error.result]))
        raise
    click.echo(f"protocol: {result['protocol_name']}")
    click.echo(format_table([result]))
    if "repeats" in result:
        click.echo(format_repeats(result["repeats"]))
    warning = contention_warning(result["cost"]["timing"], "extraction")
    if warning:
        click.echo(warning, err=True)
    if config.output.out:
        click.echo(f"results: {config.output.out}")


@main.command("demo")
@click.option("--root", default="edgevpr-demo", show_default=True, type=click.Path(), help="Synthetic dataset folder.")
@click.option(
    "--out",
    default="runs/demo/results.json",
    show_default=True,
    type=click.Path(),
    help="Summary JSON; the other outputs go beside it.",
)
@click.option("--threads", type=int, default=None, help="Torch threads.")
@user_errors
def demo_command(root, out, threads):
    """The main job on a synthetic street: sweep, report, recommendation, map, localization."""
    from edgevpr.demo import run_demo

    run_demo(root, out, threads)


@main.command("train")
@click.option("--config", "config_file", type=click.Path(), help="YAML config; flags override it.")
@add_options([o for o in MODEL_OPTIONS if o[0] != "--onnx"])
@add_options(DATA_OPTIONS)
@add_options([o for o in EVAL_OPTIONS if o[0] in ("--batch-size", "--workers", "--threads")])
@add_options(TRAIN_OPTIONS)
@add_options([o for o in QUANTIZE_OPTIONS if o[0] in ("--int8-layout", "--target")])  # the grid --qat trains on
@user_errors
def train_command(config_file, **kwargs):
    """Train a model (triplet or P x K metric learning); test it on --dataset if given."""
    import os
    import sys

    from edgevpr.train.distributed import launched_by_torchrun, relaunch_with_torchrun
    from edgevpr.train.loop import train

    config = config_from(
        config_file, kwargs, MODEL_OPTIONS, DATA_OPTIONS, EVAL_OPTIONS, TRAIN_OPTIONS, QUANTIZE_OPTIONS
    )
    if config.train.distributed != "none" and not launched_by_torchrun():
        sys.exit(relaunch_with_torchrun(config.train, sys.argv[1:], "edgevpr.cli.torchrun"))
    metrics = train(config)
    if os.environ.get("RANK", "0") != "0":
        return
    click.echo(
        f"run: {metrics['run_dir']} ({metrics['finished']}); best validation Recall@5 "
        f"{metrics['best_val_recall5']} at epoch {metrics['best_epoch']}"
    )
    if "test" in metrics:
        click.echo(f"test {metrics['test']['protocol_name']}: {metrics['test']['recall']}")


def exported_model_options(command):
    """--config, the model options and the resize options of commands that export a model."""
    command = add_options(
        [o for o in DATA_OPTIONS if o[0] in ("--resize", "--resize-factor", "--size", "--max-pixels")]
    )(command)
    command = add_options([o for o in MODEL_OPTIONS if o[0] != "--onnx"])(command)
    return click.option("--config", "config_file", type=click.Path(), help="YAML config; flags override it.")(command)


def check_budget(memory_bytes: float, latency_ms: float, map_size: int) -> None:
    """A device budget's numbers, finite and positive, before any work."""
    check_number(memory_bytes, "--memory", POSITIVE)
    check_number(latency_ms, "--latency-ms", POSITIVE)
    check_number(map_size, "--map-size", AT_LEAST_ONE)


def _quantize_table(keep: tuple[str, ...] | None = None):
    return [o for o in QUANTIZE_OPTIONS if keep is None or o[0].split("/")[0] in keep]


@main.command("quantize")
@exported_model_options
@add_options(_quantize_table())
@add_options([o for o in EVAL_OPTIONS if o[0] in ("--patch-size", "--patch-stride")])
@click.option("--threads", type=int, default=None, help="Threads for calibration.")
@click.option("--out", required=True, type=click.Path(), help="ONNX file to write (atomically).")
@user_errors
def quantize_command(config_file, out, threads, **kwargs):
    """Fold BN, export to ONNX and quantize to fp16, int8, int4 or mixed precision."""
    from edgevpr.quantize.pipeline import quantize_model

    config = config_from(
        config_file, kwargs | {"threads": threads}, MODEL_OPTIONS, DATA_OPTIONS, EVAL_OPTIONS, QUANTIZE_OPTIONS
    )
    report = quantize_model(config, None, out, log=lambda m: click.echo(m, err=True))
    click.echo(
        f"wrote {report['out']}: {report['bytes']} bytes, {report['precision']}"
        + (f" ({report['target']}, {report['calibration']} calibration)" if report["target"] else "")
        + (f", int8 layout {report['int8_layout']}" if report.get("int8_layout") else "")
        + f", {report['bn_folded']} BatchNorm layers folded"
        + (f"; kept in float: {', '.join(report['kept_float'])}" if report.get("kept_float") else "")
        + (f"; biases corrected in {report['bias_corrected']} layers" if report.get("bias_corrected") else "")
    )
    if report.get("layer_errors"):  # --report-layers: the costliest layer first
        click.echo("layer errors (mean squared descriptor difference to fp32 with only that layer in int8):")
        for rank, entry in enumerate(report["layer_errors"], start=1):
            click.echo(f"{rank:4d}  {entry['error']:.3e}  {entry['layer']}")


@main.command("search-precision")
@exported_model_options
@add_options(SEARCH_OPTIONS)
@add_options(_quantize_table(keep=("--calib", "--calibration", "--percentile", "--bias-correction", "--int4-rounding")))
@click.option(
    "--int8-layout",
    type=click.Choice(["auto", "u8s8", "u8s7"]),
    default=None,
    help="int8 layers' layout, simulated and deployed (see quantize --int8-layout); default auto: exact on this CPU.",
)
@click.option("--threads", type=int, default=None, help="Torch threads.")
@click.option("--out", required=True, type=click.Path(), help="Configuration JSON to write.")
@user_errors
def search_precision_command(config_file, int8_layout, threads, out, **kwargs):
    """Per-layer int4/int8/fp16 by genetic search under an average bit-width budget."""
    check_output(out, "--out")
    from edgevpr.research.mixed import mixed_options, search_precision

    config = config_from(
        config_file,
        kwargs | {"threads": threads, "int8_layout": int8_layout},
        MODEL_OPTIONS,
        DATA_OPTIONS,
        [o for o in EVAL_OPTIONS if o[0] == "--threads"],
        SEARCH_OPTIONS,
        QUANTIZE_OPTIONS,
    )
    result = search_precision(config, mixed_options(config), out, log=lambda m: click.echo(m, err=True))
    counts = {p: sum(layer["precision"] == p for layer in result["layers"]) for p in ("int4", "int8", "fp16")}
    click.echo(
        f"B = {result['budget']:g} ({result['weighting']}): average {result['average_bits']:.2f} bits; "
        f"{counts['int4']} int4, {counts['int8']} int8, {counts['fp16']} fp16 layers; "
        f"fitness {result['fitness']:.4g} after {result['evaluations']} evaluations"
    )
    for name, baseline in result.get("baselines", {}).items():
        click.echo(f"  {name}: fitness {baseline['fitness']:.4g}")
    click.echo(f"wrote {out} ({result['seconds']} s)")


@main.command("compare-precisions")
@click.option("--config", "config_file", type=click.Path(), help="YAML config; flags override it.")
@add_options([o for o in MODEL_OPTIONS if o[0] != "--onnx"])
@add_options(DATA_OPTIONS)
@add_options(_quantize_table(keep=("--calib", "--calib-count")))
@click.option("--threads", type=int, default=None, help="Threads for PyTorch and ONNX Runtime.")
@click.option("--out", type=click.Path(), default=None, help="Write the rows as JSON.")
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Quantize each calibrating variant R times on calibration images drawn with seeds 0..R-1.",
)
@user_errors
def compare_precisions_command(config_file, threads, out, repeat, **kwargs):
    """fp32, fp16, int8 (each calibration and target) and int4 of one model, side by side."""
    check_output(out, "--out")
    from edgevpr.atomic import write_json
    from edgevpr.evaluate.precisions import compare_precisions, format_rows, format_spreads

    config = config_from(
        config_file, kwargs | {"threads": threads}, MODEL_OPTIONS, DATA_OPTIONS, EVAL_OPTIONS, QUANTIZE_OPTIONS
    )
    if not config.quantize.calib:
        raise click.UsageError("Missing option '--calib' (or quantize.calib in the config).")
    rows = compare_precisions(
        config,
        config.quantize.calib,
        config.quantize.calib_count,
        log=lambda m: click.echo(m, err=True),
        repeat=repeat,
    )
    click.echo(f"protocol: {rows[0]['protocol_name']}")
    click.echo(format_rows(rows))
    if repeat > 1:
        click.echo(format_spreads(rows))
    if out:
        write_json(out, rows)


@main.group("index")
def index_group():
    """Build and search faiss indexes over saved descriptors."""


@index_group.command("build")
@click.option("--descriptors", required=True, type=click.Path(), help="Folder with database.npy.")
@click.option("--index", "spec", required=True, help="faiss factory string, optionally ending in ,RerankK.")
@click.option("--out", required=True, type=click.Path(), help="Index file to write (atomically).")
@click.option("--metric", type=click.Choice(["ip", "l2"]), default=None, help="Default: the descriptors' metric.")
@click.option("--search-params", default=None, help="faiss search parameters, e.g. nprobe=32.")
@click.option(
    "--descriptor-bits", type=click.Choice(["32", "16", "8", "1"]), default="32", help="Bits per dimension stored."
)
@click.option("--fit-descriptors", type=click.Path(), default=None, help="Bits 1: descriptors to fit the rotation on.")
@click.option("--binary-rotation", type=click.Choice(["itq", "random"]), default="itq", show_default=True)
@click.option("--int8-scale", type=click.Choice(["dimension", "global"]), default="dimension", show_default=True)
@user_errors
def index_build_command(
    descriptors, spec, out, metric, search_params, descriptor_bits, fit_descriptors, binary_rotation, int8_scale
):
    """Build an index over DIR/database.npy and save it."""
    from edgevpr.cli.index_tasks import build_from_folder

    report = build_from_folder(
        descriptors,
        spec,
        out,
        metric,
        search_params,
        int(descriptor_bits),
        fit_descriptors,
        binary_rotation,
        int8_scale,
    )
    click.echo(
        f"built {report['index']} over {report['ntotal']} x {report['dim']} ({report['metric']}) "
        f"in {report['build_s']:.2f} s; {report['memory_bytes']} bytes in memory -> {out}"
    )


@index_group.command("search")
@click.option("--index", "index_path", required=True, type=click.Path(), help="Index file from `index build`.")
@click.option("--descriptors", required=True, type=click.Path(), help="Folder with queries.npy.")
@click.option("--k", default=20, show_default=True, type=int, help="Candidates per query.")
@click.option("--out", type=click.Path(), default=None, help="Write the (Q, k) predictions as .npy.")
@user_errors
def index_search_command(index_path, descriptors, k, out):
    """Search DIR/queries.npy; report recall where DIR has ground truth."""
    import json

    from edgevpr.cli.index_tasks import search_folder

    click.echo(json.dumps(search_folder(index_path, descriptors, k, out), indent=2))


@main.command("advise", short_help="Descriptor size and index for a memory and latency budget (Grainge et al. 2024).")
@click.option("--memory", "memory_bytes", required=True, type=float, help="Bytes available for the map descriptors.")
@click.option("--latency-ms", required=True, type=float, help="Time budget per localisation (extraction + matching).")
@click.option("--map-size", required=True, type=int, help="Number of map images N.")
@click.option(
    "--extraction-ms", default=0.0, show_default=True, type=float, help="Descriptor extraction time per image."
)
@click.option(
    "--scaling",
    type=click.Path(),
    default=None,
    help="JSON from benchmarks/search_scaling.py (k1, k2 and ANN rows); default: measure k1, k2 now.",
)
@click.option(
    "--descriptor-bits",
    default="32",
    show_default=True,
    help="Bit widths to weigh, e.g. 32,16,8,1 (constants not in --scaling are measured now).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@user_errors
def advise_command(memory_bytes, latency_ms, map_size, extraction_ms, scaling, descriptor_bits, as_json):
    """Descriptor size (Grainge et al. 2024 Eq. 11-12) and, if exact search cannot fit, an ANN index."""
    check_budget(memory_bytes, latency_ms, map_size)
    check_number(extraction_ms, "--extraction-ms", NON_NEGATIVE)
    import json

    from edgevpr.search.advise import advise, format_advice, load_scaling

    try:
        bits = tuple(int(b) for b in descriptor_bits.split(",") if b.strip())
    except ValueError:
        raise click.BadParameter(f"{descriptor_bits!r} is not a list of integers", param_hint="--descriptor-bits")
    answer = advise(
        memory_bytes,
        latency_ms,
        map_size,
        extraction_ms,
        load_scaling(scaling) if scaling else None,
        bits,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(json.dumps(answer, indent=2) if as_json else format_advice(answer))


@main.command("sweep")
@click.argument("sweep_file", type=click.Path())
@click.option(
    "--store", "store_path", required=True, type=click.Path(), help="SQLite results store (created if absent)."
)
@click.option("--jobs", default=1, show_default=True, type=int, help="Local processes running cells at once.")
@click.option("--ray", "ray_address", default=None, help="Run cells as Ray tasks: 'local' or a cluster ADDRESS.")
@click.option("--cpus-per-cell", default=1.0, show_default=True, type=float, help="Ray CPUs reserved per cell.")
@user_errors
def sweep_command(sweep_file, store_path, jobs, ray_address, cpus_per_cell):
    """Run every cell of SWEEP_FILE not yet in the store; one row per cell."""
    from edgevpr.explore.store import Store
    from edgevpr.explore.sweep import run_sweep
    from edgevpr.explore.sweep_file import load_sweep

    sweep, store = load_sweep(sweep_file), Store(store_path)
    try:
        summary = run_sweep(sweep, store, jobs, ray_address, cpus_per_cell, log=lambda m: click.echo(m, err=True))
    finally:
        store.close()
    click.echo(f"{summary['ran']} cells run, {summary['skipped']} already stored -> {store_path}")
    if summary["failed"]:
        raise click.ClickException(
            f"{len(summary['failed'])} cells failed (not stored; a re-run retries them): "
            + "; ".join(summary["failed"][:3])
        )


@main.command("recommend")
@click.option("--store", "store_path", required=True, type=click.Path(exists=True), help="Results store.")
@click.option("--memory", "memory_bytes", required=True, type=float, help="Bytes for the model and the map.")
@click.option("--latency-ms", required=True, type=float, help="Budget for extraction + matching per query.")
@click.option("--map-size", required=True, type=int, help="Map images N.")
@click.option("--dataset", default=None, help="Only runs on this dataset.")
@click.option(
    "--scaling",
    type=click.Path(),
    default=None,
    help="JSON of benchmarks/search_scaling.py: exact matching time from k1, k2 (Eq. 12).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option(
    "--write-config",
    type=click.Path(),
    default=None,
    help="Write the recommended run as a YAML recipe for eval/quantize/map build --config.",
)
@user_errors
def recommend_command(store_path, memory_bytes, latency_ms, map_size, dataset, scaling, as_json, write_config):
    """The stored configuration with the best Recall@1 that fits the budget."""
    check_budget(memory_bytes, latency_ms, map_size)
    check_output(write_config, "--write-config")
    import json

    from edgevpr.explore.recommend import format_recommendation, recommend, write_recipe
    from edgevpr.explore.store import Store
    from edgevpr.search.advise import load_scaling
    from edgevpr.search.cost_model import fit_cost_model

    cost_model = None
    if scaling:
        measured = load_scaling(scaling)
        cost_model = fit_cost_model(measured["exact"], source=measured.get("source", scaling))
    store = Store(store_path)
    rows = store.rows()
    store.close()
    answer = recommend(rows, memory_bytes, latency_ms, map_size, dataset, cost_model)
    click.echo(json.dumps(answer, indent=2) if as_json else format_recommendation(answer))
    if write_config:
        if not answer["fits"]:
            raise click.ClickException("nothing fits the budget: no recipe written")
        write_recipe(next(row for row in rows if row["key"] == answer["best"]["key"]), write_config, answer)
        click.echo(f"recipe: {write_config}", err=True)


@main.command("report")
@click.option("--store", "store_path", type=click.Path(exists=True), help="Results store (a sweep's report).")
@click.option("--localized", type=click.Path(exists=True), help="JSON lines of `edgevpr localize` (a stream's report).")
@click.option("--map", "map_dir", type=click.Path(), help="--localized: the map the frames were localized against.")
@click.option("--images", type=click.Path(), help="--localized: the folder of the localized images (the gallery).")
@click.option("--threshold-m", default=25.0, show_default=True, type=float, help="--localized: correct within M m.")
@click.option("--out", required=True, type=click.Path(), help="HTML file to write.")
@click.option("--map-size", default=100_000, show_default=True, type=int, help="Initial map size for projected costs.")
@user_errors
def report_command(store_path, localized, map_dir, images, threshold_m, out, map_size):
    """A self-contained HTML page: a sweep's Pareto fronts, design rules and sortable runs
    (--store), or a localized stream's trajectory, errors and failures (--localized, --map)."""
    check_output(out, "--out")
    if bool(store_path) == bool(localized):
        raise click.UsageError("give --store (a sweep's report) or --localized with --map (a stream's), one of them")
    if localized:
        from edgevpr.maps.localization_report import report_from_lines

        if not map_dir:
            raise click.UsageError("--localized needs --map, the map the frames were localized against")
        click.echo(f"report: {report_from_lines(localized, map_dir, out, threshold_m, images)}")
        return
    check_number(map_size, "--map-size", AT_LEAST_ONE)
    from edgevpr.explore.report import write_report
    from edgevpr.explore.store import Store

    store = Store(store_path)
    click.echo(f"report: {write_report(store, out, map_size)}")
    store.close()


@main.command("export")
@click.option("--store", "store_path", required=True, type=click.Path(exists=True), help="Results store.")
@click.option("--out", required=True, type=click.Path(), help="FILE.csv or FILE.parquet.")
@user_errors
def export_command(store_path, out):
    """Export the results store to CSV or Parquet."""
    check_output(out, "--out")
    from edgevpr.explore.store import Store

    store = Store(store_path)
    click.echo(f"{store.export(out)} runs -> {out}")
    store.close()


@main.command("protocols")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
def protocols_command(as_json):
    """The registered evaluation protocols: folders, positives, counts, fingerprint."""
    import dataclasses
    import json

    from edgevpr.data.protocols import registered

    protocols = registered()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(p) for p in protocols.values()], indent=2))
        return
    for protocol in protocols.values():
        rule = ", ".join(f"{k} {v}" for k, v in protocol.positives.items())
        counts = (
            f"{protocol.num_database} / {protocol.num_queries} images" if protocol.num_database else "counts not pinned"
        )
        pinned = f"fingerprint {protocol.fingerprint[:12]}" if protocol.fingerprint else "no fingerprint"
        click.echo(
            f"{protocol.name} (v{protocol.version}): {protocol.database} -> {protocol.queries}; {rule}; "
            f"{counts}; {pinned}"
        )
        click.echo(f"    {protocol.description}")


COMPONENTS = (  # what `edgevpr list` shows: label, registry variable, the package folder that registers them
    ("backbones", "BACKBONES", "models"),
    ("aggregators", "AGGREGATORS", "models"),
    ("precisions", "PRECISIONS", "."),
    ("re-rankers", "RERANKERS", "rerank"),
)


@main.command("list")
def list_command():
    """The registered backbones, aggregators, precisions and re-rankers (aliases in brackets)."""
    from pathlib import Path

    from edgevpr.registry import declared

    package = Path(__file__).resolve().parents[1]
    width = max(len(label) for label, _, _ in COMPONENTS) + 2
    for label, registry, folder in COMPONENTS:
        names = [
            name + (f" ({', '.join(aliases)})" if aliases else "")
            for name, aliases in declared(package / folder, registry).items()
        ]
        click.echo(f"{label + ':':<{width}}" + ", ".join(names))


from edgevpr.cli.convert import convert_command  # noqa: E402  (registered below)
from edgevpr.cli.maps import localize_command, map_group  # noqa: E402  (registered below)
from edgevpr.cli.matcher import export_matcher_command, train_matcher_command  # noqa: E402

main.add_command(map_group)
main.add_command(localize_command)
main.add_command(convert_command)
main.add_command(train_matcher_command)
main.add_command(export_matcher_command)

if __name__ == "__main__":
    main()
