"""Mel -> waveform without a trained model: Griffin-Lim from the store's own mel settings."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torchaudio.functional as AF

from neurotts.audio import mel_filterbank

if TYPE_CHECKING:
    from neurotts.config import AudioConfig


class GriffinLimVocoder(torch.nn.Module):
    """Log-mel ``(B, T, n_mels)`` -> waveform ``(B, T * hop)``.

    The mel filterbank is inverted with its pseudo-inverse (clamped at zero: magnitudes are
    non-negative), which is one matrix product instead of an iterative least-squares solve, then
    the phase is recovered with momentum Griffin-Lim. Uses the same Slaney filterbank as
    :class:`neurotts.audio.LogMel`, built from the same :class:`AudioConfig`.
    """

    def __init__(self, cfg: AudioConfig, n_iter: int = 60, momentum: float = 0.99):
        super().__init__()
        self.hop_length = cfg.hop_length
        fb = mel_filterbank(cfg)  # (n_freqs, n_mels)
        self.register_buffer("inverse", torch.linalg.pinv(fb))  # (n_mels, n_freqs)
        self.register_buffer("window", torch.hann_window(cfg.win_length))
        self.n_fft, self.win_length = cfg.n_fft, cfg.win_length
        self.n_iter, self.momentum = n_iter, momentum
        self.log_floor = math.log(cfg.log_floor)
        # The STFT's reflect padding needs more than n_fft / 2 samples of signal.
        self.min_frames = cfg.n_fft // (2 * cfg.hop_length) + 1

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        n_samples = log_mel.shape[-2] * self.hop_length
        if log_mel.shape[-2] < self.min_frames:  # a very short output: pad with silence
            pad = log_mel.new_full((*log_mel.shape[:-2], self.min_frames - log_mel.shape[-2],
                                    log_mel.shape[-1]), self.log_floor)
            log_mel = torch.cat([log_mel, pad], dim=-2)
        mel = torch.exp(log_mel.float())  # (B, T, n_mels) magnitudes
        linear = torch.clamp(mel @ self.inverse, min=0.0).transpose(-1, -2)  # (B, n_freqs, T)
        # A centred STFT of T * hop samples has T + 1 frames; our mels drop the last one
        # (see neurotts.audio), so repeat the final frame to restore it.
        linear = torch.cat([linear, linear[..., -1:]], dim=-1)
        wav = AF.griffinlim(
            linear, self.window, self.n_fft, self.hop_length, self.win_length, power=1.0,
            n_iter=self.n_iter, momentum=self.momentum, length=log_mel.shape[-2] * self.hop_length,
            rand_init=False,
        )[..., :n_samples]  # (B, n_samples)
        # Peak-normalise gently: GL output level depends on the inverse's conditioning.
        peak = wav.abs().amax(dim=-1, keepdim=True).clamp(min=1e-4)
        return wav * torch.clamp(0.95 / peak, max=1.0)
