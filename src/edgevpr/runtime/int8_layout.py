"""The int8 layouts of a ``cpu`` file, and on which CPUs ONNX Runtime computes each exactly.

ONNX Runtime's uint8 x int8 kernels on x86 CPUs without VNNI (``runtime.cpu``) add pairs of
products into saturating int16: 2 x 255 x |w| must stay below 32768. Three layouts:

- ``u8s8``: uint8 activations, int8 weights in [-127, 127]. The fastest layout and the most
  precise; exact where the machine sums u8 x s8 products exactly (AVX-512 VNNI, AVX-VNNI, ARM).
  On AVX2 and AVX-512 without VNNI a pair can saturate: MobileNetV2 + GeM on Gardens Point
  night scored R@1/R@5 48.5 / 80.5 on an emulated AVX2 CPU against 51.5 / 83.5 with exact sums
  (``benchmarks/int8_layouts.py``).
- ``u8s7``: uint8 activations, int8 weights in [-64, 64] (ONNX Runtime's ``reduce_range``):
  2 x 255 x 64 = 32640, so no pair saturates and every x86 CPU computes the same numbers as a
  VNNI one. Same speed as ``u8s8``; one bit less of weight precision. Depthwise convolutions
  keep [-127, 127]: MLAS's depthwise kernels widen both operands to int16 before multiplying,
  which is exact on every x86 CPU (checked on an emulated AVX2 CPU: a 3x3 depthwise sum of
  255 x 127 came out exact where a 1x1 convolution's clipped to 126/250 of it).
- ``s8s8``: int8 activations, int8 weights in [-127, 127], as QLinearConv (``--precision int8``
  only). ONNX Runtime runs it on an exact int8 x int8 path on every x86 CPU, with full weight
  precision, but that path is slow: 12.7x slower than ``u8s8`` on MobileNetV2 at 360x640 on a
  VNNI CPU (``benchmarks/int8_layouts.py``). In a QDQ graph ONNX Runtime turns int8 activations
  into uint8 before fusing (its QDQS8ToU8 pass), so the ``tensorrt`` target's QDQ file runs as
  ``u8s8`` on an x86 CPU and saturates like it.

``auto`` picks ``u8s8`` where the machine quantizing the model sums exactly, else ``u8s7``. The
file records its layout (``int8_layout`` in its metadata); files made before layouts existed
hold ``u8s8``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevpr.errors import ConfigError
from edgevpr.runtime.cpu import CpuKernels, cpu_kernels


@dataclass(frozen=True)
class Int8Layout:
    name: str
    activations: str  # "uint8" or "int8"
    weight_max: int  # per-channel symmetric weights in [-weight_max, weight_max]
    runs_as_u8s8: bool  # ONNX Runtime on x86 sums it as uint8 x int8 (saturating pairs without VNNI)

    def exact_on(self, kernels: CpuKernels) -> bool:
        """Whether ONNX Runtime sums this layout's products exactly on ``kernels``."""
        return not (self.runs_as_u8s8 and self.weight_max > 64) or kernels.u8s8_exact


LAYOUTS = {
    layout.name: layout
    for layout in (
        Int8Layout("u8s8", "uint8", 127, True),
        Int8Layout("u8s7", "uint8", 64, True),
        Int8Layout("s8s8", "int8", 127, False),
    )
}
TENSORRT = Int8Layout("s8s8-qdq", "int8", 127, True)  # the tensorrt target's symmetric QDQ file
CHOICES = ("auto", *LAYOUTS)
QDQ_CHOICES = ("auto", "u8s8", "u8s7")  # mixed precision (QDQ): int8 activations would run as u8s8
LEGACY = "u8s8"  # files without the metadata key were all full-range uint8 x int8
# MobileNetV2 + GeM int8, Gardens Point day_right -> night_right, +/-2, on an AVX2-only CPU (emulated,
# benchmarks/int8_layouts.py): R@1 points lost by u8s8 against the same file's exact arithmetic
SATURATED_R1_LOSS = 3.0


def resolve_layout(name: str, kernels: CpuKernels | None = None) -> Int8Layout:
    """The layout ``name`` stands for on this machine (``auto``: ``u8s8`` where exact, else ``u8s7``)."""
    if name == "auto":
        return LAYOUTS["u8s8" if (kernels or cpu_kernels()).u8s8_exact else "u8s7"]
    if name not in LAYOUTS:
        raise ConfigError(f"unknown int8 layout {name!r}; use one of {', '.join(CHOICES)}")
    return LAYOUTS[name]


def layout_of(metadata: dict) -> Int8Layout | None:
    """The int8 layout a file's metadata records (``None`` for a file without integer layers)."""
    if metadata.get("precision") not in ("int8", "mixed"):
        return None
    if metadata.get("precision") == "int8" and metadata.get("target") == "tensorrt":
        return TENSORRT
    return LAYOUTS.get(metadata.get("int8_layout", LEGACY), LAYOUTS[LEGACY])


def saturation_warning(path, metadata: dict, kernels: CpuKernels | None = None) -> str | None:
    """One line for a file whose integer sums saturate on this CPU, else ``None``."""
    kernels = kernels or cpu_kernels()
    layout = layout_of(metadata)
    if layout is None or layout.exact_on(kernels):
        return None
    remedy = (
        "quantize it with --target cpu for this CPU"
        if layout is TENSORRT
        else "quantize it again here with --int8-layout auto (or u8s7)"
    )
    return (
        f"warning: {path} holds full-range int8 weights ({layout.name}), whose products ONNX Runtime adds in "
        f"saturating 16-bit pairs on this CPU ({kernels.family}, no VNNI); MobileNetV2 + GeM lost "
        f"{SATURATED_R1_LOSS:g} points of R@1 on Gardens Point this way: {remedy}"
    )
