"""Scoring with known edit counts, the missing-extra message, and pocketsphinx on a real clip."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from neurotts.evaluation.asr import (
    ASR_SAMPLE_RATE,
    MissingDependencyError,
    Recognizer,
    cer,
    corpus_error_rates,
    normalize_text,
    to_asr_pcm,
    wer,
)
from tests.conftest import SAMPLE, requires_sample


def test_normalize_text() -> None:
    assert normalize_text("  Don’t STOP -- the   “twenty-one” guns!\n") == "dont stop the twenty one guns"
    assert normalize_text("...") == ""


def test_wer_and_cer_exact_counts() -> None:
    ref, hyp = "The quick brown fox jumps.", "the quick brown box jumped over"
    # words: fox->box, jumps->jumped substituted, "over" inserted: 3 edits / 5 words
    assert wer(ref, hyp) == pytest.approx(3 / 5)
    # chars (25 with spaces): f->b, s->e, +d, +" over" (5): 8 edits
    assert cer(ref, hyp) == pytest.approx(8 / 25)
    assert wer("Hello, world!", "hello world") == 0.0
    assert wer("Hello, world!", "hello world", normalize=False) == 1.0
    assert wer("a b", "") == 1.0
    with pytest.raises(ValueError, match="empty"):
        wer("?!", "words")


def test_corpus_rates_sum_edits_over_words() -> None:
    refs = ["one two three four", "five", ""]
    hyps = ["one two three four", "six", "extra"]
    scores = corpus_error_rates(refs, hyps)
    # 1 substitution + 1 insertion over 5 reference words; the mean of ratios would differ.
    assert scores.words.errors == 2 and scores.words.reference_length == 5
    assert scores.wer == pytest.approx(2 / 5)
    # chars: "one two three four" (18) + "five" (4); five->six is 3 edits, "extra" 5 more
    assert scores.chars.reference_length == 22
    assert scores.cer == pytest.approx(8 / 22)
    assert scores.n_utterances == 3
    with pytest.raises(ValueError, match="2 hypotheses"):
        corpus_error_rates(["a", "b", "c"], ["a", "b"])


def test_missing_pocketsphinx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import pocketsphinx` raise ImportError.
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'neurotts\[eval\]'"):
        Recognizer()
    monkeypatch.setitem(sys.modules, "jiwer", None)
    with pytest.raises(MissingDependencyError, match="jiwer"):
        wer("a", "b")


def test_asr_input_conversion() -> None:
    wav = 0.5 * np.sin(np.linspace(0, 200, 22050)).astype(np.float32)
    pcm = to_asr_pcm(wav, 22050)
    assert pcm.dtype == np.int16 and abs(pcm.size - ASR_SAMPLE_RATE) <= 1
    assert 15000 < np.abs(pcm).max() < 16600  # half scale, plus resampling ripple
    int_pcm = np.round(wav * 32767).astype(np.int16)  # int16 at 16 kHz passes through
    assert np.abs(to_asr_pcm(int_pcm, 16000).astype(int) - int_pcm).max() <= 1
    with pytest.raises(ValueError, match="mono"):
        to_asr_pcm(np.zeros((2, 100), dtype=np.float32), 16000)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    pytest.importorskip("pocketsphinx")
    return Recognizer()


def _sample_clip(uid: str) -> tuple[np.ndarray, int, str]:
    rows = (SAMPLE / "metadata.csv").read_text(encoding="utf-8").splitlines()
    normalized = dict((r.split("|")[0], r.split("|")[2]) for r in rows)
    wav, sr = sf.read(SAMPLE / "wavs" / f"{uid}.wav", dtype="float32")
    return wav, sr, normalized[uid]


@requires_sample
def test_pocketsphinx_transcribes_real_speech(recognizer: Recognizer) -> None:
    wav, sr, text = _sample_clip("LJ001-0001")  # 9.7 s
    short, short_sr, _ = _sample_clip("LJ001-0002")  # 1.9 s
    first = recognizer.transcribe(short, short_sr)
    hyp = recognizer.transcribe(wav, sr)
    assert wer(text, hyp) < 0.5, hyp
    # Decoding state is reset per call, so a clip transcribes the same after another one.
    assert recognizer.transcribe(short, short_sr) == first
    assert recognizer.transcribe(np.zeros(0, dtype=np.float32), sr) == ""
