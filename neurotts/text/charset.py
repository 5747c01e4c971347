"""Unicode in, ASCII out: each character is read, kept silent, or left for the report.

The rules after this step work on ASCII, so every other character is decided here:

- letters and digits of any script are transliterated ("é" -> "e", "３" -> "3", "ß" -> "ss");
- symbols with a reading become words ("×" -> "times", "±" -> "plus or minus"); currency
  signs and "°" stay for the amount and measure rules, which read them with their number;
- superscript digits become a power ("x²" -> "x^2", read "x squared") and vulgar fractions a
  fraction ("2½" -> "2 1/2", read "two and a half");
- typographic punctuation becomes its ASCII form ("—" -> "-", "“" -> '"', "…" -> "...");
- marks that only decorate other characters are silent: combining accents, variation
  selectors, emoji skin tones, zero-width joiners, soft hyphens;
- everything else (emoji, arrows, dingbats, flags...) is left as it is: no symbol set has it,
  so the frontend drops it and names it in its ``TextReport`` (a warning for the caller),
  instead of spelling a transliteration such as ":grinning:" letter by letter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from anyascii import anyascii

from neurotts.text.symbols import PUNCTUATION

# Read by the amount and measure rules with their number; left over, by name (normalize.py).
KEEP = frozenset("£€¥₹¢°")

# Symbols that have a reading of their own wherever they stand.
_READINGS = {
    "×": " times ",
    "÷": " divided by ",
    "±": " plus or minus ",
    "∓": " minus or plus ",
    "≠": " is not equal to ",
    "≈": " is approximately ",
    "≤": " is less than or equal to ",
    "≥": " is greater than or equal to ",
    "∞": " infinity ",
    "√": " the square root of ",
    "→": " to ",
    "©": " copyright ",
    "§": " section ",
    "¶": " paragraph ",
    "‰": " per mille ",
    "№": " number ",
    "−": "-",  # the minus sign: the ASCII rules read "-5" as "minus five"
    # Marks of ownership nobody reads aloud.
    "®": "",
    "™": "",
    "℠": "",
    # Quotes and list bullets: a pause, as the ASCII quote or comma is.
    "«": '"',
    "»": '"',
    "‹": "'",
    "›": "'",
    "„": '"',
    "•": ", ",
    "·": ", ",
}
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_SUPERSCRIPT_RE = re.compile(r"[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
# "20º" is a degree written with the ordinal indicator, a common keyboard substitute.
_ORDINAL_DEGREE_RE = re.compile(r"(?<=\d)\s?º")
_SPEAKABLE_PUNCTUATION = frozenset(PUNCTUATION + " ")


def _punctuation(c: str, fallback: str) -> str:
    # Typographic punctuation whose ASCII form the symbol sets have; otherwise ``fallback``.
    ascii_form = anyascii(c)
    return ascii_form if ascii_form and set(ascii_form) <= _SPEAKABLE_PUNCTUATION else fallback


def _char(c: str) -> str:
    """The ASCII replacement of one non-ASCII character (``c`` itself: report it)."""
    if c in KEEP:
        return c
    if c in _READINGS:
        return _READINGS[c]
    category = unicodedata.category(c)
    if category == "No" and "/" in anyascii(c):
        return f" {anyascii(c)} "  # "2½" -> "2 1/2 ": a mixed number, not "21/2"
    if category[0] in "LN":
        return anyascii(c) or c
    if category[0] == "M" or category == "Cf":
        return ""  # accents, variation selectors, zero-width joiners, soft hyphens
    if category[0] == "Z":
        return " "
    if category == "Sk":
        return _punctuation(c, "")  # modifiers: emoji skin tones, spacing accents
    if category[0] == "P":
        return _punctuation(c, c)
    return c  # emoji, arrows, dingbats...: the frontend drops and reports them


def _superscript(m: re.Match[str]) -> str:
    # A power of what stands before it ("x²", "m³"); with nothing before it, just the digits.
    power = "^" if m.start() and m.string[m.start() - 1].isalnum() else " "
    apart = " " if m.string[m.end():m.end() + 1].isdigit() else ""  # "1605²941"
    return power + m[0].translate(_SUPERSCRIPTS) + apart


def to_ascii(text: str) -> str:
    """ASCII text plus the characters of :data:`KEEP` and those left for the report."""
    if text.isascii():
        return text
    text = _ORDINAL_DEGREE_RE.sub("°", text)
    text = _SUPERSCRIPT_RE.sub(_superscript, text)
    text = unicodedata.normalize("NFC", text)
    return "".join(c if c.isascii() else _char(c) for c in text)


def describe(chars: Iterable[str]) -> str:
    """Names of the non-ASCII or invisible characters among ``chars``, for a warning.

    ``"😀🎉"`` -> ``"U+1F389 PARTY POPPER, U+1F600 GRINNING FACE"``; empty when all of them
    are printable ASCII (the character itself says enough).
    """
    named = sorted(c for c in set(chars) if not (c.isascii() and c.isprintable()))
    return ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in named)
