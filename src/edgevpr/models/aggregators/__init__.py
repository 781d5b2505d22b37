"""Aggregators: each file registers its builder in ``AGGREGATORS``."""

from edgevpr.models.aggregators import (  # noqa: F401
    boq,
    cls,
    crn,
    gem,
    mac,
    mixvpr,
    netvlad,
    patchnorm,
    rmac,
    rrm,
    salad,
    seqpool,
    spoc,
)
