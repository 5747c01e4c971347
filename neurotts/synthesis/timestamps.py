"""Word timings from a Tacotron 2 alignment, and their WebVTT and JSON forms: one home for
``neurotts synth --timestamps`` and ``neurotts serve``.

Decoder step ``i`` makes mel frames ``i*r .. i*r + r - 1``, i.e. samples from ``i * r * hop``.
Each step is assigned the symbol it attends to most; the path is made monotonic (a running
maximum), so a step that glances back does not stretch an earlier word. A word spans the
steps assigned to its symbols; a word no step lands on (attention skipped it) gets zero length
at the point where the path passed it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from neurotts.text.symbols import EOS, SPACE


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float  # seconds

    def shifted(self, offset: float, scale: float = 1.0) -> Word:
        """This word ``offset`` seconds later, its times first multiplied by ``scale``."""
        return Word(self.word, offset + self.start * scale, offset + self.end * scale)


def _symbol_words(symbols: list[str]) -> list[tuple[int, int]]:
    """``[start, end)`` symbol index ranges of the space-separated groups that hold a letter or
    phone (punctuation-only groups and the end symbol are not words)."""
    spans, start = [], 0
    for k, s in enumerate([*symbols, SPACE]):
        if s in (SPACE, EOS):
            if any(c.isalnum() for sym in symbols[start:k] for c in sym):
                spans.append((start, k))
            start = k + 1
    return spans


def word_times(alignment: np.ndarray, text: str, symbols: list[str], hop: int, r: int,
               sample_rate: int, n_frames: int | None = None) -> list[Word]:
    """Words of ``text`` with start and end in seconds from the sentence start.

    ``alignment``: ``(T_dec, T_text)`` attention weights of one sentence (T_text =
    ``len(symbols)``); ``symbols``: the frontend's symbols of ``text`` (spaces separate words);
    ``n_frames``: the sentence's mel length (its end caps the last word; default
    ``T_dec * r``). Words are named from ``text`` when its word count matches the symbols'
    (ARPAbet symbols are phones); otherwise from the symbols themselves.
    """
    if alignment.ndim != 2 or alignment.shape[1] != len(symbols):
        raise ValueError(f"alignment {alignment.shape} does not fit {len(symbols)} symbols")
    step_s = r * hop / sample_rate
    end_s = (alignment.shape[0] * r if n_frames is None else n_frames) * hop / sample_rate
    path = np.maximum.accumulate(alignment.argmax(axis=1)) if alignment.size else np.zeros(0, int)
    spans = _symbol_words(symbols)
    words = [w for w in text.split() if any(c.isalnum() for c in w)]
    names = words if len(words) == len(spans) else ["".join(symbols[a:b]) for a, b in spans]
    out = []
    for name, (a, b) in zip(names, spans, strict=True):
        steps = np.nonzero((path >= a) & (path < b))[0]
        if steps.size:
            start, end = steps[0] * step_s, (steps[-1] + 1) * step_s
        else:  # skipped: a point where the path first went past the word
            later = np.nonzero(path >= b)[0]
            start = end = (later[0] * step_s) if later.size else end_s
        out.append(Word(name, float(start), float(min(end, end_s))))
    return out


def _vtt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def to_webvtt(words: list[Word]) -> str:
    """One WebVTT cue per word."""
    # Cue text is markup in WebVTT: &, < and > must be escaped.
    escaped = [w.word.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
               for w in words]
    cues = [f"{_vtt_time(w.start)} --> {_vtt_time(max(w.end, w.start + 0.001))}\n{text}"
            for w, text in zip(words, escaped, strict=True)]
    return "WEBVTT\n\n" + "".join(f"{c}\n\n" for c in cues)


def to_json(words: list[Word]) -> list[dict[str, object]]:
    """Words as JSON-ready dicts, times rounded to milliseconds."""
    return [{**asdict(w), "start": round(w.start, 3), "end": round(w.end, 3)} for w in words]
