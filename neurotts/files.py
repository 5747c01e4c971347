"""Atomic file writes: the one home for every file neurotts writes that a reader (or a rerun
after a crash) must never see half-written: store arrays and manifests, run configs,
checkpoints, evaluation reports.

Each write goes to ``NAME.part`` in the same folder, is flushed to disk, and is renamed over
``NAME``; a rename within one file system is atomic on POSIX, so ``NAME`` is either the old
file or the whole new one. :func:`fsync_dir` makes the rename itself durable. A write that
fails (disk full, quota, Ctrl-C) removes its ``.part`` file, and an ``OSError`` it raises
names ``NAME`` (``exc.filename``), so callers can say which file could not be written.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np


def part_path(path: Path) -> Path:
    """The temporary name a write goes to before it is renamed to ``path``."""
    return path.with_name(path.name + ".part")


def disk_full(exc: OSError) -> bool:
    """The write failed for lack of space (or of quota), not for a fault of its own."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def _writing(path: Path, sync: bool) -> Iterator[IO[bytes]]:
    """An open ``path.part``; renamed to ``path`` on success, removed on any failure."""
    tmp = part_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            if sync:
                f.flush()
                os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename != str(path):
            # write() and fsync() name no file, open() names the .part: name the target.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to ``path.part``, fsync, then rename, so readers never see a half-written file."""
    with _writing(path, sync=True) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a ``.part`` file (no fsync: a store item is cheap to redo, and
    prepare's journal records an item only after its files are renamed into place)."""
    with _writing(path, sync=False) as f:
        np.save(f, array, allow_pickle=False)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable on POSIX (the directory entry itself must reach the disk)."""
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
