"""The protocol block that every result carries, and a short name for it."""

from __future__ import annotations

from collections import Counter


def build_protocol(dataset_protocol: dict, resize_rule: str, sizes: Counter, precision: str, runtime: str) -> dict:
    common = sizes.most_common(1)[0][0] if sizes else None
    return dataset_protocol | {
        "resize": resize_rule,
        "image_size": list(common) if common else None,  # (H, W) used for the cost block
        "image_sizes": sorted([list(size) for size in sizes]),
        "precision": precision,
        "runtime": runtime,
    }


def protocol_name(protocol: dict) -> str:
    """For example ``gardens_point:day_right->night_right:frames<=2:short_side=360:fp32:pytorch``."""
    database = protocol["database"].rstrip("/").split("/")[-1]
    queries = protocol["queries"].rstrip("/").split("/")[-1]
    return ":".join(
        [protocol["dataset"], f"{database}->{queries}", protocol["positives"], protocol["resize"],
         protocol["precision"], protocol["runtime"]]
    )
