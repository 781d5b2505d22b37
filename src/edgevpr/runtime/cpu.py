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

The x86 flags come from the CPUID instruction and XGETBV (as MLAS reads them), so they are
right under an emulator too; elsewhere, or where executable memory is refused, from
``/proc/cpuinfo``.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import platform
from dataclasses import dataclass

# x86-64 System V: cpuid(leaf=edi, subleaf=esi, out=rdx) stores eax, ebx, ecx, edx at out[0..3]
_CPUID = bytes.fromhex("5389f889f14989d00fa241890041895804418948084189500c5bc3")
# xgetbv(ecx=edi) returns edx:eax in rax
_XGETBV = bytes.fromhex("89f90f01d048c1e2204809d0c3")

# (leaf, subleaf, register index eax=0 ebx=1 ecx=2 edx=3, bit) of the flags we name
_X86_BITS = {
    "fma": (1, 0, 2, 12),
    "avx": (1, 0, 2, 28),
    "osxsave": (1, 0, 2, 27),
    "avx2": (7, 0, 1, 5),
    "avx512f": (7, 0, 1, 16),
    "avx512bw": (7, 0, 1, 30),
    "avx512vl": (7, 0, 1, 31),
    "avx512_vnni": (7, 0, 2, 11),
    "amx_int8": (7, 0, 3, 25),
    "avx_vnni": (7, 1, 0, 4),
}
# the names /proc/cpuinfo gives the same flags
_PROC_NAMES = {
    "fma": "fma",
    "avx": "avx",
    "osxsave": "osxsave",
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vl": "avx512vl",
    "avx512_vnni": "avx512_vnni",
    "amx_int8": "amx_int8",
    "avx_vnni": "avx_vnni",
}

EXACT_FAMILIES = ("x86-avx512-vnni", "x86-avx-vnni", "arm64-dotprod", "arm64-neon")


@dataclass(frozen=True)
class CpuKernels:
    """The CPU's instruction sets that ONNX Runtime's integer kernels use, and the kernel family."""

    arch: str
    flags: tuple[str, ...]
    family: str
    source: str  # "cpuid" or "/proc/cpuinfo"

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


def _executable(code: bytes, restype, *argtypes):
    buffer = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buffer.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    function = ctypes.CFUNCTYPE(restype, *argtypes)(address)
    function._buffer = buffer  # keep the page mapped while the function lives
    return function


def _x86_flags_from_cpuid() -> set[str]:
    cpuid = _executable(_CPUID, None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4))
    xgetbv = _executable(_XGETBV, ctypes.c_uint64, ctypes.c_uint32)

    def registers(leaf: int, subleaf: int) -> tuple[int, ...]:
        out = (ctypes.c_uint32 * 4)()
        cpuid(leaf, subleaf, ctypes.byref(out))
        return tuple(out)

    top = registers(0, 0)[0]
    leaves = {(leaf, sub): registers(leaf, sub) for leaf, sub in {(1, 0), (7, 0), (7, 1)} if leaf <= top}
    flags = {
        name
        for name, (leaf, sub, reg, bit) in _X86_BITS.items()
        if (leaf, sub) in leaves and leaves[(leaf, sub)][reg] >> bit & 1
    }
    xcr0 = xgetbv(0) if "osxsave" in flags else 0
    if xcr0 & 0x6 != 0x6:  # the OS does not save YMM state: no AVX of any kind
        flags -= {"avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
    if xcr0 & 0xE0 != 0xE0:  # nor ZMM state: no AVX-512
        flags -= {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
    return flags


def _proc_cpuinfo_words() -> set[str]:
    words: set[str] = set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    words.update(value.split())
    except OSError:
        pass
    return words


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
    if arch in ("x86_64", "amd64"):
        try:
            flags, source = _x86_flags_from_cpuid(), "cpuid"
        except (OSError, ValueError, AttributeError):  # no executable memory (hardened kernels)
            words = _proc_cpuinfo_words()
            flags, source = {name for name, word in _PROC_NAMES.items() if word in words}, "/proc/cpuinfo"
        flags.discard("osxsave")
    else:
        flags, source = _proc_cpuinfo_words() & {"asimd", "asimddp", "i8mm", "sve", "sve2"}, "/proc/cpuinfo"
    return CpuKernels(arch, tuple(sorted(flags)), _family(arch, flags), source)
