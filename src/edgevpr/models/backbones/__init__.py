"""Backbones: each file registers its builders in ``BACKBONES``."""

from edgevpr.models.backbones import efficientnet, mobilenetv2, repvgg, resnet, squeezenet, transformers, vgg  # noqa: F401
