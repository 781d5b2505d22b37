"""The ``edgevpr`` command."""

from __future__ import annotations

import click

from edgevpr.cli_options import DATA_OPTIONS, EVAL_OPTIONS, MODEL_OPTIONS, add_options, config_from, user_errors


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
    from edgevpr.evaluate.runner import evaluate
    from edgevpr.evaluate.table import format_table

    config = config_from(config_file, kwargs, MODEL_OPTIONS, DATA_OPTIONS, EVAL_OPTIONS)
    result = evaluate(config)
    click.echo(f"protocol: {result['protocol_name']}")
    click.echo(format_table([result]))
    if config.eval.out:
        click.echo(f"results: {config.eval.out}")


@main.command("demo")
@click.option("--root", default="edgevpr-demo", show_default=True, type=click.Path(), help="Synthetic dataset folder.")
@click.option("--out", default="runs/demo/results.json", show_default=True, type=click.Path(), help="Results JSON.")
@click.option("--threads", type=int, default=None, help="Torch threads.")
@user_errors
def demo_command(root, out, threads):
    """Generate the synthetic demo set if absent; evaluate an untrained and a pretrained model."""
    from edgevpr.demo import run_demo

    run_demo(root, out, threads)


@main.command("list")
def list_command():
    """The registered backbones and aggregators."""
    import edgevpr.models  # noqa: F401
    from edgevpr.models.registry import AGGREGATORS, BACKBONES

    click.echo("backbones:   " + ", ".join(BACKBONES.names()))
    click.echo("aggregators: " + ", ".join(AGGREGATORS.names()))


if __name__ == "__main__":
    main()
