"""IPA phonemes for any language eSpeak NG speaks (``text=ipa text.language=LANG``).

Three stages, each visible on its own (``neurotts text`` prints them):

1. :func:`normalize` -- Unicode NFC, one space between words, and numbers read out in the
   language by ``num2words`` where it has the language: amounts with a currency sign
   ("12,50 €" -> "zwölf Euro und fünfzig Cent"), four-digit years where the language reads
   them apart ("1865" -> "achtzehnhundertfünfundsechzig"), other integers and decimals with
   the language's decimal mark ("3,5" in German, "3.5" in English). English text goes
   through neurotts's own English normaliser instead (abbreviations, ordinals, dates).
   Where num2words lacks the language, digits are left for eSpeak NG, which reads them itself.
2. :func:`phonemize` -- eSpeak NG's phonemes, word by word, with the punctuation a reader
   voices kept as symbols between them (eSpeak NG itself only sees the words).
3. Symbols: each phoneme is one symbol ("tʃ", "aː", "ɔ̃"); stress marks "ˈ" and "ˌ" are symbols
   of their own, so a stressed and an unstressed vowel share one embedding. The table is not
   fixed: it is the set of symbols the corpus uses (:func:`inventory`), saved with the store.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from neurotts.text import espeak
from neurotts.text.symbols import EOS, PAD, SPACE, tidy_spaces

# Punctuation kept as prosody symbols; "'" and "-" are left inside words ("l'homme", "Jean-Luc").
IPA_PUNCTUATION = ",.!?;:¿¡\"«»()…"
STRESS = ("ˈ", "ˌ")
_SPLIT_RE = re.compile(f"([{re.escape(IPA_PUNCTUATION)}])")
# Languages whose decimal mark is a point (thousands: comma); the others use a comma
# (thousands: point or no-break space), as CLDR has it for the languages num2words reads.
_POINT_DECIMAL = frozenset({"en", "ja", "ko", "th", "he", "hi", "bn", "te", "kn", "am", "ta",
                            "zh", "ms"})
_CURRENCIES = {"€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY"}
_ESPEAK_MARKS = str.maketrans("", "", "-")  # eSpeak NG's elision hint ("ʒə-"), not a sound


@dataclass(frozen=True)
class Language:
    """A language as each library names it: eSpeak NG ("fr-fr") and num2words ("fr" or None)."""

    espeak: str
    num2words: str | None

    @property
    def english(self) -> bool:
        return self.espeak.split("-")[0] == "en"


@lru_cache(maxsize=64)
def language(name: str) -> Language:
    """Resolve a user's ``text.language``; an unknown one is an ``EspeakError`` listing all."""
    resolved = espeak.resolve_language(name)
    return Language(resolved, _num2words_code(resolved))


def _num2words_code(lang: str) -> str | None:
    from num2words import CONVERTER_CLASSES

    base, _, region = lang.partition("-")
    for code in (f"{base}_{region.upper()}", base):
        if code in CONVERTER_CLASSES:
            return code
    return None


# ----------------------------------------------------------------------------- normalisation


def normalize(text: str, lang: Language) -> str:
    """Stage 1: see the module docstring. Case is kept (eSpeak NG uses it for abbreviations)."""
    text = unicodedata.normalize("NFC", text)
    if lang.english:
        from neurotts.text.normalize import normalize as normalize_english

        return normalize_english(text)
    text = re.sub(r"\s+", " ", text).strip()
    if lang.num2words is not None:
        text = _read_numbers(text, lang.num2words)
    return text


def _number_pattern(code: str) -> str:
    point = code.split("_")[0] in _POINT_DECIMAL
    dec, thou = (r"\.", ",") if point else (",", r"\.\u00a0\u202f")
    return rf"\d{{1,3}}(?:[{thou}]\d{{3}})+(?:{dec}\d+)?|\d+(?:{dec}\d+)?"


def _value(token: str, code: str) -> int | float:
    point = code.split("_")[0] in _POINT_DECIMAL
    thousands, decimal = (",", ".") if point else (".\u00a0\u202f", ",")
    digits = token.translate(str.maketrans("", "", thousands)).replace(decimal, ".")
    return float(digits) if "." in digits else int(digits)


def _read_numbers(text: str, code: str) -> str:
    from num2words import num2words

    number = _number_pattern(code)
    signs = "".join(map(re.escape, _CURRENCIES))
    money = re.compile(rf"(?P<pre>[{signs}])\s?(?P<a>{number})|(?P<b>{number})\s?(?P<post>[{signs}])")

    def say_money(m: re.Match[str]) -> str:
        sign, token = (m["pre"], m["a"]) if m["pre"] else (m["post"], m["b"])
        return _money(_value(token, code), sign, code)

    def say_number(m: re.Match[str]) -> str:
        value = _value(m[0], code)
        if isinstance(value, int) and re.fullmatch(r"1[1-9]\d\d", m[0]):
            return num2words(value, lang=code, to="year")  # a year, where the language differs
        return num2words(value, lang=code)

    text = money.sub(say_money, text)
    return re.sub(rf"(?<![\w.,]){number}(?![\w])", say_number, text)


def _money(value: int | float, sign: str, code: str) -> str:
    from num2words import CONVERTER_CLASSES, num2words

    converter = CONVERTER_CLASSES[code]
    forms = converter.CURRENCY_FORMS.get(_CURRENCIES[sign])
    if isinstance(value, int) and forms:
        # A whole amount: "veinte dólares", not to_currency's "... con cero centavos".
        return f"{num2words(value, lang=code)} {converter.pluralize(value, forms[0])}"
    try:
        # A float: num2words takes an int amount as cents ("20 $" would be 20 cents).
        return num2words(float(value), lang=code, to="currency", currency=_CURRENCIES[sign])
    except (NotImplementedError, TypeError, KeyError):
        return f"{num2words(value, lang=code)} {sign}"  # eSpeak NG names the sign itself


# ----------------------------------------------------------------------------- phonemes


def phonemize(normalized: str, lang: Language) -> list[str]:
    """Stage 2 and 3: symbols of normalised text (no EOS); words apart by ``SPACE``.

    Characters that are neither a word eSpeak NG reads nor kept punctuation vanish here;
    :func:`dropped` names them for reports.
    """
    out: list[str] = []
    for k, piece in enumerate(_SPLIT_RE.split(normalized)):
        if k % 2:  # a punctuation mark
            out.append(piece)
            continue
        if piece[:1].isspace() and out:
            out.append(SPACE)
        words = espeak.phonemes(piece, lang.espeak) if piece.strip() else []
        for w, word in enumerate(words):
            if w:
                out.append(SPACE)
            out += _symbols(word)
        if piece[-1:].isspace() and words:
            out.append(SPACE)
    return tidy_spaces(out)


def _symbols(word: list[str]) -> list[str]:
    out = []
    for phone in word:
        phone = phone.translate(_ESPEAK_MARKS)
        while phone[:1] in STRESS:
            out.append(phone[0])
            phone = phone[1:]
        if phone:
            out.append(phone)
    return out


def dropped(normalized: str) -> set[str]:
    """Characters of ``normalized`` that are neither letters, digits, spaces nor kept
    punctuation ("#", "~", emoji): eSpeak NG skips or names them, the table has no symbol."""
    return {c for c in normalized
            if not (c.isalnum() or c.isspace() or c in IPA_PUNCTUATION or c in "'’-")
            and unicodedata.category(c)[0] not in "LMN"}


def inventory(used: Iterable[str]) -> list[str]:
    """The symbol list of a corpus whose texts use ``used``: pad, EOS, space, then the
    punctuation and phonemes it has (sorted, so the same corpus gives the same ids)."""
    seen = set(used) - {PAD, EOS, SPACE}
    punctuation = sorted(s for s in seen if s in IPA_PUNCTUATION)
    phones = sorted(s for s in seen if s not in IPA_PUNCTUATION)
    return [PAD, EOS, SPACE, *punctuation, *phones]


def is_ipa_phone(symbol: str) -> bool:
    """True for a phoneme of this symbol set (not punctuation, space, stress, pad or EOS).
    Only meaningful on ipa symbols: a letter of the characters set would pass too."""
    return symbol not in IPA_PUNCTUATION and symbol not in (PAD, EOS, SPACE, *STRESS)


def is_speakable(symbols: Iterable[str]) -> bool:
    """True when ``symbols`` hold at least one phoneme (not only spaces and punctuation)."""
    return any(is_ipa_phone(s) for s in symbols)
