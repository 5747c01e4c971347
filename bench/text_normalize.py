"""Benchmark the text normaliser against LJSpeech's own normalised transcripts.

For every row of LJSpeech's ``metadata.csv`` (``ID|raw|normalized``) the raw column is run
through ``neurotts.text.normalize.normalize`` and compared with the normalised column.

Comparison (both sides): transliterate to ASCII, lowercase, map hyphens and colons to spaces,
drop every character outside ``[a-z0-9' ]``, split on whitespace, and compare the word lists
for equality. Colons become spaces, not nothing, because LJSpeech writes times as
"eleven:forty-five"; dropping the colon would glue two words together. The reference side
also gets the normaliser's abbreviation expansion ("Mr." -> "Mister"), because LJSpeech's
column leaves titles abbreviated and expands only numbers; without it every "Mr." row would
count as wrong although both sides say the same words. ``match_strict`` in the JSON line
reports the match without that reference-side expansion, for transparency.

A second set, ``modern_text.tsv`` (issue 25: codes, phone numbers, clock times, versions,
units, equations, web addresses, emoji), pairs text people type with one reasonable reading;
it is compared the same way and scored as ``match_modern``. Its readings were written by hand,
not copied from the normaliser's output, so a miss there is a reading still to improve.

Prints mismatch examples to stderr (``--show N``) and one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
import unicodedata
from pathlib import Path

from anyascii import anyascii

from neurotts.text.normalize import expand_abbreviations, normalize

DEFAULT_METADATA = (
    Path(__file__).resolve().parents[1].parent / "shared/data/ljspeech-texts/metadata.csv"
)
DEFAULT_MODERN = Path(__file__).resolve().parent / "modern_text.tsv"

_SEPARATORS = re.compile(r"[-:]")
# "U.S.", "p.m", "M.P.'s": dotted initialisms compare as their letters ("u s"), the way the
# normaliser writes them and the readers said them.
_INITIALISM = re.compile(r"(?<![\w.])((?:[a-z]\.){2,}|(?:[a-z]\.)+[a-z](?![\w.]))")
_NOT_WORD = re.compile(r"[^a-z0-9' ]")
_DIGIT = re.compile(r"\d")


def words(text: str) -> list[str]:
    """Case-folded, punctuation-insensitive word sequence used for comparison.

    Symbols the normaliser leaves for the frontend to drop (emoji) are not words; letters of
    any script are transliterated."""
    text = "".join(c for c in text if c.isascii() or unicodedata.category(c)[0] not in "SC")
    text = _SEPARATORS.sub(" ", anyascii(text).lower())
    text = _INITIALISM.sub(lambda m: " ".join(c for c in m[1] if c.isalpha()), text)
    return _NOT_WORD.sub("", text).split()


def read_rows(path: Path) -> list[tuple[str, str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        # LJSpeech quotes are literal text, not CSV quoting.
        reader = csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE)
        return [(row[0], row[1], row[2]) for row in reader]


def read_modern(path: Path) -> list[tuple[str, str]]:
    """``raw<TAB>reading`` lines; ``#`` starts a comment line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if line and not line.startswith("#")]


def score_modern(path: Path, show: int) -> tuple[float, int]:
    """Share of the modern set read as its reference, and the set's size."""
    pairs = read_modern(path)
    n_match = 0
    for raw, reference in pairs:
        hyp = normalize(raw)
        ok = words(hyp) == words(reference)
        n_match += ok
        if not ok and show:
            print(f"modern\n  raw: {raw}\n  ref: {reference}\n  hyp: {hyp}\n", file=sys.stderr)
    return round(n_match / len(pairs), 4), len(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", type=Path, default=DEFAULT_METADATA)
    parser.add_argument("--modern", type=Path, default=DEFAULT_MODERN)
    parser.add_argument("--show", type=int, default=0, help="print N mismatches to stderr")
    args = parser.parse_args(argv)
    if not args.metadata.is_file():
        print(f"error: LJSpeech metadata not found at {args.metadata}", file=sys.stderr)
        return 1

    rows = read_rows(args.metadata)
    start = time.perf_counter()
    hypotheses = [normalize(raw) for _, raw, _ in rows]
    seconds = time.perf_counter() - start

    n_match = n_strict = n_digit = n_digit_match = shown = 0
    for (row_id, raw, reference), hyp in zip(rows, hypotheses, strict=True):
        hyp_words = words(hyp)
        ok = hyp_words == words(expand_abbreviations(reference))
        n_match += ok
        n_strict += hyp_words == words(reference)
        has_digit = bool(_DIGIT.search(raw))
        n_digit += has_digit
        n_digit_match += ok and has_digit
        if not ok and shown < args.show:
            shown += 1
            print(f"{row_id}\n  raw: {raw}\n  ref: {reference}\n  hyp: {hyp}\n", file=sys.stderr)

    match_modern, n_modern = score_modern(args.modern, args.show)
    result = {
        "match_all": round(n_match / len(rows), 4),
        "match_digits": round(n_digit_match / n_digit, 4) if n_digit else None,
        "match_strict": round(n_strict / len(rows), 4),
        "n_rows": len(rows),
        "n_digit_rows": n_digit,
        "match_modern": match_modern,
        "n_modern": n_modern,
        "seconds": round(seconds, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
