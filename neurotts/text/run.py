"""``neurotts text``: what the frontend makes of a sentence (normalised text, symbols, ids)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from neurotts.data.config import PrepareConfig
from neurotts.text.frontend import TextFrontend, TextReport, dropped_message, oov_message


def run(cfg: PrepareConfig, console: Console, sentence: str) -> list[int]:
    """Print ``sentence`` normalised, its symbols and their ids on stdout, under the prepare
    config's text settings (the ones a store would be made with); what the symbol set cannot
    say and the words CMUdict lacks go to ``console``. Returns the ids.

    With ``text=ipa`` the ids are those of a table made from this sentence alone (a store's
    table comes from its whole corpus), and a line says so."""
    report = TextReport()
    fe = TextFrontend(cfg.text)
    normalized = fe.normalize(sentence)
    symbols = fe.to_symbols(normalized, report)
    if fe.language is not None:
        numbers = (f"num2words {fe.language.num2words!r}" if fe.language.num2words
                   else "eSpeak NG (num2words lacks the language)")
        console.print(f"text=ipa: eSpeak NG language {fe.language.espeak!r}, numbers read by "
                      f"{numbers}", soft_wrap=True, highlight=False)
    if fe.symbols is None:
        fe = fe.fitted([symbols])
        console.print(f"ids in this sentence's own table ({len(fe.table)} symbols); a store's "
                      "table comes from its corpus", soft_wrap=True, highlight=False)
    ids = fe.table.to_ids(symbols)
    print(normalized)
    # Symbols are shown space-separated, so the space symbol itself is shown as "|".
    print(" ".join("|" if s == " " else s for s in symbols))
    print(" ".join(str(i) for i in ids))
    if report.dropped:
        console.print(Text.assemble(("warning:", "yellow"), " ",
                                    dropped_message(report.dropped, cfg.text.symbol_set)),
                      soft_wrap=True)
    if report.oov:
        console.print(oov_message(report), soft_wrap=True, highlight=False)
    return ids
