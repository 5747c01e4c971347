"""Phonemisation speed: sentences per second for each language of ``text=ipa`` next to the
English ARPAbet frontend, in one run (so machine load affects all alike).

English uses the first N LJSpeech texts (../shared/data/ljspeech-texts); de, es and fr the
built-in sentences of ``neurotts.data.spoken`` repeated to N. Each figure is normalisation
plus symbols, as ``prepare`` does per row, after one warm-up call. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurotts.data.spoken import SENTENCES  # noqa: E402
from neurotts.text import ipa  # noqa: E402
from neurotts.text.frontend import TextConfig, TextFrontend  # noqa: E402

TEXTS = ROOT.parent / "shared" / "data" / "ljspeech-texts" / "metadata.csv"


def rate(fn, texts: list[str]) -> float:
    fn(texts[0])
    t0 = time.perf_counter()
    for t in texts:
        fn(t)
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=1000, help="sentences per language")
    args = ap.parse_args()
    english = [ln.split("|")[1] for ln in TEXTS.read_text(encoding="utf-8").splitlines()][: args.n]
    arpabet = TextFrontend(TextConfig("arpabet"))
    out = {"n": args.n, "arpabet_en": round(rate(arpabet.encode, english))}
    for name, texts in (("ipa_en-us", english), *((f"ipa_{k}", list(v)) for k, v in SENTENCES.items())):
        lang = ipa.language(name.removeprefix("ipa_"))
        texts = (texts * (args.n // len(texts) + 1))[: args.n]
        out[name] = round(rate(lambda t, lang=lang: ipa.phonemize(ipa.normalize(t, lang), lang), texts))
    out["unit"] = "sentences/s"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
