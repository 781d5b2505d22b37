"""When is a frame a place the map knows? A threshold on the best match's score, calibrated
on the map itself: for a sample of map images, the best score among the map's entries that
are *not* that place (farther than ``IMPOSTOR_DISTANCE`` metres, or frames) is what an
unvisited place scores at most. Frame numbers only order the frames of one recording, so with
frame positions an impostor must come from the sampled image's own folder: a second recording
of the same route (``map add``) holds the same places under other frame numbers, and must not
count as impostors (it would raise the threshold to the score of a place matched with itself).
``min_score`` is the 99th percentile of those impostor scores, so about 1 unvisited frame in
100 would be called known. ``localize --min-score`` overrides it.
"""

from __future__ import annotations

import numpy as np

from edgevpr.maps.positions import distance

IMPOSTOR_DISTANCE = {"utm": 25.0, "xy": 25.0, "frame": 10.0}
PERCENTILE = 99.0
SAMPLE = 2000
NEIGHBOURS = 64


def calibrate_min_score(
    index, descriptors: np.ndarray, positions: list, kind: str, sources: list[str], seed: int = 0
) -> dict:
    """``{"min_score", "rule", "impostors"}`` for a map of ``descriptors`` at ``positions``,
    each image from the folder ``sources[i]``."""
    far = IMPOSTOR_DISTANCE[kind]
    count = len(descriptors)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(count, size=min(SAMPLE, count), replace=False))
    scores, ids = index.search(np.asarray(descriptors[sample], dtype=np.float32), min(NEIGHBOURS, count))
    impostors = []
    for row, entry in enumerate(sample):
        for score, other in zip(scores[row], ids[row]):
            comparable = kind != "frame" or sources[other] == sources[entry]
            if other >= 0 and comparable and distance(kind, positions[entry], positions[other]) > far:
                impostors.append(float(score))
                break
    rule = (
        f"{PERCENTILE:g}th percentile of each sampled map image's best score against map images more than "
        f"{far:g} {'frames of the same folder' if kind == 'frame' else 'm'} away"
    )
    if not impostors:  # every neighbour is the same place: nothing to calibrate on
        return {
            "min_score": -1.0,
            "rule": rule + " (no such pairs in the map: every frame is called known)",
            "impostors": 0,
        }
    return {"min_score": float(np.percentile(impostors, PERCENTILE)), "rule": rule, "impostors": len(impostors)}
