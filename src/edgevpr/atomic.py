"""Write files so that a crash never leaves a half-written file in place of a good one, and
multi-file artefacts (an index with its vectors, a map) change as a unit.

- ``atomic_path``: one file, written under a temporary name and renamed into place. The
  temporary name carries the writer's pid, so the next write of the same file removes what a
  killed writer left (``.NAME.PID.XXXX.tmp``) and nothing a live one is writing.
- ``part_path`` and ``commit``: each part of a new version is written under a fresh name
  (``NAME.vTOKEN.SUFFIX``); the version becomes current when its manifest, which names those
  parts, is renamed into place, one atomic step. A kill before that leaves the previous
  version whole; after it, the new one. ``commit`` then removes the parts no manifest names.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a writer whose temporaries must be left alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: Path, suffix: str = ".tmp") -> list[Path]:
    """Remove the temporaries of ``target`` (``.NAME.PID.*SUFFIX``, files or folders) whose
    writer has died; returns them."""
    removed = []
    for tmp in target.parent.glob(f".{target.name}.*{suffix}"):
        pid = tmp.name[len(target.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _fsync_directory(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


FULL_BELOW_BYTES = 4 << 20  # a file system with less free space than this counts as full


def storage_error(error: BaseException, target: Path) -> OSError | None:
    """A library's failure to write ``target`` as the ``OSError`` it is, naming ``target``.

    faiss and ``torch.save`` report a full disk as a ``RuntimeError`` ("write error ... No
    space left on device", "unexpected pos N vs M"); the CLI turns an ``OSError`` into one line."""
    if not isinstance(error, RuntimeError):  # an OSError already names its file
        return None
    try:
        full = shutil.disk_usage(target.parent).free < FULL_BELOW_BYTES
    except OSError:
        full = False
    if "No space left" in str(error) or full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    return None


@contextmanager
def writing(parts: list[Path], target: Path) -> Iterator[None]:
    """Remove ``parts`` (of a new version of ``target``) if the block fails, and raise a
    library's write error for a full disk as ``OSError`` naming ``target`` (``storage_error``)."""
    try:
        yield
    except BaseException as error:
        for part in parts:
            part.unlink(missing_ok=True)
        converted = storage_error(error, target)
        if converted is not None:
            raise converted from None
        raise


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block
    succeeds. ``durable``: flush the file and the folder to disk before and after the rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with writing([], target):  # the temporary itself is removed below
            yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        if durable:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        if durable:
            _fsync_directory(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, payload, durable: bool = False) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_npy(path: str | os.PathLike, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def part_path(manifest: str | os.PathLike, suffix: str) -> Path:
    """A fresh name beside ``manifest`` for one part of a new version: ``NAME.vTOKEN SUFFIX``."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.name}.v{secrets.token_hex(6)}{suffix}")


def commit(manifest: str | os.PathLike, payload: dict, parts: Iterable[Path]) -> None:
    """Make a version current: flush its ``parts`` (files written by ``part_path``), rename the
    manifest ``payload`` into place, then remove the parts of other versions."""
    manifest = Path(manifest)
    keep = set()
    for part in parts:
        with open(part, "rb") as handle:
            os.fsync(handle.fileno())
        keep.add(part.name)
    write_json(manifest, payload, durable=True)
    remove_old_parts(manifest, keep)


def remove_old_parts(manifest: Path, keep: set[str]) -> list[Path]:
    """Remove ``NAME.v*`` parts beside ``manifest`` that are not in ``keep``."""
    removed = []
    for part in manifest.parent.glob(f"{manifest.name}.v*"):
        if part.name not in keep and part.is_file():
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def read_json(path: str | os.PathLike, what: str = "JSON file", keys: Iterable[str] = ()) -> dict:
    """A JSON object from a side file, or one line naming the file and what is wrong with it
    (missing, not JSON, not an object, lacking ``keys``)."""
    from edgevpr.errors import ConfigError

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a valid {what} ({error.__class__.__name__})") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a {what}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a valid {what} (a JSON {type(data).__name__}, expected an object)")
    missing = [key for key in keys if key not in data]
    if missing:
        raise ConfigError(f"{path}: not a valid {what} (lacks {', '.join(missing)})")
    return data


def check_output(path: str | os.PathLike | None, option: str, folder: bool = False) -> None:
    """Before any work: one line when an output path cannot be written as asked (a folder where
    a file is expected or the reverse, or a parent that is a file)."""
    from edgevpr.errors import ConfigError

    if path is None:
        return
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: {option} names a file; give a folder")
    if not folder and path.is_dir():
        raise ConfigError(f"{path}: {option} names a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{path}: {option} is inside {parent}, which is a file")
            break
