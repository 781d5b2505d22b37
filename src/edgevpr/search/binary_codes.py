"""Binary descriptors: one sign bit per rotated dimension, compared by Hamming distance.

``itq``: Iterative Quantization (Gong and Lazebnik 2011): centre, project on the top-B
principal directions (V = X W), then alternate B = sgn(V R) and the orthogonal Procrustes
step R = S' S^T from the SVD of V^T B = S Omega S'^T, which minimises the quantization loss
||B - V R||_F^2 of their Eq. 2. ``random``: a random orthonormal projection after centring,
the baseline of the same paper. Either is fitted on training or calibration descriptors, never
on the database being evaluated; ``fitted_on`` says which.

The Hamming distance h of B-bit codes maps to a similarity 1 - 2h/B in [-1, 1], the cosine of
the two sign vectors, so thresholds and PR curves work as they do for float descriptors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevpr.atomic import atomic_path
from edgevpr.errors import ConfigError

ROTATIONS = ("itq", "random")


@dataclass
class BinaryCodec:
    mean: np.ndarray  # (D,)
    rotation: np.ndarray  # (D, bits), orthonormal columns
    method: str
    fitted_on: str
    count: int  # descriptors it was fitted on

    @property
    def dim(self) -> int:
        return int(self.rotation.shape[0])

    @property
    def bits(self) -> int:
        return int(self.rotation.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.mean.nbytes + self.rotation.nbytes)

    def encode(self, descriptors: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Packed codes (N, bits / 8) uint8, most significant bit first."""
        descriptors = np.asarray(descriptors)
        if descriptors.ndim != 2 or descriptors.shape[1] != self.dim:
            raise ConfigError(f"descriptors have dimension {descriptors.shape[-1]}, the binary codec takes {self.dim}")
        codes = np.empty((len(descriptors), self.bits // 8), dtype=np.uint8)
        for start in range(0, len(descriptors), chunk):
            block = np.asarray(descriptors[start : start + chunk], dtype=np.float32) - self.mean
            codes[start : start + chunk] = np.packbits(block @ self.rotation > 0, axis=1)
        return codes

    def describe(self) -> dict:
        return {"rotation": self.method, "bits": self.bits, "fitted_on": self.fitted_on, "descriptors": self.count}

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    mean=self.mean,
                    rotation=self.rotation,
                    method=np.array(self.method),
                    fitted_on=np.array(self.fitted_on),
                    count=np.int64(self.count),
                )

    @classmethod
    def load(cls, path: str | Path) -> BinaryCodec:
        try:
            with np.load(path, allow_pickle=False) as archive:
                return cls(
                    archive["mean"],
                    archive["rotation"],
                    str(archive["method"]),
                    str(archive["fitted_on"]),
                    int(archive["count"]),
                )
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(f"{path}: not a binary codec file ({error})") from None


def random_orthonormal(rows: int, columns: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((rows, columns)))
    return q * np.sign(np.diag(r))  # a uniformly random orthonormal frame


def fit_codec(
    descriptors: np.ndarray,
    bits: int,
    method: str = "itq",
    iterations: int = 50,
    seed: int = 0,
    fitted_on: str = "",
) -> BinaryCodec:
    """A codec of ``bits`` bits (a multiple of 8, at most the dimension) fitted on ``descriptors``."""
    if method not in ROTATIONS:
        raise ConfigError(f"unknown binary rotation {method!r}; use one of {', '.join(ROTATIONS)}")
    x = np.asarray(descriptors, dtype=np.float64)
    if bits % 8 or not 8 <= bits <= x.shape[1]:
        raise ConfigError(f"binary codes need a multiple of 8 bits up to the dimension {x.shape[1]}, got {bits}")
    if len(x) < 2:
        raise ConfigError("a binary codec needs at least 2 descriptors to fit its rotation on")
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    centred = x - mean
    if method == "random":
        rotation = random_orthonormal(x.shape[1], bits, rng)
    else:
        _, vectors = np.linalg.eigh(centred.T @ centred)
        principal = vectors[:, ::-1][:, :bits]  # top-B principal directions (W)
        projected = centred @ principal  # V
        r = random_orthonormal(bits, bits, rng)
        for _ in range(iterations):
            signs = np.where(projected @ r >= 0, 1.0, -1.0)  # B = sgn(V R)
            s, _, s_prime_t = np.linalg.svd(projected.T @ signs)  # V^T B = S Omega S'^T
            r = s @ s_prime_t  # minimises ||B - V R||_F over orthogonal R
        rotation = principal @ r
    return BinaryCodec(mean.astype(np.float32), rotation.astype(np.float32), method, fitted_on, len(x))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances (len(a), len(b)) between packed codes."""
    xor = np.bitwise_xor(a[:, None, :], b[None, :, :])
    return np.unpackbits(xor, axis=-1).sum(axis=-1)


def similarity(distances: np.ndarray, bits: int) -> np.ndarray:
    """1 - 2h/B: the cosine of the two codes' sign vectors."""
    return 1.0 - 2.0 * np.asarray(distances, dtype=np.float32) / bits
