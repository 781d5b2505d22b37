"""The protocol block that every result carries, and a short name for it."""

from __future__ import annotations

from collections import Counter

from edgevpr.models.describer import deployment_name


def build_protocol(
    dataset_protocol: dict, resize_rule: str, sizes: Counter, precision: str, runtime: str, int8: dict | None = None
) -> dict:
    """``int8``: for a model with integer layers, its ``int8_layout`` and the ``int8_kernels``
    family it ran on (``runtime.cpu``), which decide whether its sums saturate."""
    common = sizes.most_common(1)[0][0] if sizes else None
    return (
        dataset_protocol
        | {
            "resize": resize_rule,
            "image_size": list(common) if common else None,  # (H, W) used for the cost block
            "image_sizes": sorted([list(size) for size in sizes]),
            "precision": precision,
            "runtime": runtime,
        }
        | (int8 or {})
    )


def protocol_name(protocol: dict) -> str:
    """For example ``gardens_point:day_right->night_right:frames<=2:short_side=360:fp32:pytorch``;
    an integer model's name ends in its layout and kernel family, ``...:int8-cpu:onnxruntime:u8s8@x86-avx2``,
    and a re-ranked result's in its re-ranker and K, ``...:rerank=rapid@100``."""
    database = protocol["database"].rstrip("/").split("/")[-1]
    queries = protocol["queries"].rstrip("/").split("/")[-1]
    parts = [
        protocol["dataset"],
        f"{database}->{queries}",
        protocol["positives"],
        protocol["resize"],
        deployment_name(protocol["precision"], protocol["runtime"], protocol),
    ]
    if protocol.get("rerank"):  # a second stage ranks differently: never grouped with the first stage's
        parts.append(f"rerank={protocol['rerank']['name']}@{protocol['rerank']['k']}")
    return ":".join(parts)
