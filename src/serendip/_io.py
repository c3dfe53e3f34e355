"""Atomic file output and input hashing.

Every file serendip writes goes through :func:`atomic_path`: the data are
written to a hidden temporary name in the destination folder and renamed into
place only when complete, so an interrupted run never leaves a half-written file
that looks finished. ``os.replace`` is atomic on POSIX and Windows when source
and destination are on the same file system, which the same-folder temporary
guarantees.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_path", "atomic_write_text", "atomic_dir", "file_sha256", "write_table", "read_table",
           "TABLE_FORMATS"]

TABLE_FORMATS = {
    ".fits": "fits", ".fit": "fits", ".fits.gz": "fits",
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "ascii.csv", ".ecsv": "ascii.ecsv",
}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched
    (an older complete version, if any, survives).

    Parameters
    ----------
    path : path-like
        The final destination.
    suffix : str, optional
        Suffix for the temporary name (defaults to the destination's own
        suffixes, so writers that sniff the extension keep working).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers such as astropy refuse to overwrite by default
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise RuntimeError(f"nothing was written to the temporary file for {path}")
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder: build it under a temporary name, then rename.

    An existing ``path`` is replaced only once the new folder is complete.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the finished folder gets the usual permissions
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` + ``.lock`` across processes while the block runs.

    For read-modify-write cycles on one small file shared by several processes (two
    ``serendip browse`` sessions on one labels file): the second waits until the first has
    written. The lock file is left in place (removing it would let a waiting process lock
    a file that no longer has a name). ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on
    Windows; where neither works (some network file systems), the block runs unlocked,
    with a warning.
    """
    import logging

    lock_path = Path(f"{os.fspath(path)}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        try:
            _lock_file(fh, True)
            held = True
        except OSError as exc:
            logging.getLogger(__name__).warning("could not lock %s (%s); going on unlocked", lock_path, exc)
            held = False
        try:
            yield
        finally:
            if held:
                _lock_file(fh, False)


def _lock_file(fh, lock: bool) -> None:
    """Take (waiting for it) or release the exclusive lock on an open file."""
    if os.name == "nt":
        import msvcrt

        fh.seek(0)
        if not lock:
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            return
        for attempt in range(60):  # LK_LOCK itself retries for 10 s before giving up
            try:
                msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                return
            except OSError:
                if attempt == 59:
                    raise
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if lock else fcntl.LOCK_UN)


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def check_table_path(path: str | os.PathLike) -> Path:
    """Return ``path`` if :func:`write_table` can write a table there (by its extension), else raise.

    Called by the commands before they start their work, so a wrong ``-o`` name is reported at
    once rather than after the computation.
    """
    path = Path(path)
    _table_format(path)
    return path


def _table_format(path: Path) -> str:
    name = path.name.lower()
    for ext in sorted(TABLE_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return TABLE_FORMATS[ext]
    raise ValueError(
        f"cannot tell the table format of {path}: use one of "
        + ", ".join(sorted(set(TABLE_FORMATS)))
    )


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, paths, quantities, units and sets turned into JSON types.

    A Quantity becomes ``{"value": ..., "unit": "..."}``; anything else JSON cannot hold is
    left for ``json.dumps(..., default=str)``.
    """
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=str)
    unit = getattr(value, "unit", None)
    if unit is not None and hasattr(value, "value") and isinstance(value, np.ndarray):  # an astropy Quantity
        return {"value": np.asarray(value.value).tolist(), "unit": str(unit)}
    if type(value).__module__.startswith("astropy.units"):  # a Unit
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise ImportError saying which serendip extra provides it.

    >>> require("numpy", "learn", "this")  # doctest: +ELLIPSIS
    <module 'numpy' ...>
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs the optional package {module.split('.')[0]}: "
                          f"pip install 'serendip[{extra}]'") from exc


def write_table(table, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write an astropy Table atomically, format chosen by the extension.

    ``table.meta`` (the provenance) is kept in every format: FITS and
    Parquet/ECSV store it natively; for FITS and CSV nested values are stored
    as one JSON string under the key ``SERENDIP`` (FITS) or a ``# serendip-meta:``
    comment line (CSV), which :func:`read_table` decodes again.
    """
    from astropy.table import Table

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    fmt = _table_format(path)
    if fmt == "parquet":
        require("pyarrow", "parquet", f"writing {path.name}")
    out = Table(table, copy=False)
    meta = _jsonable(dict(out.meta))
    out = out.copy(copy_data=False)
    if fmt == "fits":
        out.meta = {"SERENDIP": json.dumps(meta, default=str)}
    elif fmt == "ascii.csv":
        out.meta = {"comments": ["serendip-meta: " + json.dumps(meta, default=str)]}
    else:
        out.meta = meta
    with atomic_path(path) as tmp:
        if fmt == "ascii.csv":
            out.write(tmp, format="ascii.csv", comment="# ")
            _quote_hash_rows(tmp)
        elif fmt == "ascii.ecsv":
            out.write(tmp, format=fmt)
            _quote_hash_rows(tmp, delimiter=" ")
        else:
            out.write(tmp, format=fmt)
    return path


def _quote_hash_rows(path: Path, delimiter: str = ",") -> None:
    """Quote a data row's first field when it starts with ``#``, so CSV/ECSV readers do not skip the row as a comment."""
    with open(path, encoding="utf-8", newline="") as fh:
        lines = fh.readlines()
    body = next((k for k, line in enumerate(lines) if not line.startswith("#")), len(lines)) + 1  # after the header
    changed = False
    for k in range(body, len(lines)):
        if lines[k].startswith("#"):
            first, sep, rest = lines[k].partition(delimiter)
            end = first.rstrip("\r\n")
            lines[k] = f'"{end}"' + first[len(end):] + sep + rest
            changed = True
    if changed:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.writelines(lines)


def read_table(path: str | os.PathLike):
    """Read a table written by :func:`write_table` (or any FITS/Parquet/CSV/ECSV table).

    A file that cannot be read as its suffix says raises ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such table: {path}")
    fmt = _table_format(path)
    if fmt == "parquet":
        require("pyarrow", "parquet", f"reading {path.name}")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"cannot read {path}: the file is empty (0 bytes)")
    try:
        tab = _read_table_as(path, fmt)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path} as a {fmt} table: {exc}") from exc
    if not tab.colnames:
        raise ValueError(f"cannot read {path} as a {fmt} table: it has no columns")
    return tab


def _read_table_as(path: Path, fmt: str):
    from astropy.table import Table

    if fmt == "ascii.csv":
        tab = Table.read(path, format="ascii.csv", comment="#")
        meta = {}
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.startswith("#"):
                    break
                text = line.lstrip("# ").rstrip("\n")
                if text.startswith("serendip-meta: "):
                    meta = json.loads(text[len("serendip-meta: "):])
        tab.meta = meta
        return tab
    tab = Table.read(path, format=fmt)
    if "SERENDIP" in tab.meta:
        tab.meta = json.loads(tab.meta["SERENDIP"])
    return tab
