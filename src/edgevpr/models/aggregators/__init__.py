"""Aggregators: each file registers its builder in ``AGGREGATORS``."""

from edgevpr.models.aggregators import gem, mac, netvlad, rmac, spoc  # noqa: F401
