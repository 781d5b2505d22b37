"""``edgevpr convert FORMAT SRC DST``: another dataset layout to one ``eval --dataset DST`` reads."""

from __future__ import annotations

import click

from edgevpr.cli.options import user_errors

FORMATS = ("vprbench", "nordland", "pitts", "msls", "csv")


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
@user_errors
def convert_command(format_name, source, destination, link, **options):
    """Convert a VPR-Bench, Nordland, Pittsburgh, MSLS or CSV-positioned dataset."""
    from edgevpr.data.convert import convert

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
