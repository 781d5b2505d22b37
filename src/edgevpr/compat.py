"""Import torchvision on machines where its compiled ops do not match torch.

PyPI's torchvision wheel is built against CUDA torch. With the CPU torch build its C++
extension fails to load, and ``import torchvision`` dies while registering a fake kernel for
``torchvision::nms`` ("operator torchvision::nms does not exist"). Declaring the schemas of
the two ops it touches at import time lets the pure-Python parts (models, transforms) work.
Where the real ops load, this module changes nothing.
"""

from __future__ import annotations

import sys

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # kept alive: a dropped Library object unregisters its definitions


def _declare_missing_ops() -> None:
    global _library
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _library.define(schema)


def import_torchvision():
    """Return the ``torchvision`` module, declaring its op schemas first if they are missing."""
    if "torchvision" in sys.modules and _library is None:
        return sys.modules["torchvision"]
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        _declare_missing_ops()
        import torchvision
    return torchvision


torchvision = import_torchvision()
