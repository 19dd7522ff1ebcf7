"""Writing a run's files so that a failed write damages nothing, and saying why it failed.

A run directory holds hours of robot time, and its filesystem can fill up, be mounted read-only
or refuse this user. Two rules keep what is already written intact:
  - a file that is replaced (a checkpoint, the policy, config.yaml) is written whole to a hidden
    temporary beside it and renamed over it; the temporary is removed when the write fails;
  - a line appended to a log or CSV is written in one piece, and cut off again when the write
    fails half-way, so that no torn line sits in front of the next one.
A run's CSV files (train_episodes.csv, eval.csv, ...) and the result tables are written here too,
in one format (`csv_text`).
Every failed write raises an OSError that names the file (os.write and fsync leave it out), and
`write_failure` / `describe_write_failure` turn it into the one line a user reads.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import pathlib
from typing import Any

# What a write meets when the disk is full, the filesystem read-only or the folder not this user's.
# EIO: the disk itself failed, or ffmpeg could not write a video (runtime/video.py).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}

_FIXES = {
    errno.ENOSPC: "free space on that filesystem, or move the run to a larger one",
    errno.EDQUOT: "the user's disk quota is used up; free space or raise the quota",
    errno.EFBIG: "the file grew past the process's file-size limit (ulimit -f); raise it",
    errno.EROFS: "that filesystem is mounted read-only; remount it read-write or use another directory",
    errno.EACCES: "this user may not write there; fix the permissions or use another directory",
    errno.EPERM: "this user may not write there; fix the permissions or use another directory",
    errno.EIO: "check the disk (dmesg) and the space left on it",
}


def temporary_path(path: pathlib.Path) -> pathlib.Path:
    """The hidden name a file is written under before it replaces `path` (readers skip it)."""
    return path.with_name(f".{path.name}.tmp")


def named(error: OSError, path: os.PathLike | str, instead_of_temporary: bool = False) -> OSError:
    """`error` with `path` as its file name when it has none (same errno, same OSError subclass).
    instead_of_temporary: path replaces the name it has (the hidden temporary a file is written
    under, which is no name a user knows)."""
    if error.filename is not None and not instead_of_temporary:
        return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno or 0), os.fspath(path))


def fsync_directory(directory: os.PathLike | str) -> None:
    """Makes a folder's entries (a new or renamed name) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def write_atomically(path: os.PathLike | str, data: bytes | memoryview) -> None:
    """Replaces `path` with `data` whole or not at all: a temporary beside it, fsync, rename,
    fsync of the folder. On failure the temporary is removed and the old file (if any) is
    untouched; the OSError raised names `path`."""
    path = pathlib.Path(path)
    temporary = temporary_path(path)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except OSError as error:
        remove_quietly(temporary)
        raise named(error, path, instead_of_temporary=True) from None


def append_atomically(path: os.PathLike | str, data: str | bytes, fsync: bool = False) -> None:
    """Appends `data` to `path` (created if missing) in one piece: when the write fails part-way
    (disk full), what it wrote is cut off again, so the file ends where it ended before."""
    path = pathlib.Path(path)
    encoded = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise named(error, path) from None
    try:
        append_to_descriptor(fd, encoded, path, fsync)
    finally:
        os.close(fd)


def append_to_descriptor(fd: int, data: bytes, path: os.PathLike | str, fsync: bool) -> None:
    """append_atomically on a file already open for appending (an event log kept open)."""
    size = os.fstat(fd).st_size
    try:
        _write_all(fd, data)
        if fsync:
            os.fsync(fd)
    except OSError as error:
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass  # nothing was written, then (a read-only filesystem)
        raise named(error, path) from None


def remove_quietly(path: os.PathLike | str) -> None:
    """Removes a file if it is there; a failure to remove it is not the error to report."""
    try:
        os.unlink(path)
    except OSError:
        pass


def write_failure(error: BaseException | None) -> OSError | None:
    """The failed write (disk full, read-only, permission denied) behind `error`, if any: the
    error itself or one it was raised from or during."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def describe_write_failure(error: OSError, where: os.PathLike | str | None = None) -> str:
    """One line: which file, what went wrong, what to do. where: named when the error names no
    file (a write by a library that drops the name)."""
    path = error.filename if error.filename is not None else (where or "a file")
    name = errno.errorcode.get(error.errno, str(error.errno))
    fix = _FIXES.get(error.errno, "check the filesystem")
    return f"cannot write {path}: {error.strerror} ({name}); {fix}"


def append_csv_row(path: pathlib.Path, row: dict[str, Any]) -> None:
    """Appends a row to a CSV file (its header first, if new); when the row brings new columns
    (a run resumed by a newer version), the file is rewritten once with the union of the
    columns, older rows left blank there. Written in one piece (header and row; the rewrite
    atomically): a disk that fills up leaves the file as it was, never with half a row."""
    header = []
    if path.exists():
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    if header and set(row) - set(header):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        header = header + [k for k in row if k not in header]
        write_atomically(path, csv_text(header, rows, with_header=True).encode())
    append_atomically(path, csv_text(header or list(row), [row], with_header=not header))


def csv_text(header: list[str], rows: list[dict[str, Any]], with_header: bool = True) -> str:
    """rows (dicts; keys missing from a row are left blank) as CSV text in the order of header,
    with the header line first when with_header; csv's own quoting and \\r\\n line ends."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=header)
    if with_header:
        writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
