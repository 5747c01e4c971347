"""Nothing said is lost: random mixes of letters, digits, symbols and Unicode run through the
frontend, and every digit group is still spoken, every word still there, and every character
without a reading named in the report.

A seeded generator (no extra dependency) builds a few thousand texts; a failure prints the
text, so it can be added to test_text_modern.py as a case of its own.
"""

from __future__ import annotations

import random
import re
import string
import warnings

import pytest

from neurotts.text import abbreviations, codes, measures
from neurotts.text.charset import KEEP, to_ascii
from neurotts.text.frontend import TextConfig, TextError, TextFrontend, TextReport, TextWarning

_UNICODE = list("éßøЖ日३٣３²³½¼—…«»“”→©™°£€¥¢±×") + [
    "😀", "🎉", "👍🏽", "🇺🇸", "\u200d", "\ufe0f", "\u00ad", "⚠️", "★", "♥",
]
_ASCII_SYMBOLS = "".join(c for c in string.punctuation if c not in "{}")  # braces: inline ARPAbet
_SEPARATORS = ["", "", "", " ", " ", " ", "-", ".", ",", "/", ":", "'"]


def _piece(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        return "".join(rng.choices(string.digits, k=rng.choice([1, 1, 2, 3, 4, 4, 7, 10, 40])))
    if kind < 0.7:
        return "".join(rng.choices(string.ascii_letters, k=rng.randint(1, 6)))
    if kind < 0.85:
        return rng.choice(_ASCII_SYMBOLS)
    return rng.choice(_UNICODE)


def random_text(rng: random.Random) -> str:
    pieces = [_piece(rng) for _ in range(rng.randint(1, 8))]
    return "".join(p + rng.choice(_SEPARATORS) for p in pieces).strip()


# -- what counts as a number said aloud ----------------------------------------------------------

_NUMBER_STEMS = (
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
    "ninety hundred thousand million billion trillion quadrillion quintillion sextillion "
    "septillion octillion nonillion decillion first second third fifth eighth ninth twelfth "
    "twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth half halve "
    "quarter squared cubed square cubic clock "
    "january february march april may june july august september october november december"
).split()
_NUMBER_WORD_RE = re.compile(
    rf"(?:{'|'.join(sorted(_NUMBER_STEMS, key=len, reverse=True))})(?:s|es|th|ths)?"
)
# Digit groups said as one reading: "1,000", "3.50", "4:30", "1/2", "12/25/2023".
_DIGIT_GROUP_RE = re.compile(r"\d+(?:[.,:/]\d+)*")


def number_words(normalized: str) -> int:
    words = re.split(r"[^a-z]+", normalized.lower())
    singular = (w[:-3] + "y" if w.endswith("ies") else w for w in words)
    return sum(bool(_NUMBER_WORD_RE.fullmatch(w)) for w in singular)


# Letter runs the rules may read as something else: units, abbreviations, Roman numerals,
# web words. Every other run of three or more letters must still be in the output.
_READ_AS_OTHER = {
    *(u.lower() for u in measures.UNITS), *(a.lower() for a in abbreviations._ABBREVIATIONS),
    *(a.lower() for a in abbreviations._ROAD_WORDS), *(a.lower() for a in abbreviations._UNITS_OF_ADDRESS),
    *abbreviations._LATIN, *codes._TOP_DOMAINS.split("|"), "www", "http", "https", "mbps", "gbps",
}
_ROMAN_RE = re.compile(r"[IVXLCDMivxlcdm]+")
_LETTER_RUN_RE = re.compile(r"[A-Za-z]{3,}")


def check_coverage(fe: TextFrontend, text: str) -> None:
    ascii_text = to_ascii(text)
    report = TextReport()
    try:
        normalized, _, _ = fe.encode(text, report)
    except TextError:
        # Only a text with no letter or digit at all may have nothing to say.
        assert not re.search(r"[A-Za-z0-9]", ascii_text), text
        return
    assert not re.search(r"\d", normalized), f"{text!r} -> {normalized!r}: a digit is left"
    groups = len(_DIGIT_GROUP_RE.findall(ascii_text))
    assert number_words(normalized) >= groups, f"{text!r} -> {normalized!r}: digits lost"
    for run in _LETTER_RUN_RE.findall(ascii_text):
        if run.lower() in _READ_AS_OTHER or _ROMAN_RE.fullmatch(run):
            continue
        said = normalized.lower()
        spelled = " ".join(run.lower())  # codes are spelled: "WRB4030" -> "W R B four ..."
        assert run.lower() in said or spelled in said, f"{text!r} -> {normalized!r}: {run!r} lost"
    for c in set(text):
        unread = not c.isascii() and c not in KEEP and to_ascii(c) == c
        if unread or c in "|`\\":
            assert report.dropped[c], f"{text!r} -> {normalized!r}: {c!r} neither read nor reported"


@pytest.mark.parametrize(("symbol_set", "cases"), [("characters", 3000), ("arpabet", 500)])
def test_random_text_keeps_every_digit_word_and_unread_symbol(symbol_set: str, cases: int) -> None:
    fe = TextFrontend(TextConfig(symbol_set=symbol_set))
    rng = random.Random(25)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextWarning)  # the report collects; nothing may warn
        for _ in range(cases):
            check_coverage(fe, random_text(rng))


@pytest.mark.parametrize(
    "text",
    ["Room 101B", "Apt 4B", "3D printing", "x86 and MP3", "B-52", "COVID-19", "4.5G", "5s",
     "a1b2c3", "H2O", "1080p", "A.D. 1066", "9/11", "24/7", "100km/h", "Call 555-1234"],
)
def test_issue_cases_keep_their_digits(text: str) -> None:
    check_coverage(TextFrontend(TextConfig(symbol_set="characters")), text)


def test_check_coverage_catches_a_lost_digit() -> None:
    # The checker itself must fail on the bug it is for: a frontend that drops digits.
    class Lossy(TextFrontend):
        def normalize(self, raw: str) -> str:
            return re.sub(r"\d+", "", raw) or "x"

    with pytest.raises(AssertionError, match="digits lost"):
        check_coverage(Lossy(TextConfig(symbol_set="characters")), "Room 101B")
