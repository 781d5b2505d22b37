"""``edgevpr convert FORMAT SRC DST``: another dataset layout to one ``eval --dataset DST`` reads,
or a recording (``video``, ``bag``) to a folder of its frames that every command reads."""

from __future__ import annotations

import json

import click

from edgevpr.cli.options import RECORDING_OPTIONS, add_options, config_from, user_errors

FORMATS = ("vprbench", "nordland", "pitts", "msls", "csv", "video", "bag")


@click.command("convert")
@click.argument("format_name", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("source", type=click.Path())
@click.argument("destination", type=click.Path())
@click.option("--database", "database_season", default="summer", show_default=True, help="nordland: database season.")
@click.option("--queries", "queries_season", default="winter", show_default=True, help="nordland: query season.")
@click.option(
    "--tolerance-frames", type=click.IntRange(min=0), default=1, show_default=True, help="nordland: +/- frames."
)
@click.option("--mat", default=None, help="pitts: the dbStruct .mat file (default: the one .mat in SRC).")
@click.option("--cities", default="cph,sf", show_default=True, help="msls: comma-separated cities.")
@click.option(
    "--subset",
    type=click.Choice(["official", "all"]),
    default="official",
    show_default=True,
    help="msls: the evaluation code's queries (740 on cph,sf) or every image.",
)
@click.option(
    "--threshold-m",
    type=click.FloatRange(min=0, min_open=True),
    default=25.0,
    show_default=True,
    help="msls, csv: positive radius in metres.",
)
@click.option("--database-csv", default=None, help="csv: positions of the database (default SRC/database.csv).")
@click.option("--queries-csv", default=None, help="csv: positions of the queries (default SRC/queries.csv).")
@click.option(
    "--link",
    type=click.Choice(["auto", "symlink", "copy"]),
    default="auto",
    show_default=True,
    help="auto: hard links, else symbolic links, else copies.",
)
@add_options(RECORDING_OPTIONS)
@user_errors
def convert_command(format_name, source, destination, link, **options):
    """Convert a VPR-Bench, Nordland, Pittsburgh, MSLS or CSV-positioned dataset, or write a
    video's or a bag's frames (named by timestamp, with their positions) into a folder."""
    from edgevpr.data.convert import convert

    recording = {key: options.pop(key) for _, _, key, _ in RECORDING_OPTIONS}
    if format_name in ("video", "bag"):
        _convert_recording(format_name, source, destination, recording)
        return

    chosen = {
        "vprbench": {},
        "nordland": {
            "database": options["database_season"],
            "queries": options["queries_season"],
            "tolerance_frames": options["tolerance_frames"],
        },
        "pitts": {"mat": options["mat"]},
        "msls": {
            "cities": tuple(c.strip() for c in options["cities"].split(",") if c.strip()),
            "subset": options["subset"],
            "threshold_m": options["threshold_m"],
        },
        "csv": {
            "database_csv": options["database_csv"],
            "queries_csv": options["queries_csv"],
            "threshold_m": options["threshold_m"],
        },
    }[format_name]
    descriptor = convert(format_name, source, destination, link=link, **chosen)
    files = ", ".join(f"{count} {how}" for how, count in descriptor["converted_from"]["files"].items())
    rule = ", ".join(f"{k} {v}" for k, v in descriptor["positives"].items())
    click.echo(
        f"{destination}: {descriptor['num_database']} database and {descriptor['num_queries']} query images "
        f"({files}); positives by {rule}"
    )
    click.echo(f"evaluate with: edgevpr eval --dataset {destination} ...")


def _convert_recording(kind: str, source: str, destination: str, recording: dict) -> None:
    from pathlib import Path

    from edgevpr.data.recordings import is_recording, options_of, recording_folder
    from edgevpr.data.recordings.frames import is_bag
    from edgevpr.errors import ConfigError

    if not is_recording(source) or (kind == "bag") != is_bag(source):
        raise ConfigError(f"{source}: not a {kind} file edgevpr reads")
    target = Path(destination)
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{destination}: exists and is not empty; choose a new folder")
    data = config_from(None, recording, RECORDING_OPTIONS).data
    folder = recording_folder(source, options_of(data), out=target, log=lambda m: click.echo(m, err=True))
    summary = json.loads((folder / "recording.json").read_text())
    skipped = summary.get("without_position", 0)
    note = f"; {skipped} frames without a position skipped" if skipped else ""
    click.echo(f"{destination}: {summary['frames_written']} frames{note}")
