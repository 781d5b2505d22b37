"""The component tables. A backbone builder takes the model config (and its options, when it
registers an options dataclass: ``models.params``) and returns a module with ``out_channels``;
an aggregator builder takes ``in_channels`` (and its options) and returns a module with
``out_dim``.

An aggregator that starts from the data (NetVLAD's cluster centres) defines
``init_from_features(features, seed)`` and a boolean buffer ``initialised``: evaluation,
training and quantization then initialise it from local features of their images before use
(``models.initialise``), and never a second time."""

from edgevpr.registry import Registry

BACKBONES = Registry("backbone")
AGGREGATORS = Registry("aggregator")
