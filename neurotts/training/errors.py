"""Everything training raises for the user, in one place (all :class:`neurotts.errors.UserError`).

Under torchrun the CLI prints an error once when its class declares ``every_rank``. Training
stops alike on every rank, so its own errors declare it; an error of another layer that
rank 0 reports for all (a failed write, a refused checkpoint, a damaged store) reaches the
other ranks as :class:`SharedError`, see :func:`neurotts.training.distributed.on_main`.
"""

from __future__ import annotations

from pathlib import Path

from neurotts.errors import IncompleteError, UserError


class TrainingError(IncompleteError, RuntimeError):
    """Training cannot go on (e.g. only non-finite steps); the message says why (exit 1).

    Every check that raises it is made on every rank on the same data (resume settings,
    non-finite steps, empty splits) or by rank 0 for all (lock, writes), hence ``every_rank``."""

    every_rank = True


class TrainingInterrupted(UserError):
    """A stop was requested by a signal (Ctrl-C, SIGTERM); a checkpoint of the last complete
    step was written, and running the same command again resumes from it. Every rank stops
    alike (the stop is agreed between ranks); rank 0 says so, as a plain line."""

    every_rank = True
    label = None

    def __init__(self, signal_name: str, signal_number: int, step: int, checkpoint: Path | None):
        self.signal_name, self.signal_number = signal_name, signal_number
        self.exit_code = 128 + signal_number
        self.step, self.checkpoint = step, checkpoint
        where = f"; checkpoint {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"stopped by {signal_name} after step {step}{where}; run the same "
                         "command again to resume")


class SharedError(UserError):
    """What a rank other than 0 raises for an error rank 0 reports: one rank 0 hit alone and
    broadcast, or one every rank hit alike whose class does not say so (it belongs to another
    layer). It keeps the message and exit code, so every rank exits alike and rank 0, which
    raises the original, prints it once."""

    every_rank = True

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class FineTuneError(UserError):
    """``init_from`` names something this run cannot start from (no checkpoint, another model
    kind, other audio settings, ...), or ``trainer.freeze`` names no module; found before any
    work, on every rank alike (exit 2)."""

    every_rank = True
