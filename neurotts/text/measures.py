"""Quantities: a number with a unit ("50 kg", "100km/h", "-5°C", "6 ft 2 in", "6'2\"").

Units are matched with their case ("MB" is megabytes, "Mb" megabits, "mm" millimetres) and
only right after a number, so the words "in", "min" or "m" elsewhere are left alone. Bare
"in" is an inch only glued to its number ("12in") or after feet ("6 ft 2 in"): "650 in all"
is not a length. "m" after a number is metres; a glued currency amount ("$5m") has already
been read as millions by then. A unit is singular after exactly 1, in a hyphenated adjective
("a 10-kg bag" -> "a ten-kilogram bag") and where the quantity describes the noun after it
("a 500 GB disk" -> "a five hundred gigabyte disk", "a 90° angle").
"""

from __future__ import annotations

import re

from neurotts.text.numbers import decimal

# symbol -> (singular, plural)
UNITS: dict[str, tuple[str, str]] = {
    "mm": ("millimeter", "millimeters"),
    "cm": ("centimeter", "centimeters"),
    "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"),
    "ft": ("foot", "feet"),
    "yd": ("yard", "yards"),
    "mi": ("mile", "miles"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "kg": ("kilogram", "kilograms"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "gal": ("gallon", "gallons"),
    "ms": ("millisecond", "milliseconds"),
    "sec": ("second", "seconds"),
    "secs": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "kB": ("kilobyte", "kilobytes"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Mb": ("megabit", "megabits"),
    "Gb": ("gigabit", "gigabits"),
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "MW": ("megawatt", "megawatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"),
    "mAh": ("milliamp hour", "milliamp hours"),
    "dB": ("decibel", "decibels"),
    "kcal": ("kilocalorie", "kilocalories"),
    "mph": ("mile per hour", "miles per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "rpm": ("revolution per minute", "revolutions per minute"),
    "fps": ("frame per second", "frames per second"),
    "bpm": ("beat per minute", "beats per minute"),
    "m^2": ("square meter", "square meters"),
    "km^2": ("square kilometer", "square kilometers"),
    "cm^2": ("square centimeter", "square centimeters"),
    "ft^2": ("square foot", "square feet"),
    "m^3": ("cubic meter", "cubic meters"),
    "cm^3": ("cubic centimeter", "cubic centimeters"),
    "cc": ("cubic centimeter", "cubic centimeters"),
    "sq ft": ("square foot", "square feet"),
}
# Units that only ever follow "/" ("m/s", "km/h" use "h" above).
_PER_ONLY = {"s": "second", "day": "day", "yr": "year", "week": "week"}
_PER = {**{u: names[0] for u, names in UNITS.items()}, **_PER_ONLY}

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"


def _alternatives(names: list[str]) -> str:
    # Longest first, so "kWh" is not read as "kW" followed by "h".
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


_UNIT_RE = re.compile(
    rf"(?<![\w.,])({_NUMBER})(\s?|-)({_alternatives(list(UNITS))})"
    rf"(?:/({_alternatives(list(_PER))}))?(?![\w^/])"
)
_FEET_INCHES_RE = re.compile(
    rf"(?<![\w.,])(\d+)\s?(?:ft|')\s?({_NUMBER})\s?(?:in\b\.?|''|\")"
)
_GLUED_INCHES_RE = re.compile(rf"(?<![\w.,])({_NUMBER})in\b")
_DEGREES_RE = re.compile(rf"(?<![\w.,])({_NUMBER})\s?°(?:\s?([CF])\b)?")
_SCALES = {"C": " Celsius", "F": " Fahrenheit"}


_ARTICLE_BEFORE_RE = re.compile(r"\b(?:a|an|A|An)\s+$")
_NOUN_AFTER_RE = re.compile(r"\s+(?!of\b|per\b)[a-z]")


def _describes_noun(m: re.Match[str]) -> bool:
    """"a 500 GB disk": an article before the quantity and a word after it."""
    before = m.string[max(0, m.start() - 4):m.start()]
    return bool(_ARTICLE_BEFORE_RE.search(before) and _NOUN_AFTER_RE.match(m.string, m.end()))


def _amount(number: str, names: tuple[str, str], adjective: bool = False) -> str:
    singular, plural = names
    return f"{decimal(number)}{'-' if adjective else ' '}{singular if number == '1' or adjective else plural}"


# A compass point ("100 W Main St" is West) and a letter easily taken for "1": units only
# when glued to their number ("60W", "2l") or hyphenated ("a 60-W bulb").
_GLUED_ONLY = frozenset("Wl")


def _unit(m: re.Match[str]) -> str:
    if m[3] in _GLUED_ONLY and m[2].isspace():
        return m[0]
    singular = UNITS[m[3]][0]
    names = (singular, singular) if _describes_noun(m) else UNITS[m[3]]
    words = _amount(m[1], names, m[2] == "-")
    if m[4]:
        words += f" per {_PER[m[4]]}"
    return words


def _degrees(m: re.Match[str]) -> str:
    names = ("degree", "degree") if _describes_noun(m) else ("degree", "degrees")
    return _amount(m[1], names) + (_SCALES[m[2]] if m[2] else "")


def expand_measures(text: str) -> str:
    """Read quantities with units; run before plain numbers so the unit reads with its number."""
    text = _FEET_INCHES_RE.sub(
        lambda m: f"{_amount(m[1], UNITS['ft'])} {_amount(m[2], ('inch', 'inches'))}", text)
    text = _GLUED_INCHES_RE.sub(lambda m: _amount(m[1], ("inch", "inches")), text)
    text = _DEGREES_RE.sub(_degrees, text)
    return _UNIT_RE.sub(_unit, text)
