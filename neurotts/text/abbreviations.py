"""Abbreviations read as words: titles, roads, months, Latin, dotted initialisms.

Case matters here: capitals tell "St. Paul" (a title before a name) from "Elm St." (a road
after one), and "No. 4" from the word "no." at the end of a sentence.
"""

from __future__ import annotations

import re

# Titles and other abbreviations that are always written with a period. Matched with their
# capital, so "co." inside a sentence or a lowercase "no." (the word) stays alone.
_ABBREVIATIONS = {
    "Mr": "Mister",
    "Mrs": "Missus",
    "Ms": "Miz",
    "Messrs": "Messieurs",
    "Dr": "Doctor",
    "Drs": "Doctors",
    "Prof": "Professor",
    "Capt": "Captain",
    "Col": "Colonel",
    "Gen": "General",
    "Lt": "Lieutenant",
    "Sgt": "Sergeant",
    "Maj": "Major",
    "Cpl": "Corporal",
    "Pvt": "Private",
    "Adm": "Admiral",
    "Rev": "Reverend",
    "Hon": "Honorable",
    "Gov": "Governor",
    "Sen": "Senator",
    "Rep": "Representative",
    "Jr": "Junior",
    "Sr": "Senior",
    "Esq": "Esquire",
    "Co": "Company",
    "Ltd": "Limited",
    "Inc": "Incorporated",
    "Bros": "Brothers",
    "Ft": "Fort",
    "Mt": "Mount",
    "Ave": "Avenue",
    "Jan": "January",
    "Feb": "February",
    "Aug": "August",
    "Sept": "September",
    "Oct": "October",
    "Nov": "November",
    "Dec": "December",
}
_ABBREV_RE = re.compile(r"\b(" + "|".join(sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")\.")
# "No." and "Nos." are abbreviations only in front of a number ("No. 4"); elsewhere "No." is
# the word no at the end of a sentence.
_NUMBER_ABBREV_RE = re.compile(r"\b(N|n)o(s?)\.(?=\s*[A-Z]?\d)")
# "pp. 45-67": pages, and the hyphen between the page numbers is "to".
_PAGES_RE = re.compile(r"\bpp\.\s*(\d+)\s*-\s*(\d+)\b")
# "Dr." and "St." after a name and not before one are roads ("Smith Dr.", "Elm St. is");
# before a capitalised name they are titles ("Dr. Smith", "St. Paul's", "Bury St. Edmunds").
# An ordinal names a street too ("42nd St."). Without their period ("Dr Smith", British
# usage) they are read the same way.
_ROAD_RE = re.compile(r"\b([A-Z][a-z]+|\d+(?:st|nd|rd|th))(\s+)(Dr|St)(\.|\b(?!\.))(?!\s+[A-Z])")
_ROADS = {"Dr": "Drive", "St": "Street"}
_SAINT_RE = re.compile(r"\bSt\.?(?=\s+[A-Z])")
_STREET_RE = re.compile(r"\bSt\.")
_BARE_TITLE_RE = re.compile(r"\b(Mr|Mrs|Ms|Dr|Prof)(?=\s+[A-Z][a-z])")
# Road abbreviations that are not words, with or without their period.
_ROAD_WORDS = {"Rd": "Road", "Blvd": "Boulevard", "Ln": "Lane", "Hwy": "Highway",
               "Pkwy": "Parkway"}
_ROAD_WORD_RE = re.compile(r"\b(Rd|Blvd|Ln|Hwy|Pkwy)\b(\.?)")
# Parts of an address, read as words before their number ("Apt 4B", "Rm. 101", "Ste #200").
_UNITS_OF_ADDRESS = {"Apt": "Apartment", "Rm": "Room", "Ste": "Suite", "Bldg": "Building"}
_ADDRESS_RE = re.compile(r"\b(Apt|Rm|Ste|Bldg)\b\.?(?=\s*#?\s*\d)")
# Dotted initialisms are spelled: "U.S." -> "U S", "A.D." -> "A D", "p.m." -> "P M". The
# letters are capitals so the ARPAbet frontend says their names; dropping the inner periods
# keeps the chunker from ending a sentence inside "U.S. Army".
_INITIALISM_RE = re.compile(
    r"(?<![\w.])((?:[A-Z]\.){2,}|(?:[A-Z]\.)+[A-Z](?![\w.])|[ap]\.m\.|Ph\.\s?D\.)"
)
# Latin abbreviations are read as a reader says them aloud ("e.g." -> "for example"); a
# capital ("E.g." opening a sentence) is kept.
_LATIN = {
    "e.g": "for example",
    "i.e": "that is",
    "viz": "namely",
    "cf": "compare",
    "etc": "et cetera",
    "vs": "versus",
    "et al": "et al",
}
_LATIN_RE = re.compile(r"(?<![\w.])(e\.\s?g|i\.\s?e|viz|cf|etc|vs|et al)\.", re.IGNORECASE)


def _latin(m: re.Match[str]) -> str:
    words = _LATIN[m[1].lower().replace(" ", "").replace("etal", "et al")]
    if m[1][0].isupper():
        words = words[0].upper() + words[1:]
    return _keep_final_period(m, words)


def _keep_final_period(m: re.Match[str], word: str) -> str:
    # The abbreviation's period also ends the sentence when nothing follows it.
    rest = m.string[m.end() :]
    return word + "." if m[0].endswith(".") and not rest.strip() else word


# Capitalised words that open sentences rather than name roads ("The Dr. said").
_NOT_ROAD_NAMES = frozenset(
    "The A An In On At Of By To For And But Or From With My Our Your His Her Their This That "
    "Ask Call See Tell Thank Dear Visit".split()
)


def _road(m: re.Match[str]) -> str:
    if m[1] in _NOT_ROAD_NAMES:
        return m[0]  # a title after all: the rules below read it
    return m[1] + m[2] + _keep_final_period(m, _ROADS[m[3]])


def _initialism(m: re.Match[str]) -> str:
    return _keep_final_period(m, " ".join(c.upper() for c in m[1] if c.isalpha()))


def expand_abbreviations(text: str) -> str:
    """Expand titles and common abbreviations ("Mr." -> "Mister", "No. 4" -> "Number 4"),
    roads after a name ("Smith Dr." -> "Smith Drive") and dotted initialisms ("U.S." -> "U S").

    Public because the benchmark applies the same expansion to LJSpeech's reference column,
    which leaves abbreviations abbreviated (the convention, not a difference in words).
    """
    text = _NUMBER_ABBREV_RE.sub(lambda m: f"{m[1]}umber{'s' if m[2] else ''}", text)
    text = _PAGES_RE.sub(r"pages \1 to \2", text)
    text = _ROAD_RE.sub(_road, text)
    text = _SAINT_RE.sub("Saint", text)
    text = _STREET_RE.sub(lambda m: _keep_final_period(m, "Street"), text)
    text = _BARE_TITLE_RE.sub(lambda m: _ABBREVIATIONS[m[1]], text)
    text = _ROAD_WORD_RE.sub(lambda m: _keep_final_period(m, _ROAD_WORDS[m[1]]), text)
    text = _ADDRESS_RE.sub(lambda m: _UNITS_OF_ADDRESS[m[1]], text)
    text = _ABBREV_RE.sub(lambda m: _keep_final_period(m, _ABBREVIATIONS[m[1]]), text)
    text = _LATIN_RE.sub(_latin, text)
    return _INITIALISM_RE.sub(_initialism, text)


