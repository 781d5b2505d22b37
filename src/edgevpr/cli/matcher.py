"""``edgevpr train-matcher`` and ``edgevpr export-matcher``."""

from __future__ import annotations

import click

from edgevpr.cli.options import (
    DATA_OPTIONS,
    MODEL_OPTIONS,
    TRAIN_OPTIONS,
    add_options,
    config_from,
    user_errors,
)

TRAINING_DATA = (
    "--train-dataset",
    "--train-database",
    "--train-queries",
    "--train-frames",
    "--train-tolerance-frames",
    "--negative-frames",
    "--positive-m",
    "--negative-m",
    "--seed",
    "--max-minutes",
    "--epochs",
    "--run-dir",
)


def sizes_option(text: str, option: str) -> tuple[int, ...]:
    from edgevpr.errors import ConfigError

    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a comma-separated list of integers") from None


@click.command("train-matcher")
@click.option("--config", "config_file", type=click.Path(), help="YAML config of the first-stage model.")
@add_options([o for o in MODEL_OPTIONS if o[0] != "--onnx"])
@add_options([o for o in DATA_OPTIONS if o[0] in ("--resize", "--size", "--resize-factor", "--max-pixels")])
@add_options([o for o in TRAIN_OPTIONS if o[0] in TRAINING_DATA])
@click.option("--patch-size", default="3", show_default=True, help="Patch sizes in feature cells.")
@click.option("--patch-stride", default="1", show_default=True, help="One stride per patch size.")
@click.option("--matcher-dim", default=64, show_default=True, type=click.IntRange(min=8), help="Attention width d.")
@click.option("--matcher-layers", default=4, show_default=True, type=click.IntRange(min=1), help="Self/cross layers L.")
@click.option("--matcher-heads", default=2, show_default=True, type=click.IntRange(min=1), help="Attention heads.")
@click.option("--sinkhorn-iterations", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--pairs", "batch_pairs", default=8, show_default=True, type=click.IntRange(min=1), help="Pairs a step.")
@click.option("--matcher-lr", default=1e-3, show_default=True, type=float, help="Adam learning rate.")
@click.option(
    "--ranking-weight",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Weight of the image-level ranking hinge (0: assignment NLL only).",
)
@click.option(
    "--prior/--no-prior",
    default=True,
    show_default=True,
    help="Start from Sinkhorn matching of the raw patch similarity (the learned scores are added to it).",
)
@click.option(
    "--also-train",
    "also_train",
    multiple=True,
    type=click.Path(),
    help="A further training set: a YAML file of train (and data) settings, e.g. another dataset; repeatable.",
)
@user_errors
def train_matcher_command(
    config_file,
    also_train,
    patch_size,
    patch_stride,
    matcher_dim,
    matcher_layers,
    matcher_heads,
    sinkhorn_iterations,
    batch_pairs,
    matcher_lr,
    ranking_weight,
    prior,
    **kwargs,
):
    """Train the attention matcher of the second stage on the first stage's triplet set (and on
    each --also-train set)."""
    from edgevpr.extraction.patches import PatchSpec
    from edgevpr.train.matcher_training import also_training_set, train_matcher

    config = config_from(config_file, kwargs, MODEL_OPTIONS, DATA_OPTIONS, TRAIN_OPTIONS)
    also = tuple(also_training_set(config, path) for path in also_train)
    run_dir = config.train.run_dir or "runs/matcher"
    summary = train_matcher(
        config,
        PatchSpec(sizes_option(patch_size, "--patch-size"), sizes_option(patch_stride, "--patch-stride")),
        run_dir,
        dim=matcher_dim,
        heads=matcher_heads,
        layers=matcher_layers,
        iterations=sinkhorn_iterations,
        batch_pairs=batch_pairs,
        lr=matcher_lr,
        ranking_weight=ranking_weight,
        prior=prior,
        epochs=config.train.epochs,
        max_minutes=config.train.max_minutes,
        log=lambda m: click.echo(m, err=True),
        also=also,
    )
    click.echo(
        f"matcher: {summary['matcher']} ({summary['params']:,} parameters); validation accuracy "
        f"{summary['best_val_accuracy']:.3f}, ransac on the same pairs {summary['ransac_val_accuracy']:.3f}"
    )


@click.command("export-matcher")
@click.argument("matcher_file", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="ONNX file to write.")
@click.option("--int8", is_flag=True, help="Quantize its weights to int8 (ONNX Runtime dynamic quantization).")
@user_errors
def export_matcher_command(matcher_file, out, int8):
    """Export a trained matcher to ONNX with dynamic patch counts."""
    from edgevpr.rerank.matcher_onnx import export_matcher

    report = export_matcher(matcher_file, out, int8=int8)
    click.echo(f"{out}: {report['bytes']:,} bytes, largest difference to PyTorch {report['max_difference']:.2e}")
