"""Maps: a model, its input contract, descriptors, an index and positions, built once from a
folder of images and localized against, one frame or a stream at a time."""

from edgevpr.maps.map import Localizer, Map, ModelSource

__all__ = ["Localizer", "Map", "ModelSource"]
