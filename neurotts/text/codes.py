"""Numbers that name rather than count: clock times, phone numbers, versions, codes.

- clock times: "4:30pm" -> "four thirty P M", "4 p.m." -> "four P M", "16:45:10" ->
  "sixteen forty-five and ten seconds";
- phone numbers, digit by digit in their groups: "555-1234" -> "five five five, one two
  three four", "+44 20 7946 0958", "(555) 123-4567", "1-800-555-0199";
- 911 is always "nine one one"; any number of three or more digits right after "call",
  "dial", "ring", "phone", "text" or "fax" (optionally "us on", "at") is read digit by digit
  ("dial 999", "call 112"): elsewhere 999 and 112 stay quantities ("999 bottles");
- versions and addresses: "v2", "Version 2.0.1" -> "version two point oh point one",
  "192.168.1.1" -> "one nine two dot one six eight dot one dot one";
- digits glued to one letter: "101B" -> "one oh one B", "3D" -> "three D", "1080p";
  a plural "s" makes a plural ("5s" -> "fives").

Spelled letters are written as capitals so the ARPAbet frontend says their names ("B",
not the article "a" for "A").
"""

from __future__ import annotations

import re

from neurotts.text.numbers import cardinal, decimal, digits, label_number, pluralize_last

# -- clock times --------------------------------------------------------------------------------

_AM_PM = r"([AaPp])\.?\s?[Mm]\b(\.?)"
_CLOCK_RE = re.compile(rf"(?<![\w:.])(\d{{1,2}})(?::(\d\d))?(?::(\d\d))?\s?{_AM_PM}")
_TIME_RE = re.compile(r"(?<![\w:.])(\d{1,2}):(\d\d)(?::(\d\d))?(?![\w:]|[.,]\d)")


def _minutes(minute: int) -> str:
    return f"oh {cardinal(minute)}" if minute < 10 else cardinal(minute)


def _seconds(s: str | None) -> str:
    return f" and {cardinal(int(s))} second{'' if s == '01' else 's'}" if s else ""


def _clock(m: re.Match[str]) -> str:
    hour, minute = int(m[1]), int(m[2] or 0)
    if not 0 <= hour <= 12 or minute > 59:
        return m[0]
    said = cardinal(hour or 12)
    if minute:
        said += " " + _minutes(minute)
    said += _seconds(m[3]) + f" {m[4].upper()} M"
    # "p.m." also ends the sentence when the text ends there or a new sentence follows.
    rest = m.string[m.end():]
    return said + "." if m[5] and (not rest.strip() or re.match(r"\s+[A-Z]", rest)) else said


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m[1]), int(m[2])
    if hour > 24 or minute > 59:
        return f"{cardinal(hour)} {cardinal(minute)}"  # a ratio or score, not a time
    said = f"{cardinal(hour)} " + (_minutes(minute) if minute else "o'clock")
    return said + _seconds(m[3])


def expand_clock_times(text: str) -> str:
    """Times of day; runs before abbreviations so "p.m." is read here, with its number."""
    text = _CLOCK_RE.sub(_clock, text)
    return _TIME_RE.sub(_time, text)


# -- phone numbers --------------------------------------------------------------------------------

_PHONE_RE = re.compile(
    r"(?<![\w.,+/-])"
    r"(?:\+\d{1,3}(?:[\s.-]\(?\d{1,5}\)?){2,5}"  # international: "+44 20 7946 0958"
    r"|(?:1[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[.-]\d{4}"  # "(555) 123-4567", "1-800-..."
    r"|\d{3}[.-]\d{4})"  # local: "555-1234"
    r"(?![\w-]|[.,]\d)"
)
_GROUP_RE = re.compile(r"\+?\d+")
_DIAL_RE = re.compile(
    r"\b((?:call|dial|ring|phone|text|fax)(?:ed|ing|s)?\s+(?:(?:us|me|them|him|her)\s+)?"
    r"(?:(?:on|at)\s+)?)(\d{3,}(?:[\s-]\d{2,})*)\b(?![.,]\d)",
    re.IGNORECASE,
)
_NINE_ONE_ONE_RE = re.compile(r"(?<![\w.,$/-])911(?![\w/]|[.,]\d)")


def _phone(m: re.Match[str]) -> str:
    groups = []
    for g in _GROUP_RE.findall(m[0]):
        groups.append(("plus " if g.startswith("+") else "") + digits(g))
    return ", ".join(groups)


def expand_phone_numbers(text: str) -> str:
    text = _PHONE_RE.sub(_phone, text)
    text = _DIAL_RE.sub(lambda m: m[1] + ", ".join(digits(g) for g in re.split(r"[\s-]", m[2])), text)
    return _NINE_ONE_ONE_RE.sub("nine one one", text)


# -- versions and addresses ------------------------------------------------------------------------

_VERSION_WORD_RE = re.compile(
    r"\b((?:[Vv]ersion|[Rr]elease|[Bb]uild|[Ff]irmware|[Pp]atch)\s+)(\d+(?:\.\d+)+)(?![\w]|\.\d)"
)
# "v2", "v10.4", "V2.1"; a capital V before bare digits is a serial number ("V510210").
_V_RE = re.compile(r"(?<![\w.])(?:v(\d{1,3}(?:\.\d+)*)|V(\d+(?:\.\d+)+))(?![\w]|\.\d)")
_DOTTED_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+){2,3})(?![\w]|\.\d)")


def _component(s: str) -> str:
    return "oh" if s == "0" else label_number(s) if s.startswith("0") else cardinal(int(s))


def version(s: str) -> str:
    """``"2.0.1"`` -> ``"two point oh point one"``."""
    return " point ".join(_component(part) for part in s.split("."))


def _dotted(m: re.Match[str]) -> str:
    parts = m[1].split(".")
    if len(parts) == 4:  # an IP address: "ten dot zero dot zero dot one", "one nine two dot ..."
        return " dot ".join(digits(p) if len(p) > 2 else cardinal(int(p)) for p in parts)
    return version(m[1])


def expand_versions(text: str) -> str:
    text = _VERSION_WORD_RE.sub(lambda m: m[1] + version(m[2]), text)
    text = _V_RE.sub(lambda m: "version " + version(m[1] or m[2]), text)
    return _DOTTED_RE.sub(_dotted, text)


# -- digits glued to a letter ----------------------------------------------------------------------

_DIGITS_LETTER_RE = re.compile(r"(?<![\w.,])(\d+)(?:\.(\d+))?([A-Za-z])\b")


def _digits_letter(m: re.Match[str]) -> str:
    if m[2]:
        return f"{decimal(m[1] + '.' + m[2])} {m[3].upper()}"  # "4.5G"
    if m[3] == "s":
        return pluralize_last(cardinal(int(m[1])))  # "5s" -> "fives"
    return f"{label_number(m[1])} {m[3].upper()}"


def expand_digit_letter(text: str) -> str:
    """``"101B"`` -> ``"one oh one B"``; runs after units and ordinals took theirs."""
    return _DIGITS_LETTER_RE.sub(_digits_letter, text)


# -- addresses on the web, handles, hashtags ------------------------------------------------------

# The scheme is silent: nobody says "h t t p s colon slash slash" before an address.
_URL_SCHEME_RE = re.compile(r"\bhttps?://", re.IGNORECASE)
_EMAIL_RE = re.compile(r"(?<![\w.+-])([A-Za-z0-9._+-]+)@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b")
_TOP_DOMAINS = "com|org|net|edu|gov|io|ai|dev|app|info|biz|co|uk|us|de|fr|eu"
_DOMAIN_RE = re.compile(
    rf"(?<![\w.@])((?:[A-Za-z0-9-]+\.)+(?:{_TOP_DOMAINS}))\b(?!\.\w)((?:/[A-Za-z0-9_-]+)*)/?"
)
_HANDLE_RE = re.compile(r"(?<![\w@])@(?=\w)")
_HASHTAG_RE = re.compile(r"(?<!\S)#(?=[A-Za-z])")
# "#1" is "number one"; "#1e30" is left for the scientific rule (and its "#" for the report).
_NUMBER_SIGN_RE = re.compile(r"(?<![\w#])#\s?(?=\d+(?!\w|[.,]\d))")


def _address(s: str) -> str:
    parts = ("W W W" if p == "www" else p for p in s.replace("_", " underscore ").split("."))
    return " dot ".join(parts)


def expand_handles(text: str) -> str:
    """``"a.b@x.com"`` -> ``"a dot b at x dot com"``, ``"#1"`` -> ``"number 1"``, ``"@bob"``
    -> ``"at bob"``, ``"#NeverAgain"`` -> ``"hashtag NeverAgain"``."""
    text = _URL_SCHEME_RE.sub("", text)
    text = _EMAIL_RE.sub(lambda m: f"{_address(m[1])} at {_address(m[2])}", text)
    text = _DOMAIN_RE.sub(lambda m: _address(m[1]) + m[2].replace("/", " slash "), text)
    text = _HANDLE_RE.sub("at ", text)
    text = _HASHTAG_RE.sub("hashtag ", text)
    return _NUMBER_SIGN_RE.sub("number ", text)
