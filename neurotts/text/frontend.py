"""Text frontend: raw text -> normalised text -> symbols -> ids (and back).

Usage::

    fe = TextFrontend(cfg)                      # cfg.symbol_set: "characters" | "arpabet"
    normalized, symbols, ids = fe.encode("Dr. Smith paid $3.50 in 1865.")
    fe = TextFrontend.from_symbols(cfg, saved)  # same ids as the run that saved ``saved``

Inline ARPAbet: ``{HH AH0 L OW1}`` in the text is used verbatim as phones (each phone checked
against CMUdict's inventory). Only the ``arpabet`` symbol set has phones, so with
``characters`` a brace group is a ``TextError`` rather than being silently spelled out.

Nothing is dropped silently: the normaliser reads what it can (``normalize.py``) and leaves the
rest (emoji, dingbats, stray symbols) in the text; characters outside the symbol set are then
dropped with one ``TextWarning`` naming them (with their Unicode names when they are not plain
ASCII), or, when the caller passes a :class:`TextReport`, counted there instead (``prepare``
sums them over a corpus and prints one line). Words CMUdict lacks are said with eSpeak NG's
letter-to-sound guess in ARPAbet (``lts.py``) and counted there too, with that guess;
:meth:`TextReport.messages` gives the warning lines for both. Text with nothing speakable left
(no letter, no phone) is a ``TextError`` that names what was dropped.

With ``arpabet``, heterophones ("read", "live", "lead", ...) take the reading their neighbours
call for (see ``heterophones.py``).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from omegaconf import MISSING

from neurotts.text import g2p, ipa, lts
from neurotts.text.charset import describe
from neurotts.text.heterophones import WordContext
from neurotts.text.normalize import normalize
from neurotts.text.symbols import (
    EOS,
    LETTERS,
    PAD,
    SPACE,
    SYMBOL_SETS,
    SymbolTable,
    TextError,
    default_symbols,
    is_phone_symbol,
    phone_symbol,
    tidy_spaces,
)

__all__ = ["TextConfig", "TextError", "TextFrontend", "TextReport", "TextWarning", "dropped_message",
           "oov_message"]


@dataclass
class TextConfig:
    """Which symbol set text is turned into. Values come from ``configs/text/*.yaml``."""

    symbol_set: str = MISSING  # "characters" | "arpabet" | "ipa"
    # eSpeak NG language of symbol_set=ipa ("en-us", "de", "es", "fr", ...); the other symbol
    # sets are English and take None.
    language: str | None = None


def is_english(cfg: TextConfig) -> bool:
    """True when texts under ``cfg`` are English (what pocketsphinx's bundled model hears)."""
    return cfg.symbol_set != "ipa" or (cfg.language or "").lower().split("-")[0] == "en"


class TextWarning(UserWarning):
    """Something in the text was dropped because the symbol set cannot say it."""


@dataclass
class TextReport:
    """What the frontend could not say as written; pass one to collect it instead of warnings."""

    dropped: Counter[str] = field(default_factory=Counter)  # characters outside the symbol set
    oov: Counter[str] = field(default_factory=Counter)  # lowercased words CMUdict lacks
    # word -> the ARPAbet said for it ("HH AY1 D AH0 L"), or "" when it was spelled as letters
    guesses: dict[str, str] = field(default_factory=dict)

    def messages(self, symbol_set: str) -> list[str]:
        """One warning line per kind of loss (dropped characters, words CMUdict lacks); empty when
        the text was said as written. Callers prefix the line or file they came from."""
        lines = [dropped_message(self.dropped, symbol_set)] if self.dropped else []
        if self.oov:
            lines.append(oov_message(self))
        return lines


# split() with one capturing group alternates plain text (even indices) and brace contents.
_INLINE_RE = re.compile(r"\{([^{}]*)\}")
# ARPAbet mode tokens: dotted initialisms ("U.S."), words with inner apostrophes ("don't",
# "Oswald's"), whitespace runs, and any other single character.
_TOKEN_RE = re.compile(r"(?:[A-Za-z]\.){2,}|[A-Za-z]+(?:'[A-Za-z]+)*|\s+|.")
_SPEAKABLE = frozenset(LETTERS)


def dropped_message(chars: Iterable[str], symbol_set: str) -> str:
    """The one line that names characters the symbol set cannot say; emoji and other
    non-ASCII or invisible characters also by their Unicode names."""
    chars = set(chars)
    names = describe(chars)
    return (f"dropped characters not in the {symbol_set!r} symbol set: {''.join(sorted(chars))!r}"
            + (f" ({names})" if names else ""))


def oov_message(report: TextReport) -> str:
    """The one line that names the words CMUdict lacks and what was said for each."""
    said = "; ".join(f"{w} = {report.guesses[w] or '(spelled)'}" for w in sorted(report.oov))
    return f"not in CMUdict, said by letter-to-sound: {said}"


class TextFrontend:
    """Turns text into symbol ids for one symbol set; see the module docstring."""

    def __init__(self, cfg: TextConfig, symbols: SymbolTable | None = None) -> None:
        if cfg.symbol_set not in SYMBOL_SETS:
            raise TextError(f"unknown symbol_set {cfg.symbol_set!r}; expected one of {SYMBOL_SETS}")
        self.cfg = cfg
        self._arpabet = cfg.symbol_set == "arpabet"
        self._ipa: ipa.Language | None = None
        if cfg.symbol_set == "ipa":
            if cfg.language is None:
                raise TextError("text=ipa needs text.language (e.g. text.language=de)")
            self._ipa = ipa.language(cfg.language)  # an unknown one: one line listing all
        elif cfg.language is not None:
            raise TextError(f"text={cfg.symbol_set} is English only; for text.language="
                            f"{cfg.language} use text=ipa")
        # An ipa frontend has no table until a corpus gives one (see fitted()): its symbols
        # are all kept, and ids cannot be asked for.
        self.symbols: SymbolTable | None = (
            symbols if symbols is not None or self._ipa is not None
            else SymbolTable(default_symbols(cfg.symbol_set)))

    @property
    def language(self) -> ipa.Language | None:
        """The ipa language as eSpeak NG and num2words name it (None for the English sets)."""
        return self._ipa

    def fitted(self, symbol_lists: Iterable[list[str]]) -> TextFrontend:
        """An ipa frontend whose table holds the symbols of ``symbol_lists`` (a corpus's)."""
        return TextFrontend(self.cfg, SymbolTable(ipa.inventory(s for lst in symbol_lists for s in lst)))

    @classmethod
    def from_symbols(cls, cfg: TextConfig, symbols: list[str]) -> TextFrontend:
        """Rebuild from a saved symbol list (checkpoint, feature store): ids stay identical."""
        table = SymbolTable(symbols)
        has_phones = any(is_phone_symbol(s) for s in symbols)
        if has_phones != (cfg.symbol_set == "arpabet"):
            kind = "has" if has_phones else "has no"
            raise TextError(
                f"saved symbol list {kind} ARPAbet phones, which does not fit "
                f"symbol_set={cfg.symbol_set!r}"
            )
        return cls(cfg, table)

    # -- pipeline ------------------------------------------------------------------------------

    def normalize(self, raw: str) -> str:
        """English normalisation (numbers, abbreviations, unicode), or the ipa language's
        (``ipa.normalize``); case is kept."""
        return ipa.normalize(raw, self._ipa) if self._ipa is not None else normalize(raw)

    def to_symbols(self, normalized: str, report: TextReport | None = None) -> list[str]:
        """Symbols of normalised text, ending with EOS; whitespace collapsed to single spaces.

        Dropped characters and unknown words go to ``report`` when one is given; without one a
        dropped character is a ``TextWarning``.
        """
        seen = TextReport() if report is None else report
        before = sum(seen.dropped.values())
        out = self._ipa_symbols(normalized, seen) if self._ipa is not None else self._english(normalized, seen)
        if report is None and sum(seen.dropped.values()) > before:
            warnings.warn(dropped_message(seen.dropped, self.cfg.symbol_set), TextWarning, stacklevel=2)
        out = tidy_spaces(out)
        speakable = ipa.is_speakable(out) if self._ipa is not None else any(
            s in _SPEAKABLE or is_phone_symbol(s) for s in out)
        if not speakable:
            lost = seen.dropped.keys() & set(normalized)
            because = f"; {dropped_message(lost, self.cfg.symbol_set)}" if lost else ""
            raise TextError(f"no speakable symbol (letter or phone) in {normalized!r}{because}")
        return [*out, EOS]

    def _english(self, normalized: str, seen: TextReport) -> list[str]:
        parts = _INLINE_RE.split(normalized)
        out: list[str] = []
        for i, part in enumerate(parts):
            if i % 2:
                out += self._inline_phones(part)
            elif "{" in part or "}" in part:
                raise TextError(f"unbalanced brace in {normalized!r}")
            elif self._arpabet:
                out += self._words_to_phones(part, seen)
            else:
                out += self._characters(part, seen)
        return out

    def _ipa_symbols(self, normalized: str, report: TextReport) -> list[str]:
        assert self._ipa is not None
        if _INLINE_RE.search(normalized):
            raise TextError(f"inline ARPAbet {normalized!r} needs symbol_set='arpabet' "
                            "(this frontend uses 'ipa')")
        unsaid = ipa.dropped(normalized)
        report.dropped.update(c for c in normalized if c in unsaid)
        symbols = ipa.phonemize(normalized, self._ipa)
        return self._keep(symbols, report) if self.symbols is not None else symbols

    def encode(self, raw: str, report: TextReport | None = None) -> tuple[str, list[str], list[int]]:
        """``raw`` -> (normalised text, symbols, ids); ``report`` as in :meth:`to_symbols`."""
        normalized = self.normalize(raw)
        symbols = self.to_symbols(normalized, report)
        return normalized, symbols, self.table.to_ids(symbols)

    @property
    def table(self) -> SymbolTable:
        """The symbol table; an ipa frontend has one once fitted to a corpus or rebuilt from one."""
        if self.symbols is None:
            raise TextError("text=ipa has no symbol table yet: it is built from a corpus by prepare "
                            "(a store or checkpoint carries it)")
        return self.symbols

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Symbols of ``ids``; pad ids are skipped so a padded batch row decodes cleanly."""
        return [s for s in self.table.to_symbols(ids) if s != PAD]

    # -- helpers -------------------------------------------------------------------------------

    def _keep(self, symbols: Iterable[str], report: TextReport) -> list[str]:
        out = []
        table = self.table
        for s in symbols:
            if s in table:
                out.append(s)
            else:
                report.dropped[s] += 1
        return out

    def _characters(self, text: str, report: TextReport) -> list[str]:
        chars = (SPACE if c.isspace() else c for c in text.lower())
        return self._keep(chars, report)

    def _words_to_phones(self, text: str, report: TextReport) -> list[str]:
        tokens = list(_TOKEN_RE.finditer(text))
        out: list[str] = []
        for k, m in enumerate(tokens):
            token = m[0]
            if token.isspace():
                out.append(SPACE)
            elif token[0].isalpha():
                context = WordContext(_neighbour(tokens, k, -1), _neighbour(tokens, k, 1),
                                      _opens_clause(tokens, k))
                out += self._keep(self._word_symbols(token, text, m.end(), context, report), report)
            else:
                out += self._keep([token], report)
        return out

    def _word_symbols(self, word: str, text: str, end: int, context: WordContext,
                      report: TextReport) -> list[str]:
        if len(word) == 1 and word.isupper() and (
            text.startswith(".", end) or not _article_position(context)
        ):
            # An initial ("A. Hidell") or a spelled letter ("Flight A B one", "four B", "an
            # A", "A D ten sixty-six"): the letter's name. Only a capital opening a clause
            # before a word ("A man") is the article "a".
            return [phone_symbol(p) for p in g2p.letter_name(word)]
        phones = g2p.lookup(word, context)
        if phones is None and "." in word:
            # An initialism CMUdict lacks ("P.S."): say each letter's name.
            phones = [p for letter in word if letter.isalpha() for p in g2p.letter_name(letter)]
        if phones is None:
            # Out of vocabulary: eSpeak NG's letter-to-sound rules in ARPAbet (see lts.py);
            # spelled with the letter symbols the model also learns only when that fails.
            guessed = lts.guess(word)
            report.oov[word.lower()] += 1
            report.guesses.setdefault(word.lower(), " ".join(guessed or ()))
            if guessed is None:
                return [c for c in word.lower() if c in _SPEAKABLE or c == "'"]
            phones = list(guessed)
        return [phone_symbol(p) for p in phones]

    def _inline_phones(self, content: str) -> list[str]:
        if not self._arpabet:
            raise TextError(
                f"inline ARPAbet {{{content}}} needs symbol_set='arpabet' "
                f"(this frontend uses {self.cfg.symbol_set!r})"
            )
        phones = content.split()
        if not phones:
            raise TextError("empty inline ARPAbet group {}")
        out = []
        for p in phones:
            if not g2p.is_valid_phone(p.upper()):
                raise TextError(f"unknown ARPAbet phone {p!r} in {{{content}}}")
            symbol = phone_symbol(p.upper())
            if symbol not in self.table:
                raise TextError(f"phone {p!r} is not in this frontend's symbol table")
            out.append(symbol)
        return out


def _article_position(context: WordContext) -> bool:
    """Where a capital "A" is the article: opening a clause, before a word of 2+ letters."""
    following = context.following
    return context.opens_clause and following is not None and len(following) > 1


# Words that may come before an imperative at the start of a clause ("now read it again").
_OPENERS = frozenset("now then so just please first next again also always never simply".split())
# What ends a clause before an imperative. Not the comma: "He came in, read the note, and
# left" lists past actions.
_CLAUSE_ENDS = frozenset(".!?;:")
_TRANSPARENT = frozenset("\"'()")  # quotes and brackets around a clause's start


def _clause_starts_before(tokens: list[re.Match[str]], k: int) -> bool:
    """True when nothing but quotes, brackets and spaces lie between a clause end (or the
    text's start) and ``tokens[k]``."""
    k -= 1
    while k >= 0 and (tokens[k][0].isspace() or tokens[k][0] in _TRANSPARENT):
        k -= 1
    return k < 0 or tokens[k][0] in _CLAUSE_ENDS


def _opens_clause(tokens: list[re.Match[str]], k: int) -> bool:
    """True when ``tokens[k]`` opens a clause, alone or after one opener ("now read it")."""
    if _clause_starts_before(tokens, k):
        return True
    j = k - 1
    while j >= 0 and tokens[j][0].isspace():
        j -= 1
    return j >= 0 and tokens[j][0].lower() in _OPENERS and _clause_starts_before(tokens, j)


def _neighbour(tokens: list[re.Match[str]], k: int, step: int) -> str | None:
    """The lowercased word next to ``tokens[k]`` (across spaces only), or None."""
    k += step
    while 0 <= k < len(tokens) and tokens[k][0].isspace():
        k += step
    if 0 <= k < len(tokens) and tokens[k][0][0].isalpha():
        return tokens[k][0].lower()
    return None
