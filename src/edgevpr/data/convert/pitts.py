"""Pittsburgh 30k/250k (Torii et al. 2013, as packaged for NetVLAD, Arandjelovic et al. 2016):
a ``.mat`` file holding ``dbStruct`` (whichSet, dbImageFns, utmDb, qImageFns, utmQ, numImages,
numQueries, posDistThr, ...) and the images, database names relative to ``SRC`` and query
names relative to ``SRC/queries_real``. The result is the folder format with the UTM position
in every name and ``threshold_m`` = posDistThr (25 m). MATLAB v5 files are read with
``scipy.io.loadmat``, which builds arrays only (no pickles); v7.3 (HDF5) files are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import loadmat

from edgevpr.data.convert.folder_names import utm_name
from edgevpr.data.convert.writer import DatasetWriter
from edgevpr.errors import DatasetError

FIELDS = ("whichSet", "dbImageFns", "utmDb", "qImageFns", "utmQ", "numImages", "numQueries", "posDistThr")


def find_mat(source: Path, mat: str | None) -> Path:
    if mat:
        path = Path(mat) if Path(mat).is_absolute() or Path(mat).exists() else source / mat
        if not path.is_file():
            raise DatasetError(f"{path}: .mat file not found")
        return path
    found = sorted(source.glob("*.mat")) + sorted(source.glob("datasets/*.mat"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DatasetError(f"{source}: give --mat FILE: expected one .mat beside the images, found {listed}")
    return found[0]


def _names(value) -> list[str]:
    return [str(np.asarray(item).ravel()[0]) if np.asarray(item).size else "" for item in np.asarray(value).ravel()]


def read_db_struct(path: Path) -> dict:
    """The dbStruct fields by position, as NetVLAD's loaders read them."""
    try:
        mat = loadmat(str(path))
    except NotImplementedError:
        raise DatasetError(f"{path}: MATLAB v7.3 (HDF5) files are not read; save it with -v7") from None
    except (ValueError, OSError, TypeError) as error:
        raise DatasetError(f"{path}: not a MATLAB .mat file ({error})") from None
    if "dbStruct" not in mat:
        raise DatasetError(f"{path}: holds no dbStruct (found {', '.join(k for k in mat if not k.startswith('__'))})")
    struct = mat["dbStruct"].item()
    if len(struct) < len(FIELDS):
        raise DatasetError(f"{path}: dbStruct has {len(struct)} fields, expected at least {len(FIELDS)}")
    fields = dict(zip(FIELDS, struct))
    db_utm, q_utm = np.asarray(fields["utmDb"], dtype=np.float64), np.asarray(fields["utmQ"], dtype=np.float64)
    db_names, q_names = _names(fields["dbImageFns"]), _names(fields["qImageFns"])
    if db_utm.shape != (2, len(db_names)) or q_utm.shape != (2, len(q_names)):
        raise DatasetError(
            f"{path}: utmDb/utmQ must be 2 x N for {len(db_names)} database and {len(q_names)} query names, "
            f"got {db_utm.shape} and {q_utm.shape}"
        )
    return {
        "which_set": str(np.asarray(fields["whichSet"]).ravel()[0]),
        "database": list(zip(db_names, db_utm.T)),
        "queries": list(zip(q_names, q_utm.T)),
        "threshold_m": float(np.asarray(fields["posDistThr"]).ravel()[0]),
    }


def convert_pitts(source: Path, destination: Path, mat: str | None = None, link: str = "auto") -> dict:
    path = find_mat(source, mat)
    struct = read_db_struct(path)
    folders = {"database": source, "queries": source / "queries_real"}
    with DatasetWriter(destination, "pitts", source, link) as out:
        for split in ("database", "queries"):
            out.add_all(
                split,
                [(folders[split] / name, utm_name(e, n, name, Path(name).suffix)) for name, (e, n) in struct[split]],
            )
        options = {"mat": path.name, "which_set": struct["which_set"]}
        return out.finish(rule={"threshold_m": struct["threshold_m"]}, options=options)
