"""Audio frontend: I/O in every format we accept, resampling, trimming, log-mel, mu-law."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from neurotts.audio import (
    AudioError,
    LogMel,
    fit_to_hop,
    load_wav,
    log_mel,
    mu_law_decode,
    mu_law_encode,
    save_wav,
    trim_silence,
)
from neurotts.config import load_config
from neurotts.data.config import PrepareConfig
from tests.conftest import speechlike


@pytest.fixture(scope="module")
def audio_cfg():
    return load_config("prepare", PrepareConfig, ["out=unused"]).audio


def librosa_logmel(wav: np.ndarray, cfg) -> np.ndarray:
    """The reference: librosa's Slaney mel on a centred, reflect-padded magnitude STFT."""
    mel = librosa.feature.melspectrogram(
        y=wav, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
        power=1.0, htk=False, norm="slaney", center=True, pad_mode="reflect",
    )
    return np.log(np.maximum(mel, cfg.log_floor)).T[: wav.size // cfg.hop_length]


@pytest.mark.parametrize(
    ("subtype", "fmt", "tol"),
    [("PCM_16", "WAV", 1e-4), ("PCM_24", "WAV", 1e-6), ("FLOAT", "WAV", 1e-7),
     ("PCM_U8", "WAV", 1e-2), ("PCM_16", "FLAC", 1e-4)],
)
def test_load_formats(tmp_path, subtype, fmt, tol):
    wav = speechlike(0.5, 22050)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, wav, 22050, subtype=subtype, format=fmt)
    out = load_wav(path, 22050)
    assert out.dtype == np.float32 and out.shape == wav.shape
    assert np.abs(out - wav).max() < tol


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = speechlike(0.3, 22050, seed=1), speechlike(0.3, 22050, seed=2)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 22050, subtype="FLOAT")
    out = load_wav(tmp_path / "s.wav", 22050)
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-6)


def test_resampling_keeps_duration_and_pitch(tmp_path):
    sr_in = 16000
    t = np.arange(sr_in) / sr_in
    sf.write(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), sr_in, subtype="FLOAT")
    out = load_wav(tmp_path / "tone.wav", 22050)
    assert out.size == 22050
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * 22050 / out.size
    assert abs(peak_hz - 440) < 2


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00\x00\x00WAVEjunk", b"not audio at all"])
def test_unreadable_files_raise_audio_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="bad.wav"):
        load_wav(path, 22050)


def test_truncated_wav_is_an_error_or_shorter(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(path, speechlike(1.0, 22050), 22050, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:44])  # header only: the data chunk claims samples it lacks
    with pytest.raises(AudioError, match="t.wav"):
        load_wav(path, 22050)


def test_trim_cuts_silence_on_frame_grid():
    sr, hop, win = 22050, 256, 1024
    wav = speechlike(1.0, sr, lead_silence=0.5)
    out = trim_silence(wav, 40.0, win, hop)
    assert 0.95 * sr < out.size < 1.15 * sr  # the 1 s of sound (plus up to a window) stays
    assert trim_silence(np.zeros(sr, np.float32), 40.0, win, hop).size == 0


def test_fit_to_hop():
    assert fit_to_hop(np.zeros(1000), 256).size == 768


def test_log_mel_matches_librosa(audio_cfg):
    wav = fit_to_hop(speechlike(1.3, audio_cfg.sample_rate), audio_cfg.hop_length)
    ours = log_mel(wav, audio_cfg)
    ref = librosa_logmel(wav, audio_cfg)
    assert ours.shape == (wav.size // audio_cfg.hop_length, audio_cfg.n_mels)
    # Stated tolerance: |log ours - log ref| < 5e-3 everywhere (0.5 % in magnitude, the float32
    # rounding of the quietest bins) and < 1e-4 on average; bins 60 dB under the peak agree to 1e-3.
    diff = np.abs(ours - ref)
    assert diff.max() < 5e-3
    assert diff.mean() < 1e-4
    assert diff[ref > ref.max() - np.log(1e3)].max() < 1e-3


def test_log_mel_batched_equals_single(audio_cfg):
    wavs = torch.from_numpy(np.stack([speechlike(0.5, 22050, seed=s)[:11264] for s in range(3)]))
    m = LogMel(audio_cfg)
    batched = m(wavs)
    for i in range(3):
        torch.testing.assert_close(batched[i], m(wavs[i]), atol=1e-5, rtol=0)


@pytest.fixture
def matmul_precision():
    """Restores the CPU (oneDNN) and CUDA fp32 matmul precision after a test. Only torch's
    per-backend API is used: mixing it with the legacy flags (``allow_tf32``,
    ``set_float32_matmul_precision``) makes later reads of either raise."""
    backends = (torch.backends.mkldnn.matmul, torch.backends.cuda.matmul)
    before = [b.fp32_precision for b in backends]
    yield
    for backend, value in zip(backends, before, strict=True):
        backend.fp32_precision = value


def test_log_mel_ignores_global_matmul_precision(audio_cfg, matmul_precision):
    """With oneDNN's fp32 matmuls set to bf16 (what ``set_float32_matmul_precision("medium")``
    does on CPUs with bf16), the filterbank product must not follow: bit-identical mel."""
    wav = torch.from_numpy(speechlike(1.0, 22050))
    m = LogMel(audio_cfg)
    exact = m(wav)
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    assert torch.equal(m(wav), exact)


def _agree_as_float32_ffts(a: torch.Tensor, b: torch.Tensor) -> None:
    """Two float32 STFT implementations agree to ~1e-5 in the log within 60 dB of the peak and
    to a few 1e-3 in the quietest bins near the clamp floor (float32 against float64 STFT on
    the CPU: 6e-6 and 2.2e-3 on this signal)."""
    diff = (a - b).abs()
    loud = b > b.max() - math.log(1e3)
    assert diff[loud].max() < 1e-4
    assert diff.max() < 5e-3
    assert diff.mean() < 1e-4


def test_float32_fft_tolerance_holds_against_float64_on_cpu(audio_cfg):
    """The tolerance the GPU comparison uses, checked on the CPU against a float64 STFT."""
    wav = torch.from_numpy(speechlike(1.0, 22050))
    m = LogMel(audio_cfg)
    spec = torch.stft(wav.double(), m.n_fft, m.hop_length, m.win_length, m.window.double(),
                      center=True, pad_mode="reflect", return_complex=True)
    n = wav.shape[-1] // m.hop_length
    reference = torch.log(torch.clamp(m.fb_t.double() @ spec[: m.n_used, :n].abs(),
                                      min=m.log_floor)).T.float()
    _agree_as_float32_ffts(m(wav), reference)


@pytest.mark.gpu
def test_log_mel_cpu_equals_gpu(audio_cfg, matmul_precision):
    wav = torch.from_numpy(speechlike(1.0, 22050))
    m = LogMel(audio_cfg)
    cpu = m(wav)
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    gpu = m.cuda()(wav.cuda()).cpu()
    _agree_as_float32_ffts(gpu, cpu)
    # Training turns TF32 on globally: the mel must not change with it.
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    assert torch.equal(m(wav.cuda()).cpu(), gpu)


def test_mu_law_round_trip():
    x = torch.linspace(-1, 1, 10001)
    y = mu_law_decode(mu_law_encode(x, 256), 256)
    assert mu_law_encode(x, 256).min() == 0 and mu_law_encode(x, 256).max() == 255
    # companding: small amplitudes are reproduced finely, large ones coarsely
    small = x.abs() < 0.01
    assert (y[small] - x[small]).abs().max() < 1e-3
    assert (y - x).abs().max() < 0.03


def test_save_wav_round_trip(tmp_path):
    wav = speechlike(0.2, 22050)
    save_wav(tmp_path / "o.wav", wav, 22050)
    back, sr = sf.read(tmp_path / "o.wav", dtype="float32")
    assert sr == 22050 and np.abs(back - wav).max() < 1e-4
    assert not list(tmp_path.glob("*.part"))
