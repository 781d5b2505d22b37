"""Models built from registered parts: ``build_model(ModelConfig)``."""

from edgevpr.models.model import VPRModel, build_model

__all__ = ["VPRModel", "build_model"]
