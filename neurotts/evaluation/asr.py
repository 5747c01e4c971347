"""Offline intelligibility: pocketsphinx transcription and word/character error rates.

Synthesised speech is transcribed by CMU pocketsphinx 5 with the US-English acoustic model,
language model and dictionary bundled in its wheel (nothing is downloaded), and scored against
the sentence's text. On natural LJSpeech clips this recogniser already makes errors
(WER about 0.27), so synthesis is judged against that natural-speech figure, not against zero.

pocketsphinx and jiwer are optional (``pip install 'neurotts[eval]'``); they are imported when
first needed, so importing this module never fails, and a missing one raises
:class:`MissingDependencyError` naming the extra.

Scoring normalises both texts the same way (:func:`normalize_text`). Corpus figures
(:func:`corpus_error_rates`) sum edits and reference lengths over all utterances, so long
sentences weigh more than short ones, unlike a mean of per-utterance rates.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import librosa
import numpy as np

from neurotts.errors import UserError

ASR_SAMPLE_RATE = 16000  # the bundled acoustic model is trained on 16 kHz audio
_MIN_SAMPLES = 400  # one 25 ms frame at 16 kHz; the decoder fails on less
_INSTALL_HINT = "install the evaluation extra: pip install 'neurotts[eval]'"
_APOSTROPHES = re.compile(r"['\u2019\u02bc]")


class MissingDependencyError(UserError, ImportError):
    """An optional evaluation dependency is not installed; the message says how to get it."""


def import_optional(module: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed but is needed for {purpose}; {_INSTALL_HINT}"
        ) from exc


class Recognizer:
    """A reusable pocketsphinx decoder: ``Recognizer().transcribe(wav, sample_rate) -> str``.

    Loading the model takes about half a second, so build one and reuse it. Decoding runs at
    about 0.3x real time in CPU time on one core here (0.5x wall-clock on a busy 2-core
    machine: 207 s of LJSpeech in 105 s). Each call is one utterance with freshly reset
    feature extraction, so a clip's transcript does not depend on what was decoded before it.
    Not thread-safe: use one instance per worker.

    The model files default to the ones inside the pocketsphinx wheel; pass paths to override
    (``acoustic_model`` is a folder, the others files). ``log_level`` is pocketsphinx's own
    (``"FATAL"`` keeps its INFO chatter off stderr; ``"INFO"`` to debug).
    """

    def __init__(
        self,
        acoustic_model: str | Path | None = None,
        language_model: str | Path | None = None,
        dictionary: str | Path | None = None,
        log_level: str = "FATAL",
    ) -> None:
        ps = import_optional("pocketsphinx", "offline speech recognition (ASR) evaluation")
        overrides: dict[str, str] = {"loglevel": log_level, "samprate": str(ASR_SAMPLE_RATE)}
        for key, path in (("hmm", acoustic_model), ("lm", language_model), ("dict", dictionary)):
            if path is not None:
                if not Path(path).exists():
                    raise FileNotFoundError(f"pocketsphinx {key} model not found: {path}")
                overrides[key] = str(path)
        config = ps.Config(**overrides)
        self._decoder = ps.Decoder(config)

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        """Recognise one utterance: mono ``(n_samples,)`` float audio in [-1, 1] (or int16
        PCM) at any ``sample_rate`` Hz -> lower-case words separated by spaces (``""`` when
        nothing is recognised). The audio is resampled to 16 kHz and clipped to int16."""
        pcm = to_asr_pcm(wav, sample_rate)  # (n_16k,) int16
        if pcm.size < _MIN_SAMPLES:
            return ""  # shorter than one 25 ms analysis window: nothing to recognise
        # Feature extraction keeps state (the live cepstral-mean estimate) across utterances
        # even with full_utt=True, so the same clip decoded after another can come out
        # differently; resetting it (~0.1 ms) makes every call independent and repeatable.
        self._decoder.reinit_feat()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        if hyp is None:
            return ""
        # Drop filler and noise tokens (<s>, [NOISE], ...); the LM decoder rarely emits them.
        words = [w for w in hyp.hypstr.split() if not (w.startswith(("<", "[")))]
        return " ".join(words)


def to_asr_pcm(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(n_samples,)`` audio at ``sample_rate`` -> ``(n,)`` int16 at 16 kHz for the decoder.

    Float input is taken as [-1, 1] full scale and clipped; int16 input is scaled back first.
    """
    if not isinstance(wav, np.ndarray) or wav.ndim != 1:
        shape = wav.shape if isinstance(wav, np.ndarray) else type(wav).__name__
        raise ValueError(f"ASR input must be mono 1-D audio (n_samples,), got {shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
    if wav.dtype == np.int16:
        audio = wav.astype(np.float32) / 32768.0
    elif np.issubdtype(wav.dtype, np.floating):
        audio = wav.astype(np.float32)
    else:
        raise ValueError(f"ASR input must be float or int16 audio, got dtype {wav.dtype}")
    if not np.isfinite(audio).all():
        raise ValueError("ASR input contains NaN or infinite samples")
    if sample_rate != ASR_SAMPLE_RATE and audio.size:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=ASR_SAMPLE_RATE)
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def normalize_text(text: str) -> str:
    """Text as compared for scoring: Unicode-compatibility folded, lower-cased, apostrophes
    removed (``don't`` -> ``dont``, so contractions match however they are written), every
    other character that is not a letter or digit turned into a space (punctuation, hyphens),
    and runs of whitespace collapsed to one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("", text)
    text = "".join(ch if ch.isalnum() else " " for ch in text)
    return " ".join(text.split())


@dataclass(frozen=True)
class ErrorCounts:
    """Levenshtein edits of a hypothesis against a reference, in words or characters.

    ``reference_length`` counts reference tokens (characters include the single spaces between
    words). ``rate`` = (substitutions + deletions + insertions) / reference_length; it can
    exceed 1 when the hypothesis inserts a lot.
    """

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        if self.reference_length == 0:
            raise ValueError("error rate is undefined: the reference text is empty")
        return self.errors / self.reference_length


@dataclass(frozen=True)
class CorpusErrorRates:
    """Word and character errors summed over a corpus; ``wer``/``cer`` are total edits over
    total reference length (not a mean of per-utterance ratios)."""

    words: ErrorCounts
    chars: ErrorCounts
    n_utterances: int

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate


def word_errors(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> ErrorCounts:
    """Word edits summed over aligned lists of reference and hypothesis texts."""
    jiwer = import_optional("jiwer", "word error rate scoring")
    r, h = _prepared(refs, hyps, normalize)
    out = jiwer.process_words(r, h)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions,
                       out.substitutions + out.deletions + out.hits)


def char_errors(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> ErrorCounts:
    """Character edits (spaces included) summed over aligned lists of texts."""
    jiwer = import_optional("jiwer", "character error rate scoring")
    r, h = _prepared(refs, hyps, normalize)
    out = jiwer.process_characters(r, h)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions,
                       out.substitutions + out.deletions + out.hits)


def wer(ref: str, hyp: str, normalize: bool = True) -> float:
    """Word error rate of one hypothesis (edits / reference words, after
    :func:`normalize_text` unless ``normalize`` is False). Raises ValueError on an empty
    reference, where the rate is undefined."""
    return word_errors([ref], [hyp], normalize).rate


def cer(ref: str, hyp: str, normalize: bool = True) -> float:
    """Character error rate of one hypothesis (edits / reference characters, spaces
    included). Raises ValueError on an empty reference."""
    return char_errors([ref], [hyp], normalize).rate


def corpus_error_rates(
    refs: Sequence[str], hyps: Sequence[str], normalize: bool = True
) -> CorpusErrorRates:
    """Corpus-level WER and CER: edits summed over utterances divided by the summed reference
    length. Empty references are allowed (their hypothesis words count as insertions) as long
    as the corpus has some reference text."""
    return CorpusErrorRates(word_errors(refs, hyps, normalize), char_errors(refs, hyps, normalize),
                            len(refs))


def _prepared(refs: Sequence[str], hyps: Sequence[str], normalize: bool) -> tuple[list[str], list[str]]:
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("refs and hyps must be sequences of strings, not single strings")
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    if len(refs) == 0:
        raise ValueError("cannot score an empty list of utterances")
    clean = normalize_text if normalize else (lambda s: " ".join(s.split()))
    return [clean(r) for r in refs], [clean(h) for h in hyps]
