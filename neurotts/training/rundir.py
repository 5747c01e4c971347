"""The run folder: created (or checked writable) at start, and locked for the whole run.

One training job owns a run folder at a time. The lock is ``flock`` on ``RUN/train.lock``,
taken by rank 0 (under torchrun all ranks of one job share the folder; the job holds the lock
through its rank 0). The kernel releases a ``flock`` when its holder dies, however it dies
(kill -9, OOM killer, node reboot of a local disk), so a crashed run never leaves the folder
locked. The file holds the holder's pid, host and start time, so that a refused second run
can say who holds it; a clean exit removes the file.

NFS: Linux implements ``flock`` on NFS with the server's byte-range locks (NFSv4, or NFSv3
with lockd), so the lock holds across hosts there. On a mount without locking (``nolock``,
``local_lock=all``) it only excludes processes on the same host; a run that finds a lock file
left by another host says so (a warning) instead of refusing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from neurotts.config import ConfigError
from neurotts.training.errors import TrainingError

LOCK_NAME = "train.lock"


def make_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` (and parents) or check an existing one; one line if it cannot be."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"run.dir={run_dir}: exists and is not a folder") from None
    except NotADirectoryError:
        parent = next((p for p in run_dir.parents if p.is_file()), run_dir.parent)
        raise ConfigError(f"run.dir={run_dir}: cannot be created, {parent} is a file") from None
    except OSError as exc:
        raise ConfigError(f"run.dir={run_dir}: cannot be created ({exc.strerror})") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"run.dir={run_dir}: not writable")


class RunLock:
    """Exclusive lock on a run folder (see the module doc). ``acquire`` raises
    :class:`TrainingError` naming the holder; ``notes`` says what was found and taken over."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_NAME
        self.fd: int | None = None
        self.notes: list[str] = []

    def acquire(self) -> None:
        for _ in range(10):  # the file can be removed by a holder between our open and lock
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise TrainingError(self._busy_message()) from None
                raise ConfigError(f"{self.path}: cannot lock the run folder ({exc.strerror})") from None
            if self._is_current(fd):
                self.fd = fd
                self._take_over(self._holder(fd))
                return
            os.close(fd)
        raise TrainingError(f"{self.path}: could not be locked (it keeps being replaced)")

    def release(self) -> None:
        if self.fd is None:
            return
        # Unlink while still holding the lock: a waiter that opened the old file sees, after
        # locking it, that the path no longer names it and starts over (see _is_current).
        with contextlib.suppress(OSError):  # the kernel releases the lock below regardless
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---------------------------------------------------------------------- helpers

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"run.dir={self.path.parent}: not writable ({exc.strerror})") from None

    def _is_current(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    @staticmethod
    def _holder(fd: int) -> dict[str, object] | None:
        raw = os.pread(fd, 4096, 0)
        try:
            holder = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return holder if isinstance(holder, dict) else None

    def _take_over(self, previous: dict[str, object] | None) -> None:
        """Write our record; note a record left behind by a holder that did not exit cleanly."""
        if previous is not None:
            who = f"pid {previous.get('pid')} on {previous.get('host')}"
            if previous.get("host") != socket.gethostname():
                self.notes.append(
                    f"warning: {self.path} was left by {who} (since {previous.get('since')}); if "
                    "that run is still going, this file system does not share locks between "
                    "hosts (NFS mounted with nolock?): stop one of the two runs")
            else:
                self.notes.append(f"{self.path}: taken over from {who}, which ended without "
                                  "releasing it")
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        data = json.dumps(record).encode("utf-8")
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only its holder goes unnamed

    def _busy_message(self) -> str:
        holder = None
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                holder = self._holder(fd)
            finally:
                os.close(fd)
        who = ("another process" if holder is None else
               f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since')})")
        return (f"{self.path.parent} is in use by another training run: {who} holds "
                f"{self.path}; wait for it to finish, stop it, or use another run.dir")
