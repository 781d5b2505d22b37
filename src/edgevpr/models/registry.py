"""The component tables. A backbone builder takes the model config and returns a module with
``out_channels``; an aggregator builder takes ``(in_channels, config)`` and returns a module
with ``out_dim``."""

from edgevpr.registry import Registry

BACKBONES = Registry("backbone")
AGGREGATORS = Registry("aggregator")
