"""``neurotts text``: what the frontend makes of a sentence (normalised text, symbols, ids)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from neurotts.data.config import PrepareConfig
from neurotts.text.frontend import TextFrontend, TextReport, dropped_message


def run(cfg: PrepareConfig, console: Console, sentence: str) -> list[int]:
    """Print ``sentence`` normalised, its symbols and their ids on stdout, under the prepare
    config's text settings (the ones a store would be made with); what the symbol set cannot
    say and the words spelled as letters go to ``console``. Returns the ids."""
    report = TextReport()
    normalized, symbols, ids = TextFrontend(cfg.text).encode(sentence, report)
    print(normalized)
    # Symbols are shown space-separated, so the space symbol itself is shown as "|".
    print(" ".join("|" if s == " " else s for s in symbols))
    print(" ".join(str(i) for i in ids))
    if report.dropped:
        console.print(Text.assemble(("warning:", "yellow"), " ",
                                    dropped_message(report.dropped, cfg.text.symbol_set)),
                      soft_wrap=True)
    if report.oov:
        console.print(f"not in CMUdict, spelled as letters: {' '.join(sorted(report.oov))}")
    return ids
