"""Bits per descriptor dimension in the map: 32 (float), 16 (fp16), 8 (int8: one scale per
dimension, or one global scale, both calibrated on the database descriptors by faiss's scalar
quantizer) or 1 (binary codes, ``search.binary_codes``). The query stays float for 32/16/8
(asymmetric distances); for 1 it is binarised too and compared by Hamming distance.

``storage_spec`` turns an index spec into the one that stores descriptors at that precision:
``Flat`` becomes ``SQfp16``, ``SQ8`` or ``BFlat``; ``IVF1024,Flat`` becomes ``IVF1024,SQ8`` or
``BIVF1024``; ``HNSW32`` becomes ``HNSW32,SQ8`` or ``BHNSW32``. A ``,RerankK`` suffix stays:
the shortlist is re-scored with the float vectors."""

from __future__ import annotations

import re

from edgevpr.errors import ConfigError
from edgevpr.search.index import UNIFORM_SQ8, IndexSpec

BITS = (32, 16, 8, 1)
INT8_SCALES = ("dimension", "global")


def storage_spec(spec: IndexSpec | str, bits: int, int8_scale: str = "dimension") -> IndexSpec:
    spec = IndexSpec.parse(spec) if isinstance(spec, str) else spec
    if bits not in BITS:
        raise ConfigError(f"--descriptor-bits must be one of {', '.join(map(str, BITS))}, got {bits}")
    if int8_scale not in INT8_SCALES:
        raise ConfigError(f"unknown int8 scale {int8_scale!r}; use one of {', '.join(INT8_SCALES)}")
    if spec.binary:
        if bits not in (1, 32):  # 32 is the default: a binary spec alone means 1 bit
            raise ConfigError(f"index {spec} holds binary codes, but --descriptor-bits is {bits}; use 1")
        return spec
    if bits == 32:
        return spec
    factory = spec.factory
    if bits == 1:
        binary = _binary_factory(factory)
        if binary is None:
            raise ConfigError(
                f"index {spec} has no binary form; with --descriptor-bits 1 use BFlat, BIVFn or BHNSWm "
                f"(optionally ,RerankK)"
            )
        return IndexSpec(binary, spec.rerank)
    storage = {16: "SQfp16", 8: "SQ8" if int8_scale == "dimension" else UNIFORM_SQ8}[bits]
    if factory == "Flat" or re.fullmatch(r"IVF\d+,Flat", factory):
        return IndexSpec(factory.replace("Flat", storage), spec.rerank)
    if re.fullmatch(r"HNSW\d+", factory):
        return IndexSpec(f"{factory},{storage}", spec.rerank)
    raise ConfigError(
        f"--descriptor-bits {bits} stores descriptors of Flat, IVFn,Flat or HNSWm indexes; "
        f"{spec} compresses them already (PQ/SQ)"
    )


def _binary_factory(factory: str) -> str | None:
    if factory == "Flat":
        return "BFlat"
    if match := re.fullmatch(r"IVF(\d+),Flat", factory):
        return f"BIVF{match.group(1)}"
    if match := re.fullmatch(r"HNSW(\d+)", factory):
        return f"BHNSW{match.group(1)}"
    return None


def stored_bits(spec: IndexSpec | str) -> int:
    """Bits per dimension an index of ``spec`` stores (1, 8, 16; 32 for float and PQ specs)."""
    spec = IndexSpec.parse(spec) if isinstance(spec, str) else spec
    if spec.binary:
        return 1
    if "SQfp16" in spec.factory:
        return 16
    if "SQ8" in spec.factory:
        return 8
    return 32
