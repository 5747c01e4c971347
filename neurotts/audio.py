"""Audio frontend: reading any audio libsndfile decodes (wav, flac, ogg, mp3), mono mix,
resampling, silence trimming, log-mel and mu-law.

One :class:`AudioConfig` drives all of it (the store's, a checkpoint's, a vocoder's). Log-mels are computed with
torchaudio transforms (Slaney mel scale and norm, magnitude spectrogram, clamp before log), so
the CPU and GPU paths are the same code and match ``librosa.feature.melspectrogram`` with
``power=1, htk=False, norm="slaney", center=True, pad_mode="reflect"``.

Frame convention: a waveform of ``n_samples = n_frames * hop`` samples owns exactly
``n_frames`` mel frames; frame ``t`` is centred on sample ``t * hop``. (A centred STFT yields one
extra frame for the sample at ``n_samples``, which belongs to the next hop; it is dropped.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from omegaconf import MISSING

from neurotts.config import constrained
from neurotts.errors import UserError


@dataclass
class AudioConfig:
    """Signal-processing settings. Values come only from ``configs/audio/*.yaml``."""

    sample_rate: int = constrained(ge=1)
    n_fft: int = constrained(ge=1)
    hop_length: int = constrained(ge=1)
    win_length: int = constrained(ge=1)
    n_mels: int = constrained(ge=1)
    fmin: float = constrained(ge=0)
    fmax: float | None = constrained(gt=0)
    log_floor: float = constrained(gt=0)
    trim_silence: bool = MISSING
    trim_top_db: float = constrained(gt=0)
    max_duration: float = constrained(gt=0)


class AudioError(UserError, ValueError):
    """An audio file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class AudioSource:
    """What a file held before it was converted to the audio config."""

    container: str  # soundfile's format name: "WAV", "FLAC", "OGG", "MP3", ...
    sample_rate: int
    channels: int

    def describe(self) -> str:
        """e.g. "flac 48 kHz stereo", the words a prepare summary counts clips by."""
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{self.container.lower()} {self.sample_rate / 1000:g} kHz {layout}"

    def converted(self, sample_rate: int) -> bool:
        """True when reading it took more than decoding a mono wav at ``sample_rate``."""
        return self.sample_rate != sample_rate or self.channels != 1 or self.container != "WAV"


def read_audio(path: str | Path, sample_rate: int) -> tuple[np.ndarray, AudioSource]:
    """Read any file libsndfile decodes (wav, flac, ogg/vorbis/opus, mp3, aiff, ...) as mono
    float32 in [-1, 1] at ``sample_rate``, with what it held before.

    Any bit depth is accepted; channels are averaged; other rates are resampled (band-limited
    sinc, torchaudio). Raises :class:`AudioError` naming the file.
    """
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            source = AudioSource(f.format, f.samplerate, f.channels)
            data = f.read(dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if source.sample_rate != sample_rate:
        wav = resample(wav, source.sample_rate, sample_rate)
    return np.ascontiguousarray(wav, dtype=np.float32), source


def load_wav(path: str | Path, sample_rate: int) -> np.ndarray:
    """:func:`read_audio` without the source description."""
    return read_audio(path, sample_rate)[0]


def resample(wav: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 signal."""
    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wav)), orig_sr, new_sr)
    return out.numpy()


def trim_silence(wav: np.ndarray, top_db: float, frame_length: int, hop_length: int) -> np.ndarray:
    """Cut leading and trailing audio quieter than ``top_db`` below the clip's loudest frame.

    Frame energy (windows of ``frame_length`` every ``hop_length``, the STFT's own sizes) is
    summed from per-hop blocks, so the cut costs one pass over the samples. Digital silence
    (RMS under -100 dBFS) never counts as sound, so an all-zero clip trims to nothing.
    """
    if wav.size < frame_length:
        return wav
    n_blocks = wav.size // hop_length
    blocks = np.einsum("ij,ij->i", *(wav[: n_blocks * hop_length].reshape(n_blocks, hop_length),) * 2)
    per_frame = max(frame_length // hop_length, 1)
    csum = np.concatenate([[0.0], np.cumsum(blocks, dtype=np.float64)])
    starts = np.arange(0, n_blocks - per_frame + 1)  # frame i spans blocks [i, i + per_frame)
    power = (csum[starts + per_frame] - csum[starts]) / (per_frame * hop_length)  # (n_frames,)
    floor = max(power.max() * 10.0 ** (-top_db / 10.0), 1e-10)
    loud = np.flatnonzero(power > floor)
    if loud.size == 0:
        return wav[:0]
    start = int(starts[loud[0]]) * hop_length
    stop = min(wav.size, (int(starts[loud[-1]]) + per_frame) * hop_length)
    return wav[start:stop]


def fit_to_hop(wav: np.ndarray, hop_length: int) -> np.ndarray:
    """Drop the tail samples past the last whole hop, so ``len(wav) % hop_length == 0``."""
    return wav[: (wav.size // hop_length) * hop_length]


def mel_filterbank(cfg: AudioConfig) -> torch.Tensor:
    """The Slaney-scale, Slaney-normalised filterbank ``(n_fft // 2 + 1, n_mels)``."""
    return AF.melscale_fbanks(
        n_freqs=cfg.n_fft // 2 + 1, f_min=cfg.fmin,
        f_max=cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2,
        n_mels=cfg.n_mels, sample_rate=cfg.sample_rate, norm="slaney", mel_scale="slaney",
    )


class LogMel(torch.nn.Module):
    """Waveform ``(..., T)`` -> log-mel ``(..., T // hop, n_mels)``, on any device.

    A centred, reflect-padded magnitude STFT (periodic Hann window) through torchaudio's Slaney
    filterbank, clamped and logged. Only the FFT bins the filterbank uses (up to ``fmax``) are
    turned into magnitudes: |X| is the costliest step, and above 8 kHz it is wasted.

    The filterbank product runs in float64 and is rounded to float32 once, so it gives the same
    numbers on every device whatever global matmul precision a caller set: training turns TF32
    on for CUDA matmuls, and ``torch.set_float32_matmul_precision("medium")`` (or oneDNN's
    ``fp32_precision = "bf16"``) makes CPU fp32 matmuls use bf16 on CPUs that have it. It costs
    ~2 ms per 10 s of audio on one core. CPU and GPU still differ by their float32 FFTs: to
    ~1e-5 in the log where a bin is within 60 dB of the clip's peak, to a few 1e-3 in bins far
    below it near the clamp floor (as float32 against a float64 STFT, measured on the CPU).
    """

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = cfg.n_fft, cfg.hop_length, cfg.win_length
        self.log_floor = cfg.log_floor
        fb = mel_filterbank(cfg)  # (n_freqs, n_mels)
        self.n_used = int((fb.sum(dim=1) > 0).nonzero().max()) + 1
        fb_t = fb[: self.n_used].T.contiguous().double()
        self.register_buffer("fb_t", fb_t)  # (n_mels, n_used) float64
        self.register_buffer("window", torch.hann_window(cfg.win_length))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        n_frames = wav.shape[-1] // self.hop_length
        x = wav.reshape(-1, wav.shape[-1]).float()  # (N, T)
        spec = torch.stft(
            x, self.n_fft, self.hop_length, self.win_length, self.window,
            center=True, pad_mode="reflect", return_complex=True,
        )  # (N, n_freqs, n_frames + 1)
        mag = spec[:, : self.n_used, :n_frames].abs()  # (N, n_used, n_frames)
        mel = (self.fb_t.double() @ mag.double()).float()  # (N, n_mels, n_frames), see above
        mel = torch.log(torch.clamp(mel, min=self.log_floor))
        return mel.transpose(-1, -2).reshape(*wav.shape[:-1], n_frames, self.fb_t.shape[0])


def log_mel(wav: np.ndarray | torch.Tensor, cfg: AudioConfig) -> np.ndarray:
    """Convenience wrapper: 1-D waveform -> float32 array ``(n_frames, n_mels)``."""
    x = torch.as_tensor(wav, dtype=torch.float32)
    with torch.no_grad():
        return LogMel(cfg)(x).numpy()


def float_to_int16(wav: np.ndarray) -> np.ndarray:
    return np.clip(np.round(wav * 32767.0), -32768, 32767).astype(np.int16)


def int16_to_float(wav: np.ndarray) -> np.ndarray:
    return wav.astype(np.float32) / 32767.0


def load_clip(path: str | Path, cfg: AudioConfig) -> np.ndarray:
    """A corpus clip as ``prepare`` keeps it (see :func:`clip_from`)."""
    return clip_from(load_wav(path, cfg.sample_rate), cfg, path)


def clip_from(wav: np.ndarray, cfg: AudioConfig, path: str | Path) -> np.ndarray:
    """A clip's samples (read at ``cfg.sample_rate``) as ``prepare`` keeps them: silence
    trimmed (if ``cfg.trim_silence``), cut to whole hops, as 16-bit PCM ``(n_samples,)`` int16
    (its mel is computed from these samples, so a store's features and audio agree exactly).
    :class:`AudioError` naming ``path`` when nothing of it is left."""
    if cfg.trim_silence:
        wav = trim_silence(wav, cfg.trim_top_db, cfg.win_length, cfg.hop_length)
    wav = fit_to_hop(wav, cfg.hop_length)
    if wav.size == 0:
        raise AudioError(f"{path}: silent or shorter than one hop")
    return float_to_int16(wav)


def save_wav(path: str | Path, wav: np.ndarray | torch.Tensor, sample_rate: int) -> None:
    """Write a mono float waveform as 16-bit PCM wav (written to a temporary name, then renamed)."""
    path = Path(path)
    data = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), float_to_int16(data.astype(np.float32).reshape(-1)), sample_rate,
             subtype="PCM_16", format="WAV")
    tmp.replace(path)


def mu_law_encode(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """Float waveform in [-1, 1] -> integer classes in ``[0, channels)`` (companded)."""
    mu = channels - 1
    x = torch.clamp(wav, -1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * torch.abs(x)) / math.log1p(mu)
    return torch.clamp(((y + 1.0) / 2.0 * mu + 0.5).long(), 0, mu)


def mu_law_decode(classes: torch.Tensor, channels: int) -> torch.Tensor:
    """Integer classes in ``[0, channels)`` -> float waveform in [-1, 1]."""
    mu = channels - 1
    y = 2.0 * classes.float() / mu - 1.0
    return torch.sign(y) * (torch.pow(1.0 + mu, torch.abs(y)) - 1.0) / mu


class MelNorm:
    """Per-channel z-scoring of log-mels with a feature store's train-split statistics (or the
    identity): the map between log-mels and the space models are trained in. Training builds
    it from the store (``MelNorm(store.mel_mean, store.mel_std, enabled)``) and saves
    :meth:`state` in every checkpoint; synthesis rebuilds it with :meth:`from_state`."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, enabled: bool):
        self.enabled = enabled
        self.mean = np.asarray(mean, dtype=np.float32)  # (n_mels,)
        self.std = np.maximum(np.asarray(std, dtype=np.float32), 1e-5)  # (n_mels,)

    @classmethod
    def from_state(cls, state: dict[str, object]) -> MelNorm:
        """The inverse of :meth:`state`: rebuild from a checkpoint's ``mel_norm``."""
        return cls(np.asarray(state["mean"]), np.asarray(state["std"]), bool(state["enabled"]))

    def normalize_np(self, mel: np.ndarray) -> np.ndarray:
        """``(T, n_mels)`` log-mel array -> model space (data loading, on the CPU)."""
        return (mel - self.mean) / self.std if self.enabled else mel

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        """``(..., n_mels)`` log-mel tensor -> model space (on the tensor's device)."""
        if not self.enabled:
            return mel
        mean = torch.as_tensor(self.mean, device=mel.device, dtype=mel.dtype)
        std = torch.as_tensor(self.std, device=mel.device, dtype=mel.dtype)
        return (mel - mean) / std

    def inverse(self, mel: torch.Tensor) -> torch.Tensor:
        """``(..., n_mels)`` model space -> log-mel."""
        if not self.enabled:
            return mel
        mean = torch.as_tensor(self.mean, device=mel.device, dtype=mel.dtype)
        std = torch.as_tensor(self.std, device=mel.device, dtype=mel.dtype)
        return mel * std + mean

    def state(self) -> dict[str, object]:
        """Plain-tensor description for checkpoints (synthesis undoes the normalisation)."""
        return {"enabled": self.enabled, "mean": torch.from_numpy(self.mean.copy()),
                "std": torch.from_numpy(self.std.copy())}
