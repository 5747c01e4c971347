"""Stopping a run on a signal, in the training process and in its loader workers.

SIGTERM (a scheduler's pre-emption or time limit, ``timeout``, torchrun shutting down),
SIGINT (Ctrl-C) and SIGUSR1 (Slurm's ``--signal=USR1@secs`` warning) ask the run to stop
after the current step with a checkpoint (:class:`StopRequest`); the loop agrees on the step
with the other ranks and raises :class:`~neurotts.training.errors.TrainingInterrupted`.
Loader workers leave these signals to the training process (:func:`worker_init`,
:func:`start_workers`), so a signal to the whole process group does not fail a batch.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from neurotts.training.distributed import signal_on_parent_death
from neurotts.training.errors import TrainingInterrupted

# The signals that ask for a stop: the ones StopRequest handles and loader workers leave alone.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """SIGTERM (a scheduler's pre-emption or time limit, ``timeout``, torchrun shutting
    down), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's ``--signal=USR1@secs`` warning) become a
    request to stop after the current step with a checkpoint, whether they reach this process
    alone or its whole process group (loader workers ignore them, see :func:`worker_init`).
    Copies of one event count once: a repeated SIGTERM or SIGUSR1 changes nothing, and a
    SIGINT within ``REPEAT_S`` of the first is the same Ctrl-C (under torchrun a terminal's
    Ctrl-C reaches a worker twice); a later Ctrl-C aborts at once, without a checkpoint.
    Handlers are installed only in the main thread and restored on exit."""

    REPEAT_S = 1.0  # a second SIGINT sooner than this is the same request delivered twice

    def __init__(self, announce: bool):
        self.signal: signal.Signals | None = None
        self._when = 0.0
        self.announce = announce
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def number(self) -> int:
        """The signal received, 0 for none (what the ranks all-reduce)."""
        return 0 if self.signal is None else int(self.signal)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            if signum == signal.SIGINT and time.monotonic() - self._when > self.REPEAT_S:
                raise KeyboardInterrupt
            return
        self.signal, self._when = signal.Signals(signum), time.monotonic()
        if self.announce:
            # Only a second Ctrl-C aborts: a repeated SIGTERM or SIGUSR1 is the same request.
            again = ("Ctrl-C again stops at once" if self.signal == signal.SIGINT else
                     f"another {self.signal.name} changes nothing; SIGKILL stops at once")
            sys.stderr.write(f"\n{self.signal.name}: stopping after this step and saving a "
                             f"checkpoint ({again}, without one)\n")

    @staticmethod
    def interrupted(step: int, checkpoint: Path | None, signum: int) -> TrainingInterrupted:
        """The exception that ends the run; ``signum`` is the one all ranks agreed on."""
        sig = signal.Signals(signum)
        return TrainingInterrupted(sig.name, int(sig), step, checkpoint)



def worker_init(worker_id: int) -> None:
    """Loader workers leave stop signals to the main process, which stops at a step boundary
    and then shuts them down: a worker that died of a signal sent to the whole process group
    (a terminal's Ctrl-C, ``timeout``, ``kill -- -PGID``, Slurm's scancel) would fail the
    batch the main process waits for. SIGINT and SIGUSR1 are ignored. SIGTERM still ends a
    worker when its parent sends it (the loader's and multiprocessing's fallback for a worker
    that does not quit), as torch's own worker handler does, and is ignored from anyone else.
    A worker is also killed by the kernel when the main process dies (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # held while the worker started (start_workers)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGUSR1})
    if hasattr(signal, "sigwaitinfo"):
        # Block SIGTERM (threads started later inherit the mask) and take it in a thread
        # that can see who sent it; a handler cannot.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_sigterm_from_parent_only, args=(os.getppid(),), daemon=True,
                         name="sigterm").start()
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal_on_parent_death(signal.SIGKILL)



def start_workers(loader: DataLoader) -> Iterator[Any]:
    """``iter(loader)`` with the stop signals held while its workers start: a new worker
    inherits the blocked mask, so a signal to the process group that arrives before
    :func:`worker_init` has run waits instead of killing it (torch's own worker handler ends
    a worker on any SIGTERM). This process takes the held signal as soon as they are up."""
    if loader.num_workers == 0 or not hasattr(signal, "pthread_sigmask"):
        return iter(loader)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _sigterm_from_parent_only(parent: int) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)  # torch's worker handler exits the same way

