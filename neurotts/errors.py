"""The one root of every problem a user can act on.

A command's boundary (``cli.user_errors``) catches :class:`UserError` and nothing else it
expects: it prints the message as one line and exits with the class's ``exit_code``. What a
class declares is all the boundary needs to know, so no command keeps its own list of error
types and nothing is attached to an exception at run time.

``exit_code``
    2 for what the user should change before running again (a bad option, a missing path,
    unusable data); 1 for work that ran and could not finish (prepare made nothing usable,
    some synth lines failed); ``128 + N`` for a stop by signal N.
``every_rank``
    True where, under torchrun, the error is raised alike on every rank (a check that every
    rank makes on the same data, or a failure on rank 0 broadcast to the others): only rank 0
    prints it, once. An error one rank alone can hit keeps False and is printed by that rank.
``label``
    The word printed before the message ("error"), or None for a plain line (a stop by
    signal is not an error: it says what was saved and how to go on).

This module imports nothing from neurotts: every layer may raise these.
"""

from __future__ import annotations

from typing import ClassVar


class UserError(Exception):
    """A problem the user can fix or a stop the user asked for; the message is one line."""

    exit_code: int = 2  # a class default; a stop by signal sets its own on the instance
    every_rank: ClassVar[bool] = False
    label: ClassVar[str | None] = "error"


class IncompleteError(UserError):
    """Work that ran but could not finish all it was asked (exit 1); what did finish is kept."""

    exit_code: int = 1
