"""Which rows of a base model's symbol embedding each symbol of a new symbol table starts from.

Fine-tuning onto another symbol table (characters -> ARPAbet, a corpus with one more
punctuation mark, another IPA inventory) keeps what the base learned about every symbol the
two tables share and gives every other symbol a starting row built from base rows, by the
first of these rules that applies (each source is a symbol of the *base* table, so no new
row depends on another new row):

``shared``     the same symbol: its row is copied.
``stress``     an ARPAbet vowel with another stress digit (``@AH0`` from ``@AH1``): the
               vowel quality is the same, stress mostly changes duration and pitch.
``neighbour``  a phonetically close ARPAbet phone (:data:`PHONE_NEIGHBOURS`: the voicing
               partner of an obstruent, a nasal for a nasal, the nearest vowel).
``spelling``   the letters that usually spell an ARPAbet phone (:data:`PHONE_SPELLING`),
               averaged: ``@SH`` starts from the mean of ``s`` and ``h``. A characters model
               has learned in its letter rows what those sounds are, so a phone model
               fine-tuned from it starts from letters rather than from noise.
``letter``     the other case of a letter, or a letter without its diacritics and length
               marks (``A`` from ``a``, ``ã`` or ``aː`` from ``a``; IPA tables).
``mean``       the mean of the base's rows (pad excluded): a neutral start, no better than
               any symbol in particular.

Base symbols the new table lacks are listed as ``removed``; their rows are not used.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from neurotts.text.symbols import PAD, PHONE_PREFIX

RULES = ("shared", "stress", "neighbour", "spelling", "letter", "mean")

# The nearest phone(s) of each CMUdict phone (stress digits apart), nearest first: voicing
# partners for stops, fricatives and affricates, nasal to nasal, liquid and glide to the
# closest sonorant, each vowel to the vowel next to it in the vowel chart.
PHONE_NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "P": ("B",), "B": ("P",), "T": ("D",), "D": ("T",), "K": ("G",), "G": ("K",),
    "F": ("V",), "V": ("F",), "TH": ("DH", "F"), "DH": ("TH", "D"), "S": ("Z",), "Z": ("S",),
    "SH": ("ZH", "S"), "ZH": ("SH", "Z"), "CH": ("JH", "SH"), "JH": ("CH", "ZH"),
    "HH": ("F",), "M": ("N",), "N": ("M", "NG"), "NG": ("N",), "L": ("R",), "R": ("ER", "L"),
    "W": ("UW",), "Y": ("IY",),
    "AA": ("AO", "AH"), "AO": ("AA", "OW"), "AH": ("AA", "ER"), "AE": ("EH",),
    "EH": ("AE", "EY"), "EY": ("EH", "IY"), "IH": ("IY", "EH"), "IY": ("IH",),
    "UH": ("UW",), "UW": ("UH",), "OW": ("AO", "UW"), "ER": ("AH", "R"),
    "AY": ("AA", "IY"), "AW": ("AA", "UW"), "OY": ("AO", "IY"),
}

# The letters that most often spell each phone in English, for the ``spelling`` rule.
PHONE_SPELLING: dict[str, str] = {
    "AA": "a", "AE": "a", "AH": "u", "AO": "o", "AW": "ou", "AY": "i", "B": "b", "CH": "ch",
    "D": "d", "DH": "th", "EH": "e", "ER": "er", "EY": "a", "F": "f", "G": "g", "HH": "h",
    "IH": "i", "IY": "e", "JH": "j", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ng",
    "OW": "o", "OY": "oi", "P": "p", "R": "r", "S": "s", "SH": "sh", "T": "t", "TH": "th",
    "UH": "u", "UW": "u", "V": "v", "W": "w", "Y": "y", "Z": "z", "ZH": "s",
}

STRESS_ORDER = "120"  # another stress digit, most common first (primary, secondary, none)
LENGTH_MARKS = "ːˑ"


@dataclass(frozen=True)
class SymbolSource:
    """Where the starting row of one new symbol comes from: the mean of the base rows of
    ``sources`` (all base rows but pad for ``mean``)."""

    symbol: str
    rule: str  # one of RULES
    sources: tuple[str, ...]

    def describe(self) -> str:
        if self.rule == "mean":
            return "mean of the base rows"
        return "+".join(self.sources)


@dataclass(frozen=True)
class SymbolMap:
    """One :class:`SymbolSource` per symbol of the new table (in id order), and the base
    symbols the new table does not have."""

    rows: tuple[SymbolSource, ...]
    removed: tuple[str, ...]

    def counts(self) -> Counter[str]:
        return Counter(r.rule for r in self.rows)

    def new(self) -> list[SymbolSource]:
        """The symbols the base does not have, with the rule each starts from."""
        return [r for r in self.rows if r.rule != "shared"]


def _phone(symbol: str) -> tuple[str, str] | None:
    """``"@AH0"`` -> ``("AH", "0")``, ``"@HH"`` -> ``("HH", "")``; None for a non-phone."""
    if not symbol.startswith(PHONE_PREFIX) or len(symbol) < 2:
        return None
    body = symbol[len(PHONE_PREFIX):]
    if body[-1].isdigit():
        return body[:-1], body[-1]
    return body, ""


def _phone_in(base: set[str], phone: str, stress: str) -> str | None:
    """The base's symbol for ``phone``, with ``stress`` if it has it, else another stress."""
    digits = [stress] + [d for d in STRESS_ORDER if d != stress] if stress else [""]
    for digit in digits:
        candidate = f"{PHONE_PREFIX}{phone}{digit}"
        if candidate in base:
            return candidate
    return None


def _phone_rule(symbol: str, base: set[str]) -> SymbolSource | None:
    parsed = _phone(symbol)
    if parsed is None:
        return None
    phone, stress = parsed
    if stress and (other := _phone_in(base, phone, stress)) is not None:
        return SymbolSource(symbol, "stress", (other,))
    for near in PHONE_NEIGHBOURS.get(phone, ()):
        if (found := _phone_in(base, near, stress)) is not None:
            return SymbolSource(symbol, "neighbour", (found,))
    letters = PHONE_SPELLING.get(phone, "")
    if letters and all(c in base for c in letters):
        return SymbolSource(symbol, "spelling", tuple(dict.fromkeys(letters)))
    return None


def _letter_rule(symbol: str, base: set[str]) -> SymbolSource | None:
    candidates = [symbol.swapcase()] if len(symbol) == 1 else []
    stripped = "".join(c for c in unicodedata.normalize("NFD", symbol)
                       if not unicodedata.combining(c) and c not in LENGTH_MARKS)
    candidates += [stripped, stripped.swapcase()] if stripped else []
    for candidate in candidates:
        if candidate != symbol and candidate in base:
            return SymbolSource(symbol, "letter", (candidate,))
    return None


def map_symbols(base: Sequence[str], new: Sequence[str]) -> SymbolMap:
    """Where each symbol of ``new`` starts from, by the rules of the module docstring."""
    known = set(base)
    rows = []
    for symbol in new:
        row = (SymbolSource(symbol, "shared", (symbol,)) if symbol in known else
               _phone_rule(symbol, known) or _letter_rule(symbol, known)
               or SymbolSource(symbol, "mean", ()))
        rows.append(row)
    kept = set(new)
    return SymbolMap(tuple(rows), tuple(s for s in base if s not in kept))


@torch.no_grad()
def map_embedding(base_weight: torch.Tensor, base_symbols: Sequence[str],
                  symbol_map: SymbolMap) -> torch.Tensor:
    """The new table's embedding ``(V_new, D)`` from the base's ``(V_base, D)`` rows."""
    index = {s: i for i, s in enumerate(base_symbols)}
    known = [i for s, i in index.items() if s != PAD] or list(index.values())
    mean = base_weight[known].mean(dim=0)  # (D,)
    rows = []
    for row in symbol_map.rows:
        if row.rule == "mean":
            rows.append(mean)
        else:
            rows.append(base_weight[[index[s] for s in row.sources]].mean(dim=0))
    return torch.stack(rows)  # (V_new, D)
