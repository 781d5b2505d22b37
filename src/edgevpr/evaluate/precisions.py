"""``edgevpr compare-precisions``: one model under one protocol at every precision, side by
side: recall, bytes, extraction time and descriptor fidelity (the cosine of each database and
query descriptor to fp32 PyTorch's: mean, 5th percentile and minimum; recall differences on a
few hundred queries cannot show a weak deployment reliably, the cosine on every image can).
Each deployed row's R@1 is compared with fp32's query by query (``r1_vs_fp32``: queries gained
and lost, McNemar p; ``evaluate.significance``)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np

from edgevpr.config import OutputConfig, QuantizeConfig, RunConfig
from edgevpr.evaluate.repeats import summarise_runs
from edgevpr.evaluate.runner import evaluate
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.quantize.adaround import INT8_ROUNDINGS
from edgevpr.quantize.pipeline import quantize_model

# (precision, target, calibration[, layers kept in float[, int4 bias correction[, int4 rounding]]])
DEFAULT_VARIANTS = [
    ("fp32", None, None),
    ("fp16", None, None),
    ("int8", "cpu", "mse"),
    ("int8", "cpu", "percentile"),
    ("int8", "cpu", "minmax"),
    ("int8", "cpu", "entropy"),
    ("int8", "tensorrt", "percentile"),
    ("int4", None, None, 0, False, "nearest"),
    ("int4", None, None, 0, True, "nearest"),
    ("int4", None, None, 0, False, "gptq"),
    ("int4", None, None, 0, True, "gptq"),
]


def _evaluate_saving(config: RunConfig, folder: Path, name: str) -> tuple[dict, np.ndarray]:
    config = copy.deepcopy(config)
    config.output = OutputConfig(save_descriptors=str(folder / name))
    result = evaluate(config)
    descriptors = np.concatenate([np.load(folder / name / "database.npy"), np.load(folder / name / "queries.npy")])
    return result, descriptors


def compare_precisions(
    config: RunConfig, calib: str, calib_count: int = 50, variants=DEFAULT_VARIANTS, log=print, repeat: int = 1
) -> list[dict]:
    """One row per variant. With ``repeat`` > 1, each variant that calibrates is quantized
    ``repeat`` times on calibration images drawn with seeds 0..repeat-1 (``quantize.calib_seed``);
    its row is the first draw's, with ``repeats`` holding the mean and spread of every run
    (``evaluate.repeats``)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevpr-compare-") as scratch:
        folder = Path(scratch)
        log("fp32 pytorch ...")
        reference, reference_desc = _evaluate_saving(config, folder, "torch")
        rows.append(_row(reference, "fp32", None, None, "pytorch", _fidelity(reference_desc, reference_desc)))
        for precision, target, calibration, *rest in variants:
            keep_float, bias_correction, rounding = (list(rest) + [0, None, QuantizeConfig.int4_rounding][len(rest) :])[
                :3
            ]
            # None: auto, on for int4 and int8 (QuantizeConfig.bias_correction)
            corrected = precision in ("int4", "int8") and (True if bias_correction is None else bias_correction)
            # the variant's rounding applies to int4 levels, or to int8 levels (default: the run's int8_rounding)
            if precision == "int8":
                int8_rounding = rounding if rounding in INT8_ROUNDINGS else config.quantize.int8_rounding
                rounding = int8_rounding if int8_rounding != "nearest" else None
            else:
                int8_rounding, rounding = "nearest", rounding if precision == "int4" else None
            name = "_".join(
                p
                for p in (
                    precision,
                    target,
                    calibration,
                    f"keep{keep_float}" if keep_float else "",
                    "biascorr" if corrected else "",
                    rounding or "",
                )
                if p
            )
            options = QuantizeConfig(
                precision=precision,
                target=target or "cpu",
                calib=calib,
                calib_count=calib_count,
                calibration=calibration or QuantizeConfig.calibration,
                keep_float=keep_float,
                bias_correction=corrected if precision in ("int4", "int8") else bias_correction,
                int4_rounding=rounding if precision == "int4" and rounding else QuantizeConfig.int4_rounding,
                int8_layout=config.quantize.int8_layout,  # the run's layout (auto: exact on this CPU)
                equalize=config.quantize.equalize,
                int8_rounding=int8_rounding,
            )
            calibrates = precision == "int8" or corrected or (precision == "int4" and rounding in ("gptq", "auto"))
            seeds = list(range(repeat)) if calibrates and repeat > 1 else [None]
            runs = []
            for seed in seeds:
                log(f"{name} onnxruntime{'' if seed is None else f' (calibration seed {seed})'} ...")
                options.calib_seed = seed
                result, desc = _quantized_result(config, options, folder, name)
                runs.append((result, desc))
            result, desc = runs[0]
            row = _row(result, precision, target, calibration, "onnxruntime", _fidelity(desc, reference_desc))
            rows.append(
                row
                | {
                    "keep_float": keep_float,
                    "bias_correction": corrected,
                    "int4_rounding": rounding if precision == "int4" else None,
                    "int8_rounding": int8_rounding if precision == "int8" else None,
                    "r1_vs_fp32": paired_recall_difference(
                        reference["per_query"]["first_positive_rank"], result["per_query"]["first_positive_rank"]
                    ),
                }
                | ({"repeats": summarise_runs([r for r, _ in runs], seeds)} if len(runs) > 1 else {})
            )
    return rows


def _fidelity(descriptors: np.ndarray, reference: np.ndarray) -> dict:
    """Each image's cosine between its descriptor and fp32's: mean, 5th percentile, minimum."""
    norms = np.linalg.norm(descriptors, axis=1) * np.linalg.norm(reference, axis=1)
    cosines = np.sum(descriptors * reference, axis=1) / np.maximum(norms, 1e-12)
    return {
        "mean": round(float(np.mean(cosines)), 6),
        "p5": round(float(np.percentile(cosines, 5)), 6),
        "min": round(float(np.min(cosines)), 6),
    }


def _quantized_result(config: RunConfig, options: QuantizeConfig, folder: Path, name: str):
    path = folder / f"{name}.onnx"
    quantize_model(copy.deepcopy(config), options, str(path))
    deployed = copy.deepcopy(config)
    deployed.model.onnx = str(path)
    deployed.data.size = deployed.data.resize = None
    return _evaluate_saving(deployed, folder, name)


def _row(result: dict, precision, target, calibration, runtime, fidelity: dict) -> dict:
    return {
        "precision": precision,
        "target": target,
        "calibration": calibration,
        "runtime": runtime,
        "recall": result["recall"],
        "model_bytes": result["cost"]["model_bytes"],
        "extraction_ms": result["cost"]["extraction_ms"],
        "threads": result["cost"]["threads"],
        "mean_cosine_to_fp32": fidelity["mean"],
        "cosine_p5_to_fp32": fidelity["p5"],
        "cosine_min_to_fp32": fidelity["min"],
        "protocol_name": result["protocol_name"],
        "first_positive_rank": result["per_query"]["first_positive_rank"],  # per query, for paired comparisons
    }


def format_rows(rows: list[dict]) -> str:
    header = (
        f"{'precision':<9} {'target':<9} {'calibration':<11} {'runtime':<12} {'R@1':>5} {'R@5':>5} {'R@10':>5} "
        f"{'model MB':>9} {'extract ms':>10} {'cos fp32 mean/p5/min':>22} {'R@1 vs fp32: +q/-q, p':>21}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        calibration = (
            (r["calibration"] or "-")
            + (f"+{r['keep_float']}fp" if r.get("keep_float") else "")
            + ("+biascorr" if r.get("bias_correction") else "")
            + (f"+{r['int4_rounding']}" if r.get("int4_rounding") else "")
            + (f"+{r['int8_rounding']}" if r.get("int8_rounding") not in (None, "nearest") else "")
        )
        lines.append(
            f"{r['precision']:<9} {r['target'] or '-':<9} {calibration:<11} {r['runtime']:<12} "
            f"{_recall_cell(r, '1')} {_recall_cell(r, '5')} {_recall_cell(r, '10')} "
            f"{r['model_bytes'] / 1e6:9.2f} {r['extraction_ms']:10.1f} {_cosine_cell(r):>22} "
            f"{_paired_cell(r.get('r1_vs_fp32')):>21}"
        )
    return "\n".join(lines)


def _cosine_cell(row: dict) -> str:
    if "cosine_p5_to_fp32" not in row:  # a row measured before the distribution was kept
        return f"{row['mean_cosine_to_fp32']:.4f}"
    return f"{row['mean_cosine_to_fp32']:.4f}/{row['cosine_p5_to_fp32']:.4f}/{row['cosine_min_to_fp32']:.4f}"


def _paired_cell(comparison: dict | None) -> str:
    if comparison is None:  # the reference row, or a row measured before the comparison existed
        return "-"
    return f"+{comparison['gained']}/-{comparison['lost']}, p {comparison['mcnemar_p']:.2f}"


def _recall_cell(row: dict, n: str) -> str:
    """Recall at ``n``; over repeated calibrations, their mean (the spread is printed below the table)."""
    repeats = row.get("repeats")
    return f"{(repeats['recall'][n]['mean'] if repeats else row['recall'][n]):5.1f}"


def format_spreads(rows: list[dict]) -> str:
    """The spread over calibration draws of each repeated row, one line each."""
    lines = []
    for r in rows:
        if r.get("repeats"):
            block = r["repeats"]
            cells = ", ".join(
                f"R@{n} {block['recall'][n]['mean']:.1f} +/- {block['recall'][n]['std']:.1f}" for n in ("1", "5", "10")
            )
            lines.append(
                f"{r['precision']} {r['target'] or '-'} {r['calibration'] or '-'}: {cells} "
                f"over {block['runs']} calibration draws"
            )
    return "\n".join(lines)
