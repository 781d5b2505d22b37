"""``edgevpr map build|add|info|export-hloc`` and ``edgevpr localize``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from edgevpr.atomic import check_output
from edgevpr.cli.options import (
    DATA_OPTIONS,
    MODEL_OPTIONS,
    RECORDING_OPTIONS,
    add_options,
    config_from,
    user_errors,
)
from edgevpr.validate import AT_LEAST_ONE, check_number


@click.group("map")
def map_group():
    """Build a map once (model + contract + descriptors + index + positions), then localize."""


@map_group.command("build")
@click.option("--checkpoint", type=click.Path(), default=None, help="Checkpoint of `edgevpr train` as the map's model.")
@click.option("--onnx", type=click.Path(), default=None, help="ONNX file (any precision) as the map's model.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(),
    help="YAML recipe (e.g. of `recommend --write-config`): its model, deployed at its quantize section's "
    "precision, and its index, descriptor bits and patches.",
)
@add_options([o for o in MODEL_OPTIONS if o[0] not in ("--onnx", "--checkpoint")])
@add_options([o for o in DATA_OPTIONS if o[0] in ("--resize", "--size", "--resize-factor", "--max-pixels")])
@add_options(RECORDING_OPTIONS)
@click.option(
    "--images", required=True, type=click.Path(), help="Folder of the map's images, a video file or a bag (--topic)."
)
@click.option("--positions", type=click.Path(), default=None, help="CSV name,x,y[,heading] or name,lat,lon.")
@click.option("--index", default=None, help="faiss factory string [,RerankK] (default: the recipe's, else Flat).")
@click.option("--search-params", default=None, help="faiss search parameters, e.g. nprobe=32.")
@click.option("--threads", type=int, default=None, help="Threads for extraction.")
@click.option(
    "--descriptor-bits",
    type=click.Choice(["32", "16", "8", "1"]),
    default=None,
    help="Bits per dimension stored (default: the recipe's, else 32).",
)
@click.option("--descriptor-fit", type=click.Path(), default=None, help="Bits 1: images to fit the rotation on.")
@click.option("--binary-rotation", type=click.Choice(["itq", "random"]), default=None, help="Bits 1 (default itq).")
@click.option("--shards", type=int, default=1, show_default=True, help="Index parts, searched in parallel.")
@click.option(
    "--patches", is_flag=True, help="Keep patch descriptors for a second stage (a PyTorch model or a --patches file)."
)
@click.option("--patch-size", default=None, help="Patch sizes in feature cells, with --patches (default 3).")
@click.option("--patch-stride", default=None, help="One stride per size, with --patches (default 1).")
@click.option("--patch-dim", type=int, default=None, help="Compact patches: PCA to D, fitted on the map's patches.")
@click.option("--patch-bits", type=click.Choice(["16", "8"]), default=None, help="Patches in fp16 (default) or int8.")
@click.option("--out", required=True, type=click.Path(), help="Map folder to create.")
@click.option(
    "--ray",
    "ray",
    is_flag=False,
    flag_value="local",
    default=None,
    help="Describe the images on a Ray cluster: --ray ADDRESS, or --ray alone for this machine's CPUs.",
)
@user_errors
def map_build_command(checkpoint, onnx, config_file, images, positions, threads, patches, out, ray, shards, **kwargs):
    """Extract every image of --images with the model, index them and write the map folder."""
    from edgevpr.errors import ConfigError
    from edgevpr.maps import Map, ModelSource
    from edgevpr.maps.recipe import recipe_map_options, recipe_source

    if checkpoint and onnx:
        raise click.UsageError("give --checkpoint or --onnx, not both")
    # flag -> Map.build's argument; a flag given overrides the recipe's value
    map_flags = {
        "index": "index",
        "search_params": "params",
        "descriptor_bits": "descriptor_bits",
        "descriptor_fit": "descriptor_fit",
        "binary_rotation": "binary_rotation",
    }
    chosen = {key: kwargs.pop(key) for key in (*map_flags, "patch_size", "patch_stride", "patch_dim", "patch_bits")}
    recording = {key for _, _, key, _ in RECORDING_OPTIONS}
    given = [flag for flag, value in kwargs.items() if value is not None and flag not in {"max_pixels", *recording}]
    if (checkpoint or onnx) and (given or config_file):
        ignored = ", ".join(["--config"] * bool(config_file) + ["--" + flag.replace("_", "-") for flag in given])
        raise ConfigError(
            f"{checkpoint or onnx}: the model file carries its model and input contract; {ignored} would be ignored"
        )
    config = config_from(config_file, kwargs, MODEL_OPTIONS, DATA_OPTIONS)
    options = recipe_map_options(config)
    options |= {argument: chosen[flag] for flag, argument in map_flags.items() if chosen[flag] is not None}
    options["descriptor_bits"] = int(options["descriptor_bits"])
    if patches or chosen["patch_size"] or chosen["patch_stride"]:
        options["patches"] = _patch_spec(chosen["patch_size"] or "3", chosen["patch_stride"] or "1")
    if chosen["patch_dim"] is not None or chosen["patch_bits"] is not None:
        if options.get("patches") is None:
            raise ConfigError("--patch-dim and --patch-bits shape patch descriptors: give --patches too")
        options["patch_dim"] = chosen["patch_dim"] or options.get("patch_dim")
        options["patch_bits"] = int(chosen["patch_bits"] or options.get("patch_bits") or 16)
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    images, positions = _recording_folder(images, positions, config.data, log)
    with contextlib.ExitStack() as stack:
        if checkpoint or onnx:
            source = ModelSource(onnx, checkpoint, None)
        else:
            source = stack.enter_context(recipe_source(config, config_file, Path(out), log))
        built = Map.build(
            source,
            images,
            out,
            positions,
            threads=threads,
            max_pixels=config.data.max_pixels,
            log=log,
            ray=ray,
            shards=shards,
            **options,
        )
    _echo_info(built.info())


def _recording_folder(images, positions, data, log):
    """A recording's frames as an image folder (``data.recordings``) with the positions they
    carry in their names, or the headings CSV written beside them; a folder is left as it is."""
    from edgevpr.data.recordings import image_folder, is_recording

    if not is_recording(images):
        return images, positions
    folder = image_folder(images, data, log)
    headings = folder / "positions.csv"
    return folder, positions or (str(headings) if headings.is_file() else None)


def _patch_spec(sizes: str, strides: str):
    from edgevpr.cli.matcher import sizes_option
    from edgevpr.extraction.patches import PatchSpec

    return PatchSpec(sizes_option(sizes, "--patch-size"), sizes_option(strides, "--patch-stride"))


@map_group.command("add")
@click.argument("map_dir", type=click.Path())
@click.option(
    "--images", required=True, type=click.Path(), help="Folder of the images to add, a video file or a bag (--topic)."
)
@click.option("--positions", type=click.Path(), default=None, help="CSV name,x,y[,heading] or name,lat,lon.")
@add_options(RECORDING_OPTIONS)
@click.option("--threads", type=int, default=None, help="Threads for extraction.")
@click.option("--ray", is_flag=False, flag_value="local", default=None, help="Describe the images on a Ray cluster.")
@user_errors
def map_add_command(map_dir, images, positions, threads, ray, **recording):
    """Append images to a map as a new version (the previous one stays usable until it is whole)."""
    from edgevpr.maps import Map

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    data = config_from(None, recording, RECORDING_OPTIONS).data
    images, positions = _recording_folder(images, positions, data, log)
    updated = Map.load(map_dir, threads).add(images, positions, log=log, ray=ray)
    _echo_info(updated.info())


@map_group.command("info")
@click.argument("map_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--threads", type=int, default=None, help="Threads for the latency measurement.")
@user_errors
def map_info_command(map_dir, as_json, threads):
    """What a map holds, its bytes, and its per-frame latency measured on this machine."""
    from edgevpr.maps import Map

    loaded = Map.load(map_dir, threads)
    info = loaded.info() | {"latency": loaded.expected_latency()}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        _echo_info(info)


@map_group.command("export-hloc")
@click.argument("map_dir", type=click.Path())
@click.option("--queries", required=True, type=click.Path(), help="Folder of query images.")
@click.option("--top-k", default=20, show_default=True, type=int, help="Map images paired with each query.")
@click.option("--out", required=True, type=click.Path(), help="Folder for global-feats.h5 and pairs.txt.")
@user_errors
def map_export_hloc_command(map_dir, queries, top_k, out):
    """hloc's global-descriptor HDF5 and retrieval pairs file, for hloc / COLMAP."""
    from edgevpr.maps import Map
    from edgevpr.maps.hloc import export_hloc

    check_number(top_k, "--top-k", AT_LEAST_ONE)

    report = export_hloc(Map.load(map_dir), queries, out, top_k)
    click.echo(
        f"wrote {report['features']} ({report['database']} map + {report['queries']} query descriptors) and "
        f"{report['pairs']} ({report['pairs_written']} pairs)"
    )


def _echo_info(info: dict) -> None:
    megabytes = sum(info["bytes"].values()) / 1e6
    click.echo(
        f"map {info['folder']}: {info['images']} images ({info['positions']} positions), "
        f"{info['descriptor_dim']}-D, index {info['index']['spec']}, model {info['model']['kind']} "
        f"{info['model']['precision']}, {megabytes:.1f} MB on disk, index {info['index_memory_bytes'] / 1e6:.1f} MB "
        f"in memory; known above score {info['known']['min_score']:.3f}"
    )
    for number, shard in enumerate(info.get("index_shards") or []):
        click.echo(f"  index shard {number}: {shard['file']}, {shard['count']} entries, {shard['bytes']} bytes")
    if "latency" in info:
        latency = info["latency"]
        click.echo(
            f"per frame here: extraction {latency['extract_ms']:.1f} ms + search {latency['search_ms']:.3f} ms "
            f"at {latency['image_size'][0]}x{latency['image_size'][1]}"
        )


@click.command("localize")
@click.argument("map_dir", type=click.Path())
@click.argument("images", nargs=-1, type=click.Path())
@click.option(
    "--images", "folder", type=click.Path(), default=None, help="Localize every image of this folder, in order."
)
@click.option("--video", type=click.Path(), default=None, help="Localize the frames of this video file, in order.")
@click.option("--bag", type=click.Path(), default=None, help="Localize the frames of this ROS 1/2 bag's --topic.")
@add_options([o for o in RECORDING_OPTIONS if o[0] != "--positions-file"])
@click.option(
    "--positions-file",
    type=click.Path(),
    default=None,
    help="Recordings: CSV timestamp,x,y[,heading] of the true positions (adds error_m to each line).",
)
@click.option(
    "--realtime", is_flag=True, help="Replay a recording at its own rate, dropping frames it cannot keep up with."
)
@click.option("--top-k", default=5, show_default=True, type=int, help="Map entries reported per frame.")
@click.option("--rerank", default=None, help="Second stage: ransac, ransac_fundamental, rapid or attention.")
@click.option(
    "--rerank-k", default=100, show_default=True, type=int, help="Candidates re-ranked (a map built with --patches)."
)
@click.option(
    "--matcher",
    type=click.Path(),
    default=None,
    help="--rerank attention: a trained matcher file (default: untrained, similarity prior).",
)
@click.option(
    "--sequence",
    "length",
    default=1,
    show_default=True,
    type=int,
    help="Sequence matching over the last L frames (SeqSLAM-style); 1 = single frames.",
)
@click.option(
    "--sequence-enhance",
    "enhance",
    default=0,
    show_default=True,
    type=int,
    help="--sequence: SeqSLAM's local contrast enhancement over R map entries (0: none).",
)
@click.option(
    "--min-score", type=float, default=None, help="Known/unknown threshold (default: the map's calibrated one)."
)
@click.option("--jsonl", type=click.Path(), default=None, help="Write the JSON lines here (each flushed as answered).")
@click.option("--report", type=click.Path(), default=None, help="Write an HTML localization report here.")
@click.option(
    "--report-threshold-m",
    type=float,
    default=25.0,
    show_default=True,
    help="--report: a top-1 this close to the true position is correct.",
)
@click.option("--threads", type=int, default=None, help="Threads for extraction.")
@user_errors
def localize_command(
    map_dir, images, folder, video, bag, realtime, top_k, length, enhance, min_score, jsonl, threads, **rest
):
    """One JSON line per frame, written as soon as the frame is answered: its top-k map entries
    with positions and scores, known or not, and the milliseconds of each stage; for a
    recording its timestamp too, and the error in metres where true positions are given."""
    from edgevpr.maps import Map

    check_output(jsonl, "--jsonl")
    check_output(rest["report"], "--report")
    frames = _stream_frames(images, folder, video, bag, rest, realtime)
    check_number(top_k, "--top-k", AT_LEAST_ONE)
    check_number(length, "--sequence", AT_LEAST_ONE)
    if min_score is not None:
        check_number(min_score, "--min-score", ("a number", lambda v: True))
    loaded = Map.load(map_dir, threads)
    check_number(enhance, "--sequence-enhance", (">= 0", lambda v: v >= 0))
    rerank = (rest["rerank"], rest["rerank_k"], rest["matcher"])
    localizer = _localizer(loaded, map_dir, top_k, length, min_score, enhance, *rerank)
    report = None
    if rest["report"]:
        from edgevpr.maps.localization_report import LocalizationReport

        report = LocalizationReport(loaded, rest["report_threshold_m"])
    _run_stream(loaded, localizer, frames, jsonl, realtime, report)
    if report is not None:
        click.echo(f"report: {report.write(rest['report'])}", err=True)


def _stream_frames(images, folder, video, bag, rest: dict, realtime: bool):
    """Image files or a recording's frames, as ``maps.stream.StreamFrame`` s (an iterator for a recording)."""
    from edgevpr.data.images import list_images
    from edgevpr.data.recordings import open_frames, options_of
    from edgevpr.maps.stream import StreamFrame, recording_frames

    recording = {key: rest.pop(key) for _, _, key, _ in RECORDING_OPTIONS}
    sources = [bool(images or folder), bool(video), bool(bag)]
    if sum(sources) != 1:
        raise click.UsageError("give images (IMAGE... or --images DIR), --video FILE or --bag FILE: one of them")
    if video or bag:
        data = config_from(None, recording, RECORDING_OPTIONS).data
        return recording_frames(open_frames(video or bag, options_of(data)))
    given = [f"--{key.replace('_', '-')}" for key, value in recording.items() if value is not None]
    if given or realtime:
        raise click.UsageError(f"{(given or ['--realtime'])[0]} is for recordings (--video or --bag)")
    paths = [Path(p) for p in images] + (list_images(folder) if folder else [])
    return [StreamFrame(path, path.name) for path in paths]


def _localizer(loaded, map_dir, top_k, length, min_score, enhance, rerank, rerank_k, matcher):
    """The per-frame function: the map's search with a second stage, or a (sequence) Localizer."""
    from edgevpr.errors import ConfigError
    from edgevpr.maps import Localizer
    from edgevpr.rerank import make_reranker

    check_number(rerank_k, "--rerank-k", AT_LEAST_ONE)
    if rerank and length > 1:
        raise ConfigError("--rerank and --sequence do not combine; choose one")
    if not rerank:
        return Localizer(loaded, length, top_k, min_score=min_score, enhance=enhance)
    reranker = make_reranker(rerank, matcher)
    if loaded.patches is None:
        raise ConfigError(f"{map_dir}: the map holds no patch descriptors; build it with --patches to re-rank")
    if hasattr(reranker, "check"):
        reranker.check(loaded.patches.array.shape[2])

    def localize(image, name):
        return loaded.localize(image, top_k, min_score, reranker=reranker, rerank_k=rerank_k, name=name)

    return localize


def _run_stream(loaded, localizer, frames, jsonl, realtime, report=None) -> None:
    """Each answer written and flushed as it comes (standard output, or the --jsonl file), then
    one summary line on standard error."""
    from edgevpr.maps.stream import localize_stream

    kind = loaded.manifest["positions"]["kind"]
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(open(jsonl, "w")) if jsonl else None

        def emit(answer: dict) -> None:
            line = json.dumps(answer)
            if output is None:
                click.echo(line)
            else:
                output.write(line + "\n")
                output.flush()

        observe = (lambda answer, frame: report.add(answer, frame.image)) if report is not None else None
        summary = localize_stream(localizer, frames, emit, kind, realtime, observe=observe)
    if not summary["frames"] and not summary["dropped"]:
        raise click.UsageError("no frames to localize")
    if not (jsonl or realtime):  # standard output holds the JSON lines only
        return
    line = f"{summary['frames']} frames localized" + (f" -> {jsonl}" if jsonl else "")
    if realtime:
        line += f"; realtime: {summary['hz']} Hz achieved, {summary['dropped']} frames dropped"
    if "p50_ms" in summary:
        line += f"; per frame p50 {summary['p50_ms']} / p90 {summary['p90_ms']} / p99 {summary['p99_ms']} ms"
    click.echo(line, err=True)
