"""Vocoders: log-mel -> waveform. Two implementations behind one interface (:class:`Vocoder`):

* :class:`GriffinLimVocoder` needs no trained model: the mel filterbank is inverted and the
  phase recovered with Griffin-Lim, from the audio settings alone (:class:`GriffinLimModule`);
* :class:`WaveNetVocoder` is a trained WaveNet checkpoint, generating sample by sample, each
  utterance folded into segments generated as one batch (:mod:`neurotts.models.wavenet.fold`),
  with the :class:`~neurotts.models.wavenet.options.GenerateOptions` of the config's
  ``vocoder`` section.

:func:`load_vocoder` turns the user's choice (``griffinlim`` or a run folder / checkpoint) into
one of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import MISSING

from neurotts.audio import AudioConfig, mel_filterbank
from neurotts.checkpoint import load_trained
from neurotts.config import did_you_mean
from neurotts.errors import UserError
from neurotts.models.wavenet import cpu_kernel
from neurotts.models.wavenet.fold import generate_folded
from neurotts.models.wavenet.options import GenerateOptions

GRIFFIN_LIM = "griffinlim"


@dataclass
class VocoderConfig(GenerateOptions):
    """``vocoder`` section of configs/synth.yaml and eval.yaml: which vocoder, and (WaveNet
    only) the options of its generation (temperature, folding, precision)."""

    path: str = MISSING  # WaveNet run folder or checkpoint, or "griffinlim" (--vocoder)


class GriffinLimModule(torch.nn.Module):
    """Log-mel ``(B, T, n_mels)`` -> waveform ``(B, T * hop)``.

    The mel filterbank is inverted with its pseudo-inverse (clamped at zero: magnitudes are
    non-negative), which is one matrix product instead of an iterative least-squares solve, then
    the phase is recovered with momentum Griffin-Lim (zero initial phase). Uses the same Slaney
    filterbank as :class:`neurotts.audio.LogMel`, built from the same :class:`AudioConfig`.

    The iteration is torchaudio's ``griffinlim`` up to float rounding (tests/test_synthesis_parts.py
    compares them), about 2x less CPU: the inverse STFT is an ``irfft`` and an overlap-add of
    ``n_fft / hop`` shifted slices (``torch.istft`` costs about three forward STFTs here),
    spectra stay ``(B, frames, freqs)`` so no transpose is copied, and the phase step is one
    ``sub`` with ``alpha`` and one ``sgn`` (torchaudio divides by ``abs() + 1e-16``).
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
        wav = self.unnormalised(log_mel)
        # Peak-normalise gently: GL output level depends on the inverse's conditioning.
        peak = wav.abs().amax(dim=-1, keepdim=True).clamp(min=1e-4)
        return wav * torch.clamp(0.95 / peak, max=1.0)

    @torch.no_grad()
    def unnormalised(self, log_mel: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without its per-call peak normalisation (the server vocodes a
        streamed utterance one chunk per call, and a gain that depends on each chunk's own
        peak would make the level jump at the joins)."""
        hop = self.hop_length
        n_samples = log_mel.shape[-2] * hop
        if log_mel.shape[-2] < self.min_frames:  # a very short output: pad with silence
            pad = log_mel.new_full((*log_mel.shape[:-2], self.min_frames - log_mel.shape[-2],
                                    log_mel.shape[-1]), self.log_floor)
            log_mel = torch.cat([log_mel, pad], dim=-2)
        linear = torch.clamp(torch.exp(log_mel.float()) @ self.inverse, min=0.0)  # (B, T, F)
        # A centred STFT of T * hop samples has T + 1 frames; our mels drop the last one
        # (see neurotts.audio), so repeat the final frame to restore it.
        linear = torch.cat([linear, linear[:, -1:]], dim=1)  # (B, T + 1, F)
        stft = _Stft(self, linear.shape[1], log_mel.shape[-2] * hop)
        spec = linear.to(torch.complex64)  # zero initial phase
        previous = None
        keep = self.momentum / (1 + self.momentum)
        for _ in range(self.n_iter):
            rebuilt = stft.forward(stft.inverse(spec))
            step = rebuilt if previous is None else torch.sub(rebuilt, previous, alpha=keep)
            spec = torch.sgn(step).mul_(linear)
            previous = rebuilt
        return stft.inverse(spec)[..., :n_samples]


class _Stft:
    """Centred STFT and its inverse for ``frames`` frames of a ``length``-sample signal, as
    ``torch.stft(center=True, pad_mode="reflect")`` and ``torch.istft`` compute them, with
    spectra laid out ``(B, frames, n_fft // 2 + 1)``."""

    def __init__(self, module: GriffinLimModule, frames: int, length: int):
        n_fft, hop = module.n_fft, module.hop_length
        left = (n_fft - module.win_length) // 2  # torch centres a shorter window in n_fft
        self.window = F.pad(module.window, (left, n_fft - module.win_length - left))
        self.n_fft, self.hop, self.frames, self.length = n_fft, hop, frames, length
        self.overlap = n_fft // hop if n_fft % hop == 0 else None  # slices per frame
        if self.overlap is not None:  # sum of squared windows under each sample
            self.envelope = self._overlap_add((self.window ** 2).expand(1, frames, n_fft))[0]

    def _overlap_add(self, chunks: torch.Tensor) -> torch.Tensor:
        """``(B, frames, n_fft)`` -> ``(B, (frames + overlap - 1) * hop)``, frame ``t`` added
        from sample ``t * hop``."""
        b, k, hop = chunks.shape[0], self.overlap, self.hop
        assert k is not None
        parts = chunks.reshape(b, self.frames, k, hop)
        out = chunks.new_zeros(b, self.frames + k - 1, hop)
        for j in range(k):
            out[:, j:j + self.frames] += parts[:, :, j]
        return out.reshape(b, -1)

    def inverse(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, frames, F)`` complex -> ``(B, length)``."""
        if self.overlap is None:  # hop does not divide n_fft: torch's own inverse
            return torch.istft(spec.transpose(1, 2), self.n_fft, self.hop, window=self.window,
                               length=self.length)
        chunks = torch.fft.irfft(spec, n=self.n_fft) * self.window  # (B, frames, n_fft)
        half = self.n_fft // 2
        return (self._overlap_add(chunks) / self.envelope)[:, half:half + self.length]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, length)`` -> ``(B, frames, F)`` complex."""
        half = self.n_fft // 2
        padded = F.pad(wav[:, None], (half, half), mode="reflect")[:, 0]
        return torch.fft.rfft(padded.unfold(-1, self.n_fft, self.hop) * self.window)


class VocoderError(UserError, ValueError):
    """A vocoder that cannot be used with this acoustic model; the message says why."""


class Vocoder(Protocol):
    """Log-mels in the store's units -> one waveform per item."""

    name: str  # for reports: "griffinlim" or the checkpoint's path
    hop_length: int

    def __call__(self, log_mels: torch.Tensor, lengths: torch.Tensor,
                 speakers: Sequence[str | None] | None = None) -> list[np.ndarray]:
        """``log_mels`` (B, T, n_mels), ``lengths`` (B,) frames -> float32 ``(lengths[i] * hop,)``;
        ``speakers``: whose voice each item is (used by a multi-speaker vocoder only)."""
        ...

    def check_speaker(self, name: str | None, option: str = "--speaker") -> None:
        """Refuse (one line) a speaker this vocoder cannot voice, before any synthesis."""
        ...


def _trim(wav: torch.Tensor, lengths: torch.Tensor, hop: int) -> list[np.ndarray]:
    """``(B, T)`` -> each item cut to its own ``lengths[i] * hop`` samples, on the CPU."""
    return [wav[i, : int(n) * hop].float().cpu().numpy() for i, n in enumerate(lengths)]


class GriffinLimVocoder:
    """Griffin-Lim from the acoustic model's audio settings (no training needed)."""

    def __init__(self, audio: AudioConfig, device: torch.device, n_iter: int = 60):
        self.name = GRIFFIN_LIM
        self.module = GriffinLimModule(audio, n_iter=n_iter).to(device)
        self.hop_length = audio.hop_length

    def __call__(self, log_mels: torch.Tensor, lengths: torch.Tensor,
                 speakers: Sequence[str | None] | None = None) -> list[np.ndarray]:
        return _trim(self.module(log_mels), lengths, self.hop_length)

    def check_speaker(self, name: str | None, option: str = "--speaker") -> None:
        """Griffin-Lim voices any speaker's mels."""


def check_backend(options: GenerateOptions, device: torch.device) -> None:
    """Refuse, before any model loads, a back end or precision that cannot run on ``device``
    (one line naming the key and what to use instead)."""
    if options.mode == "graph" and device.type != "cuda":
        raise VocoderError("vocoder.mode=graph replays CUDA graphs, and generation runs on "
                           f"{device.type}: use vocoder.mode=auto (or device=cuda)")
    if options.mode == "kernel" and (device.type != "cpu" or cpu_kernel.load() is None):
        why = (f"generation runs on {device.type}" if device.type != "cpu" else
               "the C kernel is disabled or could not be built")
        raise VocoderError(f"vocoder.mode=kernel runs the CPU kernel, and {why}: "
                           "use vocoder.mode=auto")
    if options.precision == "bf16" and not (device.type == "cpu" and cpu_kernel.has_bf16()):
        why = (f"generation runs on {device.type}" if device.type != "cpu" else
               "the C kernel is disabled or could not be built" if cpu_kernel.load() is None
               else "this CPU lacks AVX512-BF16")
        raise VocoderError(
            "vocoder.precision=bf16 runs in the CPU kernel on CPUs with AVX512-BF16 (AMD "
            f"Zen 4, Intel Sapphire Rapids and later), and {why}: use vocoder.precision=fp32")
    if options.precision == "bf16" and options.mode not in ("auto", "kernel"):
        raise VocoderError(f"vocoder.precision=bf16 runs in the CPU kernel, and "
                           f"vocoder.mode={options.mode}: use vocoder.mode=auto")


class WaveNetVocoder:
    """A trained WaveNet; refuses one trained on other audio settings than ``audio``, or
    ``options`` that cannot run on ``device``."""

    def __init__(self, path: str | Path, audio: AudioConfig, device: torch.device,
                 options: GenerateOptions | None = None):
        options = options or GenerateOptions()
        check_backend(options, device)
        trained = load_trained(path, "wavenet", device)
        self.model, cfg, file, voc_audio = trained.model, trained.config, trained.path, trained.audio
        if voc_audio != audio:
            diff = [k for k in vars(audio) if getattr(audio, k) != getattr(voc_audio, k)]
            raise VocoderError(
                f"{file}: vocoder was trained on other audio settings than the acoustic model "
                f"({', '.join(f'{k}: {getattr(voc_audio, k)} vs {getattr(audio, k)}' for k in diff)})"
            )
        self.norm = trained.mel_norm
        self.options = options
        self.hop_length, self.sample_rate = cfg.hop_length, audio.sample_rate
        self.name = str(file)
        self.speakers = trained.speakers  # [] for a single-speaker (any speaker's) vocoder

    def check_speaker(self, name: str | None, option: str = "--speaker") -> None:
        """A multi-speaker vocoder needs ``name`` in its own table (None: its first speaker);
        a single-speaker one voices any speaker."""
        if self.speakers and name is not None and name not in self.speakers:
            raise VocoderError(f"{option} {name}: vocoder {self.name} has no such speaker; its "
                               f"speakers: {', '.join(self.speakers)}")

    def speaker_ids(self, names: Sequence[str | None] | None, batch: int, device: torch.device
                    ) -> torch.Tensor | None:
        """``(batch,)`` ids for a multi-speaker vocoder (its first speaker for None), else None."""
        if not self.speakers:
            return None
        names = list(names) if names is not None else [None] * batch
        for name in names:
            self.check_speaker(name)
        ids = [0 if name is None else self.speakers.index(name) for name in names]
        return torch.tensor(ids, dtype=torch.long, device=device)

    @torch.inference_mode()
    def __call__(self, log_mels: torch.Tensor, lengths: torch.Tensor,
                 speakers: Sequence[str | None] | None = None) -> list[np.ndarray]:
        mels = self.norm.normalize(log_mels)  # the vocoder's own model space
        speakers = self.speaker_ids(speakers, mels.shape[0], mels.device)
        wav = generate_folded(self.model, mels, lengths, self.options, self.sample_rate,
                              speakers=speakers)
        return _trim(wav, lengths, self.hop_length)


def load_vocoder(spec: str | Path, audio: AudioConfig, device: torch.device,
                 options: GenerateOptions | None = None) -> Vocoder:
    """``griffinlim``, or a WaveNet run folder / checkpoint (generating with ``options``; none:
    plain unfolded generation). Raises :class:`VocoderError` or
    :class:`~neurotts.checkpoint.CheckpointError` with a one-line message."""
    if str(spec) == GRIFFIN_LIM:
        return GriffinLimVocoder(audio, device)
    if not Path(spec).expanduser().exists() and did_you_mean(str(spec), [GRIFFIN_LIM]):
        raise VocoderError(f"vocoder {str(spec)!r}: no such run folder or checkpoint; did you mean "
                           f"{GRIFFIN_LIM}? (choices: {GRIFFIN_LIM}, or a WaveNet run folder or checkpoint)")
    return WaveNetVocoder(spec, audio, device, options)
