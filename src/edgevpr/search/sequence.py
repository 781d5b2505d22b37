"""Sequence matching (SeqSLAM, Milford and Wyeth 2012): a frame is matched by the best
straight line through the similarity matrix of the last L frames, not by its own row alone.

For query frame t and database entry j, a trajectory of velocity v (database frames per query
frame) visits (t - k, j - round(v k)) for k = 0..L-1; its score is the mean similarity along
the line. The first frames of a stream have fewer frames behind them and average over those;
a point of a line that falls before the database's first entry counts as that frame's median
similarity to the database (a typical other place), so a line cannot win by running off the
map. The sequence similarity of (t, j) is the best score over the velocities.

``enhance`` R applies SeqSLAM's local contrast enhancement first (``contrast_enhanced``): each
similarity is compared with the R database entries around it, so that a frame that resembles
every place a little (night, blur, a low-resolution camera) cannot outvote a frame that
singles out one place. The database must be in route order (frame-aligned traversals, or a
map built from a sequence)."""

from __future__ import annotations

import numpy as np

DEFAULT_VELOCITIES = (0.8, 0.9, 1.0, 1.1, 1.2)
DEFAULT_ENHANCE = 0  # the contrast window R; 0 = none (docs/log.md holds the measurement)


def contrast_enhanced(similarity: np.ndarray, window: int) -> np.ndarray:
    """SeqSLAM's local contrast enhancement (Milford and Wyeth 2012, Eq. 1) on similarities:
    S'(i, j) = (S(i, j) - mean_w S(i, .)) / std_w S(i, .), the mean and standard deviation
    taken over the ``window`` database entries centred on j (fewer at the ends of the route)."""
    similarity = np.asarray(similarity, dtype=np.float64)
    count = similarity.shape[1]
    half = window // 2
    zero = np.zeros((similarity.shape[0], 1))
    sums = np.concatenate([zero, np.cumsum(similarity, axis=1)], axis=1)
    squares = np.concatenate([zero, np.cumsum(similarity**2, axis=1)], axis=1)
    low = np.clip(np.arange(count) - half, 0, count)
    high = np.clip(np.arange(count) + half + 1, 0, count)
    size = (high - low)[None, :]
    mean = (sums[:, high] - sums[:, low]) / size
    variance = np.maximum((squares[:, high] - squares[:, low]) / size - mean**2, 0.0)
    return ((similarity - mean) / np.sqrt(variance + 1e-12)).astype(np.float32)


def sequence_similarity(
    similarity: np.ndarray,
    length: int,
    velocities: tuple[float, ...] = DEFAULT_VELOCITIES,
    enhance: int = DEFAULT_ENHANCE,
) -> np.ndarray:
    """(Q, N) similarities of query frames in order against the database -> (Q, N) sequence
    scores; ``enhance`` R > 1 enhances the local contrast over R entries first."""
    if length < 1:
        raise ValueError(f"sequence length must be >= 1, got {length}")
    if enhance > 1:
        similarity = contrast_enhanced(similarity, enhance)
    similarity = np.asarray(similarity, dtype=np.float32)
    queries, database = similarity.shape
    typical = np.median(similarity, axis=1)
    frames = np.minimum(np.arange(queries), length - 1)[:, None] + 1.0  # frames behind each row, itself included
    best = np.full((queries, database), -np.inf, dtype=np.float32)
    for velocity in velocities:
        total = np.zeros((queries, database), dtype=np.float32)
        for k in range(min(length, queries)):
            shift = min(int(round(velocity * k)), database)
            # row t takes similarity[t - k, j - shift] for t >= k and j >= shift, else that frame's median
            total[k:, shift:] += similarity[: queries - k, : database - shift]
            total[k:, :shift] += typical[: queries - k, None]
        np.maximum(best, total / frames, out=best)
    return best


TYPICAL_SAMPLE = 256  # database entries a stream's frames are compared with for their median similarity


def typical_similarity(descriptor: np.ndarray, database_vectors, seed: int = 0) -> float:
    """A frame's median similarity to the database, from a fixed sample of its entries."""
    count = len(database_vectors)
    sample = np.sort(np.random.default_rng(seed).choice(count, size=min(TYPICAL_SAMPLE, count), replace=False))
    return float(np.median(np.asarray(database_vectors[sample], dtype=np.float32) @ descriptor))


def sequence_scores_for(
    history: np.ndarray,
    database_vectors,
    candidates: np.ndarray,
    length: int,
    velocities: tuple[float, ...] = DEFAULT_VELOCITIES,
    typical: np.ndarray | None = None,
) -> np.ndarray:
    """The sequence score of each candidate database entry for the newest frame of a stream.

    ``history`` holds the last frames' descriptors, oldest first (newest last), and
    ``typical`` their median similarities to the database (``typical_similarity``; computed
    here when absent); the database's vectors are read only at the entries the lines pass
    through, so a large memory-mapped map costs L x candidates x velocities dot products."""
    frames = history[-length:][::-1]  # k = 0 is the newest frame
    if typical is None:
        typical = np.array([typical_similarity(frame, database_vectors) for frame in history])
    typical = np.asarray(typical, dtype=np.float32)[-length:][::-1]
    candidates = np.asarray(candidates, dtype=np.int64)
    best = np.full(len(candidates), -np.inf, dtype=np.float32)
    for velocity in velocities:
        shifts = np.array([int(round(velocity * k)) for k in range(len(frames))])
        entries = candidates[:, None] - shifts[None, :]  # (C, K)
        valid = entries >= 0
        rows = np.asarray(database_vectors[np.clip(entries, 0, None).ravel()], dtype=np.float32)
        rows = rows.reshape(len(candidates), len(frames), -1)
        scores = np.einsum("ckd,kd->ck", rows, frames.astype(np.float32))
        mean = np.where(valid, scores, typical[None, :]).mean(1)
        np.maximum(best, mean, out=best)
    return best
