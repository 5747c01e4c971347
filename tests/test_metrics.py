"""Objective metrics on synthetic signals whose true differences are known, plus plot smoke tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from neurotts import plots
from neurotts.evaluation.metrics import (
    CepstralAnalysis,
    duration_ratio,
    f0_metrics,
    log_mel_spectrogram,
    mcd_dtw,
    mcd_dtw_detailed,
    mcd_dtw_from_mels,
    mel_cepstrum,
)

SR = 22050
# (F1, F2) in Hz of a few vowel-like spectral envelopes; None is a fricative-like noise burst.
FORMANTS = [(700, 1200), (300, 2300), (500, 900), None, (400, 2000), (650, 1700)]


def utterance(segment_seconds: float, seed: int = 0) -> np.ndarray:
    """A speech-like sentence: vowel-like harmonic segments with a gliding pitch and a noise burst.

    The pitch contour and envelope follow *segment-relative* time, so a larger
    ``segment_seconds`` gives the same utterance spoken more slowly (what DTW must undo).
    """
    rng = np.random.default_rng(seed)
    n_seg = int(round(segment_seconds * SR))
    out = []
    phase = 0.0
    for k, formants in enumerate(FORMANTS):
        u = k + np.arange(n_seg) / n_seg  # (n_seg,) position in segments
        fade = np.minimum(1.0, np.minimum(np.arange(n_seg), n_seg - 1 - np.arange(n_seg)) / 200)
        if formants is None:
            seg = 0.1 * np.diff(rng.standard_normal(n_seg + 1))
        else:
            f0 = 120.0 + 25.0 * np.sin(2 * np.pi * u / len(FORMANTS))  # (n_seg,) Hz
            ph = phase + 2 * np.pi * np.cumsum(f0) / SR
            phase = float(ph[-1])
            seg = np.zeros(n_seg)
            for h in range(1, 40):
                freq = h * f0
                amp = 0.02 + sum(np.exp(-(((freq - f) / 150.0) ** 2)) for f in formants)
                seg += amp * np.sin(h * ph) * (freq < 7000)
            seg *= 0.3 / max(np.abs(seg).max(), 1e-9)
        out.append(seg * fade)
    return np.concatenate(out).astype(np.float32)


def tone(f0: float, seconds: float = 1.0) -> np.ndarray:
    """A steady harmonic tone (1/h amplitudes) at ``f0`` Hz."""
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 10))
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def with_noise(wav: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(wav.size)
    noise *= np.sqrt(np.mean(wav**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (wav + noise).astype(np.float32)


@pytest.fixture(scope="module")
def sentence() -> np.ndarray:
    return utterance(0.15)


def test_mcd_of_identical_signals_is_zero(sentence: np.ndarray) -> None:
    assert mcd_dtw(sentence, sentence, SR) == 0.0
    mels = log_mel_spectrogram(sentence, SR)
    assert mcd_dtw_from_mels(mels, mels) == 0.0


def test_mcd_grows_monotonically_with_noise(sentence: np.ndarray) -> None:
    values = [mcd_dtw(sentence, with_noise(sentence, snr), SR) for snr in (30.0, 20.0, 10.0)]
    assert 0.0 < values[0] < values[1] < values[2], values


def test_mcd_is_small_for_a_slower_rendition_thanks_to_dtw(sentence: np.ndarray) -> None:
    slower = utterance(0.18)  # same content, 20 % slower
    stretched = mcd_dtw_detailed(sentence, slower, SR)
    noisy = mcd_dtw(sentence, with_noise(sentence, 20.0), SR)
    different = mcd_dtw(sentence, utterance(0.15, seed=0)[::-1].copy(), SR)
    assert stretched.mcd_db < 0.5 * noisy < different, (stretched.mcd_db, noisy, different)
    # Without alignment (pairing frame t with frame t), the same pair scores far worse.
    ref = mel_cepstrum(log_mel_spectrogram(sentence, SR))
    syn = mel_cepstrum(log_mel_spectrogram(slower, SR))[: len(ref)]
    linear = 10 / math.log(10) * np.sqrt(2 * ((ref - syn) ** 2).sum(axis=1)).mean()
    assert stretched.mcd_db < 0.5 * linear
    assert duration_ratio(sentence, slower, SR) == pytest.approx(1.2, abs=0.03)
    path = stretched.path  # monotonic, from first to last frames
    assert tuple(path[0]) == (0, 0)
    assert tuple(path[-1]) == (stretched.n_ref_frames - 1, stretched.n_syn_frames - 1)
    assert (np.diff(path, axis=0) >= 0).all()


def test_mcd_of_silence_is_nan_with_reason(sentence: np.ndarray) -> None:
    silence = np.zeros(SR, dtype=np.float32)
    result = mcd_dtw_detailed(sentence, silence, SR)
    assert math.isnan(result.mcd_db) and "synthesised audio is silent" in result.reason
    assert math.isnan(mcd_dtw(silence, sentence, SR))
    assert math.isnan(duration_ratio(sentence, silence, SR))
    assert math.isnan(mcd_dtw_from_mels(np.zeros((2, 80)), np.zeros((50, 80))))
    with pytest.raises(ValueError, match="1-D"):
        mcd_dtw(np.stack([sentence, sentence]), sentence, SR)
    with pytest.raises(ValueError, match="n_mels"):
        mcd_dtw_from_mels(np.zeros((10, 80)), np.zeros((10, 40)))


def test_f0_rmse_of_a_pitch_shift_is_its_interval_in_cents() -> None:
    ratio = 1.06  # 1200 * log2(1.06) = 100.9 cents
    report = f0_metrics(tone(150.0), tone(150.0 * ratio), SR)
    expected = 1200 * math.log2(ratio)
    # pYIN reports F0 on a 10-cent grid, so each track may be off by up to 5 cents.
    assert report["log_f0_rmse_cents"] == pytest.approx(expected, abs=10.0), report
    assert report["log_f0_rmse"] == pytest.approx(math.log(ratio), abs=10 / 1731.2)
    assert report["vuv_error"] < 0.05 and report["reason"] is None
    assert report["duration_ratio"] == pytest.approx(1.0)


def test_voicing_error_on_tone_noise_and_silence() -> None:
    same = f0_metrics(tone(200.0), tone(200.0), SR)
    assert same["vuv_error"] < 0.05 and same["log_f0_rmse_cents"] < 1.0
    noise = np.random.default_rng(3).uniform(-0.3, 0.3, SR).astype(np.float32)
    unvoiced = f0_metrics(tone(200.0), noise, SR)
    assert unvoiced["vuv_error"] > 0.9, unvoiced
    assert math.isnan(unvoiced["log_f0_rmse"]) and "voiced in both" in unvoiced["reason"]
    silent = f0_metrics(tone(200.0), np.zeros(SR, dtype=np.float32), SR)
    assert all(math.isnan(silent[k]) for k in ("log_f0_rmse", "vuv_error", "duration_ratio"))
    assert "silent" in silent["reason"]


def test_custom_analysis_is_honoured(sentence: np.ndarray) -> None:
    coarse = CepstralAnalysis(n_mels=40, n_cepstra=13, trim_top_db=None)
    mels = log_mel_spectrogram(sentence, SR, coarse)
    assert mels.shape == (1 + sentence.size // coarse.hop_length, 40)
    assert mcd_dtw(sentence, with_noise(sentence, 20.0), SR, coarse) > 0.0


def test_plots_write_pngs(tmp_path: Path, sentence: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    alignments = [rng.random((60, 20)), rng.random((80, 25)), rng.random((40, 10))]
    fig = plots.plot_alignments(alignments, titles=["a", "b", "c"], ncols=2)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3
    png = plots.save_figure(fig, tmp_path / "align" / "grid.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mel = log_mel_spectrogram(sentence, SR)
    image = plots.figure_to_image(plots.plot_mel_comparison(mel[:-5], mel, title="utt"))
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    with pytest.raises(ValueError, match="titles"):
        plots.plot_alignments(alignments, titles=["only one"])


def _diagonal(t_dec: int, t_text: int, upto: int | None = None) -> np.ndarray:
    a = np.zeros((t_dec, t_text))
    last = (upto if upto is not None else t_text) - 1
    for t in range(t_dec):
        a[t, round(t * last / (t_dec - 1))] = 1.0
    return a


def test_failure_flags_classify_alignments():
    from neurotts.evaluation.run import failure_flags

    clean = failure_flags(_diagonal(60, 20), False, 3, 4)
    assert clean == {"max_steps": False, "early_stop": False, "skip": False, "repeat": False}
    # stopped with the last 6 symbols never reached: an early stop, not a skip
    early = failure_flags(_diagonal(60, 20, upto=14), False, 3, 4)
    assert early["early_stop"] and not early["skip"]
    # jumped over symbols 8-12 in the middle
    jump = _diagonal(60, 20)
    jump[:, 8:13] = 0.0
    for t in range(60):
        if jump[t].sum() == 0:
            jump[t, 13] = 1.0
    assert failure_flags(jump, False, 3, 4)["skip"]
    # went back from symbol 15 to symbol 5: a repeat
    back = np.concatenate([_diagonal(40, 20, upto=16), _diagonal(30, 20)[5:]])
    assert failure_flags(back, False, 3, 4)["repeat"]
    assert failure_flags(_diagonal(60, 20, upto=10), True, 3, 4) == {
        "max_steps": True, "early_stop": False, "skip": False, "repeat": False}
