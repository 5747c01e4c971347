"""Griffin-Lim in numpy: log-mel -> waveform, as :class:`neurotts.vocoders.GriffinLimModule`
does it in torch (same Slaney filterbank and pseudo-inverse, same centred reflect-padded STFT
with a periodic Hann window, same momentum update and zero-phase start, same peak
normalisation), so the two agree to float32 rounding (tests/test_runtime.py states how close).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = math.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    return np.where(above, min_log_hz / f_sp + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(audio: dict[str, Any]) -> np.ndarray:
    """The Slaney-scale, Slaney-normalised filterbank ``(n_fft // 2 + 1, n_mels)`` float32, as
    :func:`neurotts.audio.mel_filterbank` builds it (computed in float32 like torchaudio)."""
    n_freqs, n_mels, sr = audio["n_fft"] // 2 + 1, audio["n_mels"], audio["sample_rate"]
    f_max = audio["fmax"] if audio["fmax"] is not None else sr / 2
    freqs = np.linspace(0, sr // 2, n_freqs, dtype=np.float32)
    m_min, m_max = (float(_hz_to_mel(np.float64(f))) for f in (audio["fmin"], f_max))
    f_pts = _mel_to_hz(np.linspace(m_min, m_max, n_mels + 2, dtype=np.float32)).astype(np.float32)
    f_diff = f_pts[1:] - f_pts[:-1]  # (n_mels + 1,)
    slopes = f_pts[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    return (fb * (2.0 / (f_pts[2:] - f_pts[:-2]))[None, :]).astype(np.float32)


class GriffinLim:
    """Log-mel ``(T, n_mels)`` -> float32 waveform ``(T * hop,)``."""

    def __init__(self, audio: dict[str, Any], n_iter: int, momentum: float):
        self.n_fft, self.hop = audio["n_fft"], audio["hop_length"]
        win = audio["win_length"]
        # Periodic Hann, zero-padded to n_fft in the middle (torch.stft's convention).
        hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)
        left = (self.n_fft - win) // 2
        self.window = np.zeros(self.n_fft, np.float32)
        self.window[left: left + win] = hann
        self.inverse = np.linalg.pinv(mel_filterbank(audio)).astype(np.float32)  # (n_mels, n_freqs)
        # torchaudio's griffinlim takes "momentum" m and applies m / (1 + m) (Perraudin et al.'s
        # fast Griffin-Lim parametrisation); the same here.
        self.n_iter, self.alpha = n_iter, momentum / (1 + momentum)
        self.log_floor = math.log(audio["log_floor"])
        self.min_frames = self.n_fft // (2 * self.hop) + 1  # reflect padding needs > n_fft / 2

    def _stft(self, wav: np.ndarray) -> np.ndarray:
        """``(N,)`` -> ``(N // hop + 1, n_freqs)`` complex64, centred with reflect padding."""
        padded = np.pad(wav, self.n_fft // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[:: self.hop]
        return np.fft.rfft(frames * self.window, axis=-1).astype(np.complex64)

    def _overlap_add(self, frames: np.ndarray) -> np.ndarray:
        """``(F, n_fft)`` -> ``(n_fft + hop * (F - 1),)``: each frame added at its hop."""
        n = self.n_fft + self.hop * (frames.shape[0] - 1)
        out = np.zeros(n, frames.dtype)
        if self.n_fft % self.hop == 0:  # a few shifted block sums instead of a loop per frame
            blocks = frames.reshape(frames.shape[0], -1, self.hop)  # (F, n_fft / hop, hop)
            for k in range(blocks.shape[1]):
                out[k * self.hop: k * self.hop + frames.shape[0] * self.hop] += blocks[:, k].reshape(-1)
            return out
        for i, frame in enumerate(frames):
            out[i * self.hop: i * self.hop + self.n_fft] += frame
        return out

    def _istft(self, spec: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``(F, n_freqs)`` -> ``(length,)`` with ``scale`` = 1 / the overlap-added squared
        window over the kept samples (:meth:`_envelope`), the centre padding cut off."""
        frames = np.fft.irfft(spec, n=self.n_fft, axis=-1).astype(np.float32) * self.window
        start = self.n_fft // 2
        out = self._overlap_add(frames)[start: start + scale.size]
        return np.pad(out, (0, scale.size - out.size)) * scale

    def _envelope(self, n_frames: int, length: int) -> np.ndarray:
        square = np.broadcast_to(self.window**2, (n_frames, self.n_fft))
        envelope = self._overlap_add(np.ascontiguousarray(square))[self.n_fft // 2:][:length]
        envelope = np.pad(envelope, (0, length - envelope.size))
        return (1.0 / np.where(envelope > 1e-11, envelope, 1.0)).astype(np.float32)

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        n_samples = log_mel.shape[0] * self.hop
        if log_mel.shape[0] < self.min_frames:  # a very short output: pad with silence
            pad = np.full((self.min_frames - log_mel.shape[0], log_mel.shape[1]), self.log_floor,
                          np.float32)
            log_mel = np.concatenate([log_mel, pad])
        mel = np.exp(log_mel.astype(np.float32))  # (T, n_mels) magnitudes
        linear = np.maximum(mel @ self.inverse, 0.0)  # (T, n_freqs)
        # T * hop samples have T + 1 centred frames; the mels drop the last: repeat it.
        magnitude = np.concatenate([linear, linear[-1:]]).astype(np.float32)
        scale = self._envelope(magnitude.shape[0], log_mel.shape[0] * self.hop)
        angles = np.ones(magnitude.shape, np.complex64)
        previous = np.zeros(magnitude.shape, np.complex64)
        for _ in range(self.n_iter):
            rebuilt = self._stft(self._istft(magnitude * angles, scale))
            angles = rebuilt - self.alpha * previous
            angles = angles / (np.abs(angles) + 1e-16)
            previous = rebuilt
        wav = self._istft(magnitude * angles, scale)[:n_samples]
        # Peak-normalise gently, as the torch vocoder does.
        peak = max(float(np.abs(wav).max(initial=0.0)), 1e-4)
        return (wav * min(0.95 / peak, 1.0)).astype(np.float32)
