"""Which integer kernels ONNX Runtime runs on this CPU, read from the CPU itself.

ONNX Runtime's MLAS library picks its uint8 x int8 convolution and GEMM kernels by CPUID at
start-up. What matters for a quantized model is whether those kernels sum products exactly:

- ``x86-avx512-vnni`` and ``x86-avx-vnni``: ``vpdpbusd`` adds four u8 x s8 products straight
  into an int32 lane. Exact for any weights.
- ``x86-avx512`` and ``x86-avx2``: ``vpmaddubsw`` adds each pair of u8 x s8 products into a
  *saturating* int16 before widening. A pair overflows when 2 x 255 x |w| > 32767, so
  full-range int8 weights (|w| up to 127) can saturate; weights in [-64, 64] (ONNX Runtime's
  ``reduce_range``) cannot.
- ``arm64-dotprod`` and ``arm64-neon``: ``udot``/``sdot`` or widening multiplies. Exact.

The flags are those the operating system publishes: ``/proc/cpuinfo`` on Linux (its
``flags`` already drop what the kernel does not enable, AVX-512 without ZMM state saving
included), ``sysctl`` on macOS, and the ``py-cpuinfo`` package elsewhere where it is
installed. No machine code is run. Under a user-mode emulator (``qemu-x86_64 -cpu ...``)
``/proc/cpuinfo`` still describes the host: set ``EDGEVPR_CPU_FLAGS`` to the emulated CPU's
flags (space-separated, as /proc/cpuinfo spells them) to describe the CPU the kernels see.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

# the x86 flags that name the integer kernels, as /proc/cpuinfo spells them
X86_FLAGS = ("fma", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "amx_int8", "avx_vnni")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "sve", "sve2")
# macOS sysctl names (machdep.cpu.* and hw.optional.*) -> the /proc/cpuinfo spelling
_SYSCTL_NAMES = {
    "avx2_0": "avx2",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vl": "avx512vl",
    "avx512vnni": "avx512_vnni",
    "fma": "fma",
    "avx1_0": "avx",
    "arm_feat_dotprod": "asimddp",
    "neon": "asimd",
    "arm_feat_i8mm": "i8mm",
}

EXACT_FAMILIES = ("x86-avx512-vnni", "x86-avx-vnni", "arm64-dotprod", "arm64-neon")


@dataclass(frozen=True)
class CpuKernels:
    """The CPU's instruction sets that ONNX Runtime's integer kernels use, and the kernel family."""

    arch: str
    flags: tuple[str, ...]
    family: str
    source: str  # where the flags were read: "/proc/cpuinfo", "sysctl", "py-cpuinfo" or "EDGEVPR_CPU_FLAGS"

    @property
    def u8s8_exact(self) -> bool:
        """Whether uint8 x int8 products are summed exactly whatever the weights."""
        return self.family in EXACT_FAMILIES

    def to_dict(self) -> dict:
        return {
            "arch": self.arch,
            "flags": list(self.flags),
            "int8_kernels": self.family,
            "u8s8_exact": self.u8s8_exact,
            "source": self.source,
        }


def _proc_cpuinfo_words() -> set[str] | None:
    words: set[str] = set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    words.update(value.split())
    except OSError:
        return None
    return words


def _sysctl_words() -> set[str] | None:
    import subprocess

    try:
        listing = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = set()
    for line in listing.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("machdep.cpu.") and key.endswith("features"):
            words.update(w.lower().replace(".", "_") for w in value.split())
        elif key.startswith("hw.optional.") and value.strip() == "1":
            words.add(key.rsplit(".", 1)[1].lower())
    return {_SYSCTL_NAMES.get(word, word) for word in words} or None


def _py_cpuinfo_words() -> set[str] | None:
    try:
        import cpuinfo  # py-cpuinfo, optional
    except ImportError:
        return None
    return set(cpuinfo.get_cpu_info().get("flags", [])) or None


def published_flags() -> tuple[set[str], str]:
    """The CPU's flags as the operating system publishes them, and where they were read."""
    import os

    if os.environ.get("EDGEVPR_CPU_FLAGS"):
        return set(os.environ["EDGEVPR_CPU_FLAGS"].split()), "EDGEVPR_CPU_FLAGS"
    for source, read in (
        ("/proc/cpuinfo", _proc_cpuinfo_words),
        ("sysctl", _sysctl_words),
        ("py-cpuinfo", _py_cpuinfo_words),
    ):
        words = read()
        if words:
            return words, source
    return set(), "none (no flags published: generic kernels assumed)"


def _family(arch: str, flags: set[str]) -> str:
    if arch in ("x86_64", "amd64"):
        if "avx512_vnni" in flags and "avx512bw" in flags:
            return "x86-avx512-vnni"
        if "avx_vnni" in flags and "avx2" in flags:
            return "x86-avx-vnni"
        if "avx512bw" in flags:
            return "x86-avx512"
        if "avx2" in flags:
            return "x86-avx2"
        return "x86-sse"
    if arch in ("aarch64", "arm64"):
        return "arm64-dotprod" if "asimddp" in flags else "arm64-neon"
    return f"{arch or 'unknown'}-generic"


@functools.lru_cache(maxsize=1)
def cpu_kernels() -> CpuKernels:
    arch = platform.machine().lower()
    words, source = published_flags()
    named = X86_FLAGS if arch in ("x86_64", "amd64") else ARM_FLAGS
    flags = {flag for flag in named if flag in words}
    return CpuKernels(arch, tuple(sorted(flags)), _family(arch, flags), source)
