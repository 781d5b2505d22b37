"""edgevpr: efficient visual place recognition with recall, memory and latency side by side."""

from edgevpr import compat as _compat  # noqa: F401  (must precede any torchvision or timm import)

__version__ = "0.1.0"
