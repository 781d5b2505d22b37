"""Names in the VG-benchmark folder format (Berton et al. 2022): ``@east@north@zone@@@@@id@.ext``,
so that a converted set is evaluated, trained on and mapped by its coordinates."""

from __future__ import annotations

import re
from pathlib import Path

UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def utm_name(east: float, north: float, identifier: str, suffix: str, zone: str = "") -> str:
    """A file name carrying the UTM position; ``identifier`` (the original relative name, made
    safe) keeps names unique and traceable."""
    safe = UNSAFE.sub("_", str(Path(identifier).with_suffix(""))).strip("_")
    return f"@{east:.2f}@{north:.2f}@{zone}@@@@{safe}@{suffix.lower() or '.jpg'}"
