"""The text stage of ``prepare``: every row's transcript -> normalised text and symbol ids.

Rows whose text cannot be said become rejects naming their ``file:line``. With ``text=ipa``
the symbol table is not fixed: it is built here from the symbols the whole corpus uses, then
every row is given ids in it (so symbols are found first and ids second).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from neurotts.data.formats import Reject, Row
from neurotts.files import atomic_write_text
from neurotts.text.frontend import TextError, TextFrontend, TextReport, dropped_message


@dataclass
class TextTally:
    """Per-row ``TextReport``s summed over the corpus, for the summary and ``oov.tsv``."""

    oov: Counter[str] = field(default_factory=Counter)
    oov_example: dict[str, str] = field(default_factory=dict)  # word -> first id that has it
    guesses: dict[str, str] = field(default_factory=dict)  # word -> ARPAbet said ("" = spelled)
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_rows: list[Row] = field(default_factory=list)

    def add(self, row: Row, report: TextReport) -> None:
        self.oov.update(report.oov)
        for word in report.oov:
            self.oov_example.setdefault(word, row.id)
        self.guesses.update(report.guesses)
        if report.dropped:
            self.dropped.update(report.dropped)
            self.dropped_rows.append(row)


@dataclass
class EncodedTexts:
    texts: dict[str, tuple[str, list[int]]]  # id -> (normalised text, symbol ids with EOS)
    rejects: list[Reject]
    tally: TextTally
    frontend: TextFrontend  # with the table the ids are in (an ipa one fitted to the corpus)


def encode_texts(rows: list[Row], fe: TextFrontend) -> EncodedTexts:
    """Normalise and symbolise every row; see the module docstring."""
    symbols: dict[str, tuple[str, list[str]]] = {}
    rejects: list[Reject] = []
    tally = TextTally()
    for row in rows:
        report = TextReport()
        try:
            normalized = fe.normalize(row.text)
            symbols[row.id] = (normalized, fe.to_symbols(normalized, report))
        except TextError as exc:
            rejects.append(Reject(row.id, f"{row.where}: {exc}"))
            continue
        except Exception as exc:  # a normalisation rule that breaks on one text costs that row only
            rejects.append(Reject(row.id, f"{row.where}: text could not be normalised "
                                          f"({type(exc).__name__}: {exc})"))
            continue
        tally.add(row, report)
    if fe.symbols is None:
        fe = fe.fitted(s for _, s in symbols.values())
    texts = {rid: (normalized, fe.table.to_ids(s)) for rid, (normalized, s) in symbols.items()}
    return EncodedTexts(texts, rejects, tally, fe)


def write_oov(path: Path, tally: TextTally) -> None:
    """``oov.tsv``: words CMUdict lacks, most frequent first, with what was said for each."""
    words = sorted(tally.oov, key=lambda w: (-tally.oov[w], w))
    atomic_write_text(path, "word\tcount\texample_id\tsaid_as\n" + "".join(
        f"{w}\t{tally.oov[w]}\t{tally.oov_example[w]}\t{tally.guesses[w] or '(spelled)'}\n"
        for w in words))


def text_notes(tally: TextTally, symbol_set: str, oov_path: Path) -> list[str]:
    """The summary's lines about the text: dropped characters, words CMUdict lacks."""
    notes = []
    if tally.dropped:
        first = tally.dropped_rows[0]
        notes.append(f"warning: {dropped_message(tally.dropped, symbol_set)} "
                     f"(in {len(tally.dropped_rows)} row(s); first {first.where}, {first.id})")
    if tally.oov:
        spelled = sum(1 for w in tally.oov if not tally.guesses[w])
        how = "pronounced by letter-to-sound" + (f", {spelled} spelled as letters" if spelled else "")
        notes.append(f"CMUdict lacks {len(tally.oov)} word(s) ({sum(tally.oov.values())} "
                     f"occurrence(s)), {how}: see {oov_path}")
    return notes
