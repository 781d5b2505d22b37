"""Models built from registered parts: ``build_model(ModelConfig)``."""

import edgevpr.compat  # noqa: F401  (before any torchvision or timm import below)
from edgevpr.models.model import VPRModel, build_model

__all__ = ["VPRModel", "build_model"]
