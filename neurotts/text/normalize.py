"""English text normalisation: turn what people (and LJSpeech's books) write into words.

The rules are tuned to how LJSpeech's own ``normalized`` column reads numbers, because a
model trained on LJSpeech audio learned to say them that way: years in two halves
("1865" -> "eighteen sixty-five", "1803" -> "eighteen oh three"), cardinals without "and"
("199" -> "one hundred ninety-nine"), dates as cardinals ("November 22" -> "November
twenty-two"), "No. 4" -> "Number four", "£10" -> "ten pounds", "$21.45" -> "twenty-one dollars,
forty-five cents", regnal numerals ("George III" -> "George the third").

It also reads what people type today, each kind in its own module: Unicode (``charset``:
read, silent, or left for the frontend to drop and report, never spelled as a transliterated
name), abbreviations in context and dotted initialisms (``abbreviations``), clock times, phone
and emergency numbers, versions, codes like "101B" and web addresses (``codes``), quantities
with units (``measures``); the number words themselves come from ``numbers``. No digit leaves
this module unspoken: one the rules did not take is still read as a number.

Case is preserved (the character frontend lowercases later; capitals help the rules here,
e.g. telling "St. Paul" from "Elm St."). Text inside ``{...}`` is inline ARPAbet and passes
through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from neurotts.text.abbreviations import expand_abbreviations
from neurotts.text.charset import to_ascii
from neurotts.text.codes import (
    expand_clock_times,
    expand_digit_letter,
    expand_handles,
    expand_phone_numbers,
    expand_versions,
)
from neurotts.text.measures import expand_measures
from neurotts.text.numbers import (
    as_int,
    cardinal,
    decimal,
    digits,
    ordinal,
    pluralize_last,
    year,
)

_INLINE_PHONES = re.compile(r"(\{[^{}]*\})")


# ---------------------------------------------------------------------------------------------
# Roman numerals
# ---------------------------------------------------------------------------------------------

_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_VALID_ROMAN = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
# Names that take a regnal number. Only after one of these is a lone "I", "V" or "X" a
# numeral; longer numerals ("III", "VIII") are read after any capitalised name.
_REGNAL_NAMES = frozenset(
    "Alexander Alfonso Anne Charles Clement Constantine Edmund Edward Elizabeth Ferdinand "
    "Francis Frederick George Gregory Henry Innocent James John Leo Louis Mary Napoleon "
    "Nebuchadnezzar Nicholas Paul Peter Philip Pius Richard Rameses Ramses Stephen Urban "
    "Victor Victoria William".split()
)
# Words after which a numeral is a plain number: "Chapter IV" -> "Chapter four".
_COUNTING_WORDS = frozenset(
    "Act Article Book Canto Chapter Class Part Plate Psalm Section Table Title Vol Volume "
    "Appendix Figure Fig Schedule Stage Type Phase Lesson Number War".split()
)
_ROMAN_RE = re.compile(r"\b([A-Z][A-Za-z]+)(\s+)([IVXLCDM]+)\b")
# Capitalised words that commonly precede an acronym-like "II" without it being a regnal
# number (sentence-initial function words).
_NOT_NAMES = frozenset("The A An In On At Of By To For And But Or From With".split())
# Regnal numbers are small; "Washington DC" or "Smith MD" must not become ordinals, so after a
# name only numerals made of I, V and X count.
_SMALL_ROMAN = re.compile(r"[IVX]+")


def roman_to_int(s: str) -> int:
    """Value of a well-formed Roman numeral (uppercase)."""
    total = 0
    for c, nxt in zip(s, s[1:] + " ", strict=True):
        v = _ROMAN_VALUES[c]
        total += -v if nxt != " " and _ROMAN_VALUES[nxt] > v else v
    return total


def _roman(m: re.Match[str]) -> str:
    name, space, numeral = m[1], m[2], m[3]
    if not _VALID_ROMAN.fullmatch(numeral):
        return m[0]
    if name.capitalize() in _COUNTING_WORDS:  # also "CHAPTER IV" in a heading
        return f"{name}{space}{cardinal(roman_to_int(numeral))}"
    if not _SMALL_ROMAN.fullmatch(numeral):
        return m[0]
    # A lone "I", "V" or "X" is a numeral only after a ruler's name ("Charles I"); after
    # other words it is the pronoun or a letter.
    if name in _REGNAL_NAMES or (len(numeral) > 1 and name not in _NOT_NAMES):
        return f"{name}{space}the {ordinal(roman_to_int(numeral))}"
    return m[0]


def expand_roman(text: str) -> str:
    return _ROMAN_RE.sub(_roman, text)


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------

_NUM = r"\d{1,3}(?:,\d{3})+|\d+"  # "1,000,000" or "1000"


# A magnitude after an amount: a word ("$3 million") or a suffix glued to it ("$2.5M", "£4bn").
_SCALE = r"(\s+(?:thousand|million|billion|trillion)\b|(?:k|mn|m|bn|b|tn|t)\b)?"
_SCALE_NAMES = {"k": "thousand", "m": "million", "mn": "million", "b": "billion",
                "bn": "billion", "t": "trillion", "tn": "trillion"}
_POUNDS_RE = re.compile(
    rf"£\s?({_NUM})(?:\.(\d+))?{_SCALE}(?:\s+(\d+)s\.?)?(?:\s+(\d+)d\.?)?", re.IGNORECASE
)
_DOLLARS_RE = re.compile(rf"\$\s?({_NUM})(?:\.(\d+))?{_SCALE}", re.IGNORECASE)
_EUROS_RE = re.compile(rf"€\s?({_NUM})(?:\.(\d+))?{_SCALE}", re.IGNORECASE)


def _unit(n: int, singular: str, plural: str) -> str:
    return f"{cardinal(n)} {singular if n == 1 else plural}"


def _money(major: str, minor: str | None, scale: str | None, names: tuple[str, ...]) -> str:
    one, many, cent, cents = names
    amount = cardinal(as_int(major)) + (f" point {digits(minor)}" if minor else "")
    if scale:
        # "$3 million" -> "three million dollars"; "$2.5M" -> "two point five million dollars".
        scale = scale.strip().lower()
        return f"{amount} {_SCALE_NAMES.get(scale, scale)} {many}"
    if minor is not None and len(minor) != 2:
        return f"{amount} {many}"  # "$3.5" is not dollars and cents: "three point five dollars"
    if as_int(major) == 0 and minor and int(minor):
        return _unit(int(minor), cent, cents)  # "$0.50" -> "fifty cents"
    words = _unit(as_int(major), one, many)
    if minor and int(minor):
        words += ", " + _unit(int(minor), cent, cents)
    return words


def _pounds(m: re.Match[str]) -> str:
    words = _money(m[1], m[2], m[3], ("pound", "pounds", "penny", "pence"))
    if m[4]:
        words += " " + _unit(int(m[4]), "shilling", "shillings")
    if m[5]:
        words += " " + _unit(int(m[5]), "penny", "pence")
    return words


def _dollars(m: re.Match[str]) -> str:
    return _money(m[1], m[2], m[3], ("dollar", "dollars", "cent", "cents"))


def _euros(m: re.Match[str]) -> str:
    return _money(m[1], m[2], m[3], ("euro", "euros", "cent", "cents"))


def _signed(s: str) -> str:
    """An exponent: ``"-3"`` -> ``"minus three"``; a letter stays a letter."""
    if s.isalpha():
        return s
    return ("minus " if s.startswith("-") else "") + cardinal(int(s.lstrip("+-")))


# "1e30", "6.02E-23": the mantissa times a power of ten.
_SCIENTIFIC_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?!\w|\.\d)")
# "10^30", "x^2": a power. Squares and cubes are said as such. A letter after a number is a
# unit ("5 m^2"), read by the measure rules.
_POWER_RE = re.compile(
    r"(?<![\w.])(?<!\d\s)(\d[\d,]*(?:\.\d+)?|[A-Za-z])\s*\^\s*([+-]?\d+|[A-Za-z])(?!\w|\.\d)"
)
_POWER_NAMES = {"2": "squared", "3": "cubed"}


def _scientific(m: re.Match[str]) -> str:
    return f"{decimal(m[1])} times ten to the power of {_signed(m[2])}"


def _power(m: re.Match[str]) -> str:
    base = m[1] if m[1].isalpha() else decimal(m[1])
    exponent = _POWER_NAMES.get(m[2]) or f"to the power of {_signed(m[2])}"
    return f"{base} {exponent}"


_MONTHS = (
    "January February March April May June July August September October November December"
).split()
# Dates with slashes are read month first ("12/25/2023", the American order) unless the first
# number cannot be a month ("25/12/2023"); ISO dates are "2023-12-25". Days are cardinals,
# as LJSpeech reads dates ("December twenty-five, twenty twenty-three").
_SLASH_DATE_RE = re.compile(r"(?<![\w/.])(\d{1,2})/(\d{1,2})/(\d{4}|\d\d)(?![\w/]|\.\d)")
_ISO_DATE_RE = re.compile(r"(?<![\w/.-])(\d{4})-(\d\d)-(\d\d)(?![\w/-]|\.\d)")


def _date(month: int, day: int, year_digits: str) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    if len(year_digits) == 4:
        said = year(int(year_digits))
    else:  # "'05" -> "oh five", "'23" -> "twenty-three"
        said = f"oh {digits(year_digits[1])}" if year_digits[0] == "0" else cardinal(int(year_digits))
    return f"{_MONTHS[month - 1]} {cardinal(day)}, {said}"


def _slash_date(m: re.Match[str]) -> str:
    first, second = int(m[1]), int(m[2])
    month, day = (first, second) if first <= 12 else (second, first)
    return _date(month, day, m[3]) or m[0]


def _iso_date(m: re.Match[str]) -> str:
    return _date(int(m[2]), int(m[3]), m[1]) or m[0]


# Proper fractions with a denominator people name ("3/4", "2 1/2", "5/16"). Others ("9/11",
# "24/7") are read as two numbers: the slash becomes a space at the end.
_FRACTION_RE = re.compile(r"(?<![\w/.,])(?:(\d+)\s+)?(\d{1,3})/(\d{1,3})(?![\w/]|[.,]\d)")
_FRACTION_DENOMINATORS = frozenset([*range(2, 11), 12, 16, 32, 64, 100])
_FRACTION_NAMES = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _fraction(m: re.Match[str]) -> str:
    num, den = int(m[2]), int(m[3])
    if den not in _FRACTION_DENOMINATORS or not 1 <= num < den:
        return m[0]
    one, many = _FRACTION_NAMES.get(den) or (ordinal(den), ordinal(den) + "s")
    if m[1] is None:
        return f"{cardinal(num)} {one if num == 1 else many}"
    if num == 1:  # "2 1/2" -> "two and a half", "3 1/8" -> "three and an eighth"
        article = "an" if one[0] in "aeiou" else "a"
        return f"{cardinal(as_int(m[1]))} and {article} {one}"
    return f"{cardinal(as_int(m[1]))} and {cardinal(num)} {many}"


# Labels ("Exhibit No. 133", "page 249", "frame 313") are read in pairs the way a year is
# ("one thirty-three"), which is also how LJSpeech's readers said them.
_LABEL_RE = re.compile(
    r"\b((?:Exhibits?|[Pp]ages?|[Ff]rames?)(?:\s+Numbers?)?\s+)(\d{3,4})\b(?![.,]\d)"
)
# House numbers before a street name: three digits one by one with "oh" for zero
# ("602 Elsbeth Street" -> "six oh two"), four digits in pairs ("1026" -> "ten twenty-six").
_STREETS = "Street|Avenue|Road|Drive|Boulevard|Lane|Place|Square|Parkway|Highway|Way|Court"
_HOUSE_RE = re.compile(rf"\b(\d{{3,4}})(?=(?:\s+[A-Z][a-z]+){{1,3}}\s+(?:{_STREETS})\b)")


def _label(m: re.Match[str]) -> str:
    return m[1] + year(int(m[2]))


def _house(m: re.Match[str]) -> str:
    if len(m[1]) == 4:
        return year(int(m[1]))
    return " ".join("oh" if d == "0" else cardinal(int(d)) for d in m[1])


# Codes of capitals glued to digits ("C2766", "VC836") are spelled out: letters one by one,
# digits one by one when there are three or more of them.
_CODE_RE = re.compile(r"\b([A-Z]{1,3})(\d+)\b")
# Post office box numbers are read digit by digit ("Box 2915" -> "two nine one five").
_BOX_RE = re.compile(r"\b([Bb]ox\s+)(\d+)\b")


def _code(m: re.Match[str]) -> str:
    number = digits(m[2]) if len(m[2]) >= 3 else cardinal(int(m[2]))
    return f"{' '.join(m[1])} {number}"


_ORDINAL_RE = re.compile(rf"\b({_NUM})(st|nd|rd|th)\b", re.IGNORECASE)
_DECADE_RE = re.compile(r"\b(1[0-9]|20)(\d0)'?s\b")
_SHORT_DECADE_RE = re.compile(r"(?<![\w'])'?([2-9]0)'?s\b")  # "the '60s", "the 20s"
_DECIMAL_RE = re.compile(rf"\b({_NUM})\.(\d+)\b")
_CALIBRE_RE = re.compile(r"(?<![\w.])\.(\d{2,3})\b")  # ".38 caliber" -> "thirty-eight"
_PERCENT_RE = re.compile(r"(\d)\s?%")
_MINUS_RE = re.compile(r"(?<![\w-])-(?=\d)")  # "-5" but not the range "3-5"
_YEAR_RE = re.compile(r"(?<![\d,.])\b(1\d\d\d|20\d\d)\b(?![.,]\d)")
# Any number marked with an era is a year: "2250 B.C." -> "twenty-two fifty B.C.".
_ERA_RE = re.compile(r"\b(\d{3,4})(?=\s*(?:B\.?\s?C|A\.?\s?D|B\.?\s?C\.?\s?E|C\.?\s?E)\b)")
_SMALL_YEAR_RE = re.compile(r"(?<![\d,.])\b([1-9]\d\d)\b(?![.,]\d)")
_NUMBER_RE = re.compile(rf"\b({_NUM})\b")
# Digits glued to words ("mp3", "12kg") are read apart from them; "133-A" (an exhibit's
# suffix letter) is read "one thirty-three A", without the hyphen's pause.
_LETTER_DIGIT_RE = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z]{2})")
_DIGIT_HYPHEN_LETTER_RE = re.compile(r"(?<=\d)-(?=[A-Z]\b)")
# A four-digit number is read as a year ("1865" -> "eighteen sixty-five") unless it counts
# things ("1308 prisoners", "1063 sleeping cells"): a year is not followed by a plural noun.
# A word ending in "s" after the number (optionally after an "-ing"/"-al" adjective, as in
# "sleeping cells") marks a count, except after a word that introduces a date ("in 1818
# prisoners awaiting trial ...", "the 1780 riots").
_COUNT_FOLLOWER_RE = re.compile(r"\s+(?:[a-z]+ing\s+|[a-z]+al\s+)?[a-z]+[^s'\W]s\b")
_NOT_PLURAL = frozenset("was has is this his its thus as us".split())
_DATE_INTRODUCERS = frozenset(
    "the in of since until till by about after before during from to between and or year years "
    "summer spring autumn fall winter early late circa dated c "
    "january february march april may june july august september october november december".split()
)
_PREVIOUS_WORD_RE = re.compile(r"([A-Za-z]+)\W*$")


def _previous_word(m: re.Match[str]) -> str:
    prev = _PREVIOUS_WORD_RE.search(m.string, 0, m.start())
    return prev[1].lower() if prev else ""


def _counts_things(m: re.Match[str]) -> bool:
    follower = _COUNT_FOLLOWER_RE.match(m.string, m.end())
    return bool(follower) and follower[0].split()[-1] not in _NOT_PLURAL


def _year_or_cardinal(m: re.Match[str]) -> str:
    n = int(m[1])
    if _previous_word(m) not in _DATE_INTRODUCERS and _counts_things(m):
        return cardinal(n)
    return year(n)


def _ancient_year_or_cardinal(m: re.Match[str]) -> str:
    """Three-digit numbers introduced by "in" are years in history books ("in 605")."""
    n = int(m[1])
    if _previous_word(m) in ("in", "year") and not _counts_things(m):
        return year(n)
    return cardinal(n)


def _number(m: re.Match[str]) -> str:
    s = m[1]
    if len(s) > 1 and s.startswith("0"):
        return digits(s)  # "007", zip codes: said digit by digit
    return cardinal(as_int(s))


# More digits than any named number has (inflect stops below 10**36; Python's int() refuses
# over 4300 digits): read one digit at a time before any rule tries to parse the value.
_LONG_NUMBER_RE = re.compile(r"(\d(?:,?\d){36,})(?:\.(\d+)|(?:st|nd|rd|th)\b)?", re.IGNORECASE)


def _long_number(m: re.Match[str]) -> str:
    if m[2]:
        return f" {digits(m[1])} point {digits(m[2])} "
    if m[0][-1].isalpha():  # "...0th": the last digit takes the ordinal ending
        return f" {digits(m[1][:-1])} {ordinal(int(m[1][-1]))} "
    return f" {digits(m[1])} "


_EXTRA_CURRENCIES = (
    (re.compile(rf"¥\s?({_NUM})(?:\.(\d+))?{_SCALE}", re.IGNORECASE), ("yen", "yen", "sen", "sen")),
    (re.compile(rf"₹\s?({_NUM})(?:\.(\d+))?{_SCALE}", re.IGNORECASE),
     ("rupee", "rupees", "paisa", "paise")),
)
_CENTS_RE = re.compile(rf"({_NUM})\s?¢")
_LEADING_PLUS_RE = re.compile(r"(?<![\w+])\+(?=\d)")  # "+5" (a phone number took its "+")
# A plural of a number ("5s" -> "fives") and digits glued to one letter ("101B") after a
# decimal ("4.5G" -> "four point five G") are read by codes.expand_digit_letter; any digit no
# rule took is still read, never left for the symbol set to drop.
_ANY_DIGITS_RE = re.compile(r"(\d+)")


def _apart(read: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
    """``read``, with a space before its words when a letter is glued to the match ("LjE$3")."""
    def spaced(m: re.Match[str]) -> str:
        glued = m.start() > 0 and m.string[m.start() - 1].isalnum()
        return (" " if glued else "") + read(m)
    return spaced


def _currencies(text: str) -> str:
    text = _POUNDS_RE.sub(_apart(_pounds), text)
    text = _DOLLARS_RE.sub(_apart(_dollars), text)
    text = _EUROS_RE.sub(_apart(_euros), text)
    for pattern, names in _EXTRA_CURRENCIES:
        text = pattern.sub(_apart(lambda m, names=names: _money(m[1], m[2], m[3], names)), text)
    return _CENTS_RE.sub(lambda m: _unit(as_int(m[1]), "cent", "cents"), text)


def expand_numbers(text: str) -> str:
    """Replace every digit sequence with words; order matters (most specific rule first)."""
    text = _LONG_NUMBER_RE.sub(_long_number, text)
    text = _currencies(text)
    text = expand_phone_numbers(text)
    text = _LEADING_PLUS_RE.sub("plus ", text)
    text = expand_versions(text)
    text = _SCIENTIFIC_RE.sub(_scientific, text)
    text = _POWER_RE.sub(_power, text)
    text = _SLASH_DATE_RE.sub(_slash_date, text)
    text = _ISO_DATE_RE.sub(_iso_date, text)
    text = _FRACTION_RE.sub(_fraction, text)
    text = _PERCENT_RE.sub(r"\1 percent", text)
    text = _MINUS_RE.sub("minus ", text)
    text = expand_measures(text)
    text = _LABEL_RE.sub(_label, text)
    text = _HOUSE_RE.sub(_house, text)
    text = _ERA_RE.sub(lambda m: year(int(m[1])), text)
    text = _CODE_RE.sub(_code, text)
    text = _BOX_RE.sub(lambda m: m[1] + digits(m[2]), text)
    text = _DECADE_RE.sub(lambda m: pluralize_last(year(int(m[1] + m[2]))), text)
    text = _SHORT_DECADE_RE.sub(lambda m: pluralize_last(cardinal(int(m[1]))), text)
    text = _ORDINAL_RE.sub(lambda m: ordinal(as_int(m[1])), text)
    text = _DECIMAL_RE.sub(lambda m: decimal(m[0]), text)
    text = _CALIBRE_RE.sub(lambda m: cardinal(int(m[1])), text)
    text = _LETTER_DIGIT_RE.sub(" ", text)
    text = _DIGIT_HYPHEN_LETTER_RE.sub(" ", text)
    text = expand_digit_letter(text)
    text = _YEAR_RE.sub(_year_or_cardinal, text)
    text = _SMALL_YEAR_RE.sub(_ancient_year_or_cardinal, text)
    text = _NUMBER_RE.sub(_number, text)
    return _ANY_DIGITS_RE.sub(lambda m: f" {_number(m)} ", text)


# ---------------------------------------------------------------------------------------------
# Symbols and equations
# ---------------------------------------------------------------------------------------------

_AMPERSAND_RE = re.compile(r"\s*&\s*")
_ABOUT_RE = re.compile(r"~\s?(?=\d)")  # "~5 km" -> "about five kilometers"
_PLUS_RE = re.compile(r"(?<=\w)\s*\+\s*(?=\w)")
# "2x4" is a size ("two by four"); "10x faster" a factor ("ten times faster").
_BY_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)x(?=\d+(?:\.\d+)?(?![\w.]))")
_FACTOR_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)x(?![\w])")
_STAR_TIMES_RE = re.compile(r"(?<=\d)\s*\*\s*(?=\d)")
# In an equation (text with "="), operators between numbers are read: "3 x 4 = 12". Outside
# one "x" stays a letter ("6.5 x 4 x scope", a rifle's sight, is read "x" in LJSpeech).
_EQUATION_OPERATORS = (
    (re.compile(r"(?<=\d)\s*[xX]\s*(?=\d)"), " times "),
    (re.compile(r"(?<=\d)\s+-\s+(?=\d)"), " minus "),
    (re.compile(r"(?<=\d)\s*/\s*(?=\d)"), " divided by "),
)
_COMPARISONS = (
    (re.compile(r"\s*<=\s*"), " is less than or equal to "),
    (re.compile(r"\s*>=\s*"), " is greater than or equal to "),
    (re.compile(r"\s*!=\s*"), " is not equal to "),
    (re.compile(r"\s*==?\s*"), " equals "),
    (re.compile(r"(?<=\w)\s+<\s+(?=[\w-])"), " is less than "),
    (re.compile(r"(?<=\w)\s+>\s+(?=[\w-])"), " is greater than "),
)


def expand_symbols(text: str) -> str:
    """Symbols read as words before the number rules see them: "&", "~5", "+", equations."""
    text = _AMPERSAND_RE.sub(" and ", text)
    text = _ABOUT_RE.sub("about ", text)
    text = _PLUS_RE.sub(" plus ", text)
    text = _BY_RE.sub(r"\1 by ", text)
    text = _FACTOR_RE.sub(r"\1 times", text)
    text = _STAR_TIMES_RE.sub(" times ", text)
    if "=" in text:
        for pattern, words in _EQUATION_OPERATORS:
            text = pattern.sub(words, text)
    for pattern, words in _COMPARISONS:
        text = pattern.sub(words, text)
    return text


# ---------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------

_WHITESPACE_RE = re.compile(r"\s+")
# Square brackets (editorial insertions in LJSpeech's books) are read like parentheses; the
# symbol sets carry only the latter.
_BRACKETS = str.maketrans("[]", "()")
# Signs the amount, measure and operator rules did not consume (no number next to them) are
# still words: "in €", "a 90° turn" was read with its number, "C++", "meet @ noon".
_LEFTOVER_SIGNS = (("£", " pounds "), ("€", " euros "), ("¥", " yen "), ("₹", " rupees "),
                   ("¢", " cents "), ("°", " degrees "), ("%", " percent "), ("+", " plus "),
                   ("@", " at "))
# A slash the number rules left ("and/or", "9/11") separates words; dropping it would glue them.
_SLASH_RE = re.compile(r"\s*/\s*")


def _normalize_plain(text: str) -> str:
    text = to_ascii(text).translate(_BRACKETS)
    text = expand_handles(text)
    text = expand_clock_times(text)  # before abbreviations: "4 p.m." is read with its number
    text = expand_symbols(text)
    text = expand_abbreviations(text)
    text = expand_roman(text)
    text = expand_numbers(text)
    for sign, words in _LEFTOVER_SIGNS:
        text = text.replace(sign, words)
    return _SLASH_RE.sub(" ", text)


def normalize(text: str) -> str:
    """Normalise raw English text into speakable words; ``{...}`` phone groups pass through."""
    parts = _INLINE_PHONES.split(text)
    # split() with a capturing group alternates plain text (even) and brace groups (odd).
    out = [p if i % 2 else _normalize_plain(p) for i, p in enumerate(parts)]
    return _WHITESPACE_RE.sub(" ", "".join(out)).strip()
