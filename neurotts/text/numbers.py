"""Numbers said as words: cardinals, ordinals, years, digit strings, decimals.

The readings follow LJSpeech's normalised column, because a model trained on its audio learned
to say numbers that way: cardinals without "and" ("one hundred ninety-nine"), years in two
halves ("eighteen oh three"), digits one at a time with "zero".
"""

from __future__ import annotations

from functools import lru_cache

import inflect


@lru_cache(maxsize=1)
def _engine() -> inflect.engine:
    # Building an inflect engine is cheap but not free; one is enough for the process.
    return inflect.engine()


# inflect names numbers up to decillions; from 10**36 on it raises NumOutOfRangeError.
_INFLECT_LIMIT = 10**36

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def as_int(s: str) -> int:
    """``"1,000"`` -> ``1000``."""
    return int(s.replace(",", ""))


def cardinal(n: int) -> str:
    """``199`` -> ``"one hundred ninety-nine"``: LJSpeech never says "and" inside numbers.

    Numbers too large to have a name (10**36 and up) are read digit by digit.
    """
    if abs(n) >= _INFLECT_LIMIT:
        return ("minus " if n < 0 else "") + digits(str(abs(n)))
    return _engine().number_to_words(n, andword="", comma="")


def ordinal(n: int) -> str:
    """``22`` -> ``"twenty-second"``."""
    eng = _engine()
    return eng.number_to_words(eng.ordinal(n), andword="", comma="")


def year(n: int) -> str:
    """Read ``n`` the way a year is said: in two halves, "oh" for a zero tens digit."""
    if n < 100 or n % 1000 == 0 or 2000 < n < 2010:
        return cardinal(n)  # "two thousand", "two thousand five"
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {cardinal(low)}"
    return f"{cardinal(high)} {cardinal(low)}"


def digits(s: str) -> str:
    """Read digits one at a time ("007" -> "zero zero seven"); separators are skipped."""
    return " ".join(DIGIT_NAMES[int(d)] for d in s if d.isdigit())


def digits_oh(s: str) -> str:
    """Digits one at a time with "oh" for zero, as room and house numbers are said."""
    return " ".join("oh" if d == "0" else DIGIT_NAMES[int(d)] for d in s if d.isdigit())


def decimal(s: str) -> str:
    """``"6.02"`` -> ``"six point zero two"``; ``"1,000"`` -> ``"one thousand"``."""
    whole, _, fraction = s.partition(".")
    return cardinal(as_int(whole)) + (f" point {digits(fraction)}" if fraction else "")


def label_number(s: str) -> str:
    """A number that names rather than counts (room 101, apartment 4, a 3D model).

    One or two digits are a cardinal; three or four are said in two halves like a year
    ("one oh one", "two twenty-one", "ten twenty-six"); a leading zero or more digits are
    said one by one.
    """
    if s[0] == "0" or len(s) > 4:
        return digits_oh(s)  # "07", "12345"
    if len(s) <= 2:
        return cardinal(int(s))
    return year(int(s))


def pluralize_last(words: str) -> str:
    """"nineteen sixty" -> "nineteen sixties"; "eighteen hundred" -> "eighteen hundreds"."""
    head, _, last = words.rpartition(" ")
    last_head, hyphen, last_tail = last.rpartition("-")
    word = last_tail
    if word.endswith("y"):
        plural = word[:-1] + "ies"
    else:
        plural = word + ("es" if word.endswith("x") else "s")  # "sixes"
    return f"{head} {last_head}{hyphen}{plural}".strip()
