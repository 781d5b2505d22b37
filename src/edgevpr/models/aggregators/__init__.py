"""Aggregators: each file registers its builder in ``AGGREGATORS``."""

from edgevpr.models.aggregators import cls, crn, gem, mac, netvlad, rmac, rrm, seqpool, spoc  # noqa: F401
