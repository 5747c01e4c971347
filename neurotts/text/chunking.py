"""Split long input into pieces an attention model synthesises reliably.

Attention TTS trained on LJSpeech (clips up to ~10 s, ~190 characters) degrades on inputs
much longer than it saw. Text is split at sentence ends first; a sentence still over
``max_chars`` is split at clause punctuation (; : ,), and only as a last resort between words.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space and a capital,
# digit or quote. Abbreviations such as "Mr. Smith" and initialisms such as "U.S. Army" (spelled
# "U S Army") are expanded by the normaliser before chunking, so they do not end sentences here.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_CLAUSE_END = re.compile(r"(?<=[;:,])\s+")


def _pack(parts: list[str], max_chars: int, sep: str = " ") -> list[str]:
    """Greedily join consecutive parts while the result stays within ``max_chars``."""
    out: list[str] = []
    for part in parts:
        if out and len(out[-1]) + len(sep) + len(part) <= max_chars:
            out[-1] = out[-1] + sep + part
        else:
            out.append(part)
    return out


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    clauses = _pack(_CLAUSE_END.split(sentence), max_chars)
    pieces: list[str] = []
    for clause in clauses:
        if len(clause) <= max_chars:
            pieces.append(clause)
        else:
            pieces.extend(_pack(clause.split(), max_chars))
    return pieces


def split_text(text: str, max_chars: int) -> list[str]:
    """Sentences (and, for over-long ones, clauses or word runs) of at most ``max_chars``.

    Whitespace is collapsed; empty input gives an empty list. A single word longer than
    ``max_chars`` is kept whole (it cannot be split meaningfully).
    """
    text = " ".join(text.split())
    if not text:
        return []
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    pieces: list[str] = []
    for sentence in sentences:
        pieces.extend(_split_long(sentence, max_chars))
    return pieces
