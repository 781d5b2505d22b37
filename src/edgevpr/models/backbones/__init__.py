"""Backbones: each file registers its builders in ``BACKBONES``."""

from edgevpr.models.backbones import (  # noqa: F401
    dinov2,
    efficientnet,
    ghostcnn,
    mobilenetv2,
    pixels,
    repvgg,
    resnet,
    squeezenet,
    transformers,
    vgg,
)
