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

Prints mismatch examples to stderr (``--show N``) and one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

from anyascii import anyascii

from neurotts.text.normalize import expand_abbreviations, normalize

DEFAULT_METADATA = (
    Path(__file__).resolve().parents[1].parent / "shared/data/ljspeech-texts/metadata.csv"
)

_SEPARATORS = re.compile(r"[-:]")
# "U.S.", "p.m", "M.P.'s": dotted initialisms compare as their letters ("u s"), the way the
# normaliser writes them and the readers said them.
_INITIALISM = re.compile(r"(?<![\w.])((?:[a-z]\.){2,}|(?:[a-z]\.)+[a-z](?![\w.]))")
_NOT_WORD = re.compile(r"[^a-z0-9' ]")
_DIGIT = re.compile(r"\d")


def words(text: str) -> list[str]:
    """Case-folded, punctuation-insensitive word sequence used for comparison."""
    text = _SEPARATORS.sub(" ", anyascii(text).lower())
    text = _INITIALISM.sub(lambda m: " ".join(c for c in m[1] if c.isalpha()), text)
    return _NOT_WORD.sub("", text).split()


def read_rows(path: Path) -> list[tuple[str, str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        # LJSpeech quotes are literal text, not CSV quoting.
        reader = csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE)
        return [(row[0], row[1], row[2]) for row in reader]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", type=Path, default=DEFAULT_METADATA)
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

    result = {
        "match_all": round(n_match / len(rows), 4),
        "match_digits": round(n_digit_match / n_digit, 4) if n_digit else None,
        "match_strict": round(n_strict / len(rows), 4),
        "n_rows": len(rows),
        "n_digit_rows": n_digit,
        "seconds": round(seconds, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
