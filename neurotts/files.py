"""Atomic file writes: the one home for every file neurotts writes that a reader (or a rerun
after a crash) must never see half-written: store arrays and manifests, run configs,
checkpoints, evaluation reports.

Each write goes to ``NAME.part`` in the same folder, is flushed to disk, and is renamed over
``NAME``; a rename within one file system is atomic on POSIX, so ``NAME`` is either the old
file or the whole new one. :func:`fsync_dir` makes the rename itself durable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def part_path(path: Path) -> Path:
    """The temporary name a write goes to before it is renamed to ``path``."""
    return path.with_name(path.name + ".part")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to ``path.part``, fsync, then rename, so readers never see a half-written file."""
    tmp = part_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a ``.part`` file (no fsync: a store item is cheap to redo, and
    prepare's journal records an item only after its files are renamed into place)."""
    tmp = part_path(path)
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    tmp.replace(path)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable on POSIX (the directory entry itself must reach the disk)."""
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
