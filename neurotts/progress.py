"""Items done, rate and ETA for commands that work through a known number of items (``eval``
utterances, ``synth`` lines): a rich progress bar on a terminal, otherwise (a log file, a
batch job) one plain line per update."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ItemProgress:
    """``label: done/total unit, rate, elapsed, ETA``; a bar on a terminal (lines printed on
    the same console while it runs appear above it)."""

    def __init__(self, console: Console, total: int, label: str, unit: str):
        self.console, self.total, self.label, self.unit = console, total, label, unit
        self.t0 = time.perf_counter()
        self.bar: Progress | None = None
        if console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                console=console, transient=False,
            )
            self.task = self.bar.add_task(label, total=total, rate="")

    def __enter__(self) -> ItemProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, done: int) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = done / max(elapsed, 1e-9)
        short = {"utterances": "utt", "lines": "lines"}.get(self.unit, self.unit)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, rate=f"{rate:.2f} {short}/s")
            return
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_text = clock(eta) if math.isfinite(eta) else "?"
        self.console.print(f"{self.label}: {done}/{self.total} {self.unit}, {rate:.2f} {short}/s, "
                           f"elapsed {clock(elapsed)}, ETA {eta_text}", markup=False,
                           highlight=False, soft_wrap=True)
