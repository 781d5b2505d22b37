"""``--int8-layout auto`` on a CPU whose kernels do not sum u8s8 exactly (x86 without VNNI):
the layout is chosen by measured fidelity, not by rule.

There, u8s8 keeps full 8-bit weights but ONNX Runtime adds pairs of its products in saturating
16-bit sums, and u8s7 is exact with one bit less of weight precision; which costs less depends
on the model and its images (on indoor images at 120 x 160 the saturating u8s8 kept R@1 better).
Both files are made, each runs here, on the kernels that will run it, and the one whose
descriptors of the calibration images are closer to the fp32 file's (mean cosine) is kept; the
file records both measurements (``int8_layout_measured``). Where u8s8 is exact (VNNI, ARM), it
has the full weight precision at no cost, so ``auto`` takes it without measuring."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgevpr.atomic import atomic_path
from edgevpr.contract import InputContract
from edgevpr.quantize.calibration_images import CalibrationImages
from edgevpr.quantize.onnx_export import get_metadata, set_metadata
from edgevpr.runtime.cpu import cpu_kernels
from edgevpr.runtime.onnx_model import OnnxModel

CANDIDATES = ("u8s8", "u8s7")
MEASURED_IMAGES = 16


def needs_measurement(options) -> bool:
    """An ``auto`` int8 file for the cpu target, on a CPU that does not sum u8s8 exactly."""
    return (
        options.precision == "int8"
        and options.target == "cpu"
        and options.int8_layout == "auto"
        and not cpu_kernels().u8s8_exact
    )


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


def measured_layout(quantize, config, options, out: str, log=None) -> dict:
    """Quantize with each of ``CANDIDATES`` (``quantize`` is ``pipeline.quantize_model``), keep the
    file closest to fp32 on the calibration images at ``out``; its report gains the measurements."""
    say = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="edgevpr-layout-") as scratch:
        folder = Path(scratch)
        reference = folder / "fp32.onnx"
        float_options = dataclasses.replace(
            options, precision="fp32", int8_rounding="nearest", keep_float=0, report_layers=False
        )
        quantize(config, float_options, str(reference))
        fp32 = OnnxModel(reference)
        contract = InputContract.from_dict(fp32.metadata["contract"], str(reference))
        images = CalibrationImages(
            options.calib, min(options.calib_count, MEASURED_IMAGES), contract, config.data.max_pixels
        )
        images.size = fp32.fixed_size
        batch = np.concatenate(list(images()))
        wanted = fp32(batch)
        reports, cosines = {}, {}
        for layout in CANDIDATES:
            say(f"int8 layout auto on {cpu_kernels().family}: measuring {layout}")
            path = folder / f"{layout}.onnx"
            reports[layout] = quantize(config, dataclasses.replace(options, int8_layout=layout), str(path), log)
            cosines[layout] = round(mean_cosine(OnnxModel(path)(batch), wanted), 6)
        chosen = max(CANDIDATES, key=lambda layout: cosines[layout])
        say(
            f"int8 layout auto: {chosen} (mean cosine to fp32 "
            + ", ".join(f"{k} {v}" for k, v in cosines.items())
            + ")"
        )
        proto = onnx.load(str(folder / f"{chosen}.onnx"))
        measured = {"kernels": cpu_kernels().family, "images": len(batch), "mean_cosine": cosines, "chosen": chosen}
        set_metadata(proto, get_metadata(proto) | {"int8_layout_measured": measured})
        with atomic_path(out) as tmp:
            onnx.save(proto, str(tmp))
    return reports[chosen] | {"out": out, "bytes": Path(out).stat().st_size, "int8_layout_measured": measured}
