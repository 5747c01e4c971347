"""The server's one door into synthesis, checkpoints, vocoders and the text frontend.

Everything ``neurotts.serve`` needs from the rest of the package is imported here and nowhere
else in it, so a move of those modules is fixed in this one file. :class:`ServedVoice` is what the
server holds: one acoustic model, its frontend and audio settings, and a vocoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurotts.audio import AudioConfig, MelNorm
from neurotts.checkpoint import FORMAT, VERSION, save_checkpoint
from neurotts.config import CONFIG_DIR, to_dict
from neurotts.models.layers import sequence_mask
from neurotts.models.registry import DataSpec, build_model, model_config
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Config, decoder_lengths
from neurotts.synthesis.engine import (
    AcousticModel,
    Encoded,
    SynthesisError,
    encode,
    pick_device,
    seed_rng,
    synthesize_pieces,
)
from neurotts.synthesis.timestamps import Word, to_json, to_webvtt, word_times
from neurotts.text.frontend import TextFrontend
from neurotts.text.symbols import default_symbols
from neurotts.vocoders import (
    GRIFFIN_LIM,
    GriffinLimModule,
    GriffinLimVocoder,
    Vocoder,
    VocoderConfig,
    load_vocoder,
)

__all__ = [
    "AudioConfig", "Encoded", "VocoderConfig", "MelNorm", "SynthesisError", "Tacotron2", "TextFrontend",
    "ServedVoice", "decoder_lengths", "encode", "load_voice", "sequential_synthesis",
    "untrained_checkpoint", "pick_device", "seed_rng", "sequence_mask", "Word", "to_json",
    "to_webvtt", "word_times",
]


@dataclass
class ServedVoice:
    """A loaded acoustic model and vocoder, ready to serve."""

    name: str  # what clients ask for (``voice``) and /api/voices lists
    acoustic: AcousticModel
    vocoder: Vocoder  # whole-sentence vocoding (the WaveNet path; Griffin-Lim's reference)
    griffin_lim: GriffinLimModule | None  # chunked streaming vocoding; None for WaveNet
    device: torch.device

    @property
    def model(self) -> Tacotron2:
        return self.acoustic.model

    @property
    def frontend(self) -> TextFrontend:
        return self.acoustic.frontend

    @property
    def audio(self) -> AudioConfig:
        return self.acoustic.audio

    @property
    def sample_rate(self) -> int:
        return self.acoustic.audio.sample_rate

    @property
    def hop_length(self) -> int:
        return self.acoustic.audio.hop_length

    @property
    def reduction_factor(self) -> int:
        return self.acoustic.cfg.reduction_factor

    @property
    def speakers(self) -> list[str]:
        """The acoustic model's speaker table ([] for a single-speaker model)."""
        return self.acoustic.speakers

    def speaker_name(self, sid: int | None) -> str | None:
        """The name of speaker id ``sid`` (None: none asked, or a single-speaker model)."""
        return None if sid is None or not self.speakers else self.speakers[sid]

    def to_log_mel(self, mels: torch.Tensor) -> torch.Tensor:
        """Model-space mels ``(..., n_mels)`` -> log-mels in the store's units."""
        return self.acoustic.to_log_mel(mels)

    def encode(self, text: str, max_chars: int, max_symbols: int | None = None) -> Encoded:
        """``text`` split into sentences (clauses past ``max_chars``) and encoded; raises
        :class:`SynthesisError` when there is nothing to say."""
        return encode(self.acoustic.frontend, text, max_chars, max_symbols)


def load_voice(name: str, acoustic: str | Path, vocoder: VocoderConfig, device_name: str,
               griffin_lim_iters: int) -> ServedVoice:
    """The acoustic model at ``acoustic`` and the vocoder ``vocoder.path`` on ``device_name``;
    user errors (missing run, mismatched vocoder) are raised as their own UserErrors."""
    device = pick_device(device_name)
    model = AcousticModel.load(acoustic, device)
    voc = load_vocoder(vocoder.path, model.audio, device, vocoder)
    for speaker in model.speakers:  # a multi-speaker vocoder must voice every speaker served
        voc.check_speaker(speaker, "speaker")
    gl = None
    if vocoder.path == GRIFFIN_LIM:
        gl = GriffinLimModule(model.audio, n_iter=griffin_lim_iters).to(device)
    return ServedVoice(name, model, voc, gl, device)


def untrained_checkpoint(path: Path, model_overrides: list[str], seed: int = 0,
                         speakers: list[str] | None = None) -> int:
    """Write a Tacotron 2 checkpoint with random weights (characters, LJSpeech audio settings,
    ``configs/model/tacotron2.yaml`` with ``model_overrides``) that :func:`load_voice` reads
    like a trained one: for benchmarks and tests of serving speed, where what is said does
    not matter. ``speakers``: a multi-speaker model with this (sorted) table, its speaker
    projection drawn at random too (a new model's starts at zero: every speaker the same).
    Returns the parameter count."""
    from omegaconf import OmegaConf

    audio = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml"))
    shipped = OmegaConf.structured(Tacotron2Config(n_mels=audio["n_mels"]))  # the shipped sizes
    cfg = model_config(OmegaConf.to_container(
        OmegaConf.merge(shipped, OmegaConf.from_dotlist(model_overrides))))
    symbols = default_symbols("characters")
    torch.manual_seed(seed)
    speakers = sorted(speakers or [])
    model = build_model(cfg, DataSpec(len(symbols), AudioConfig(**audio), len(speakers))).eval()
    if speakers:
        torch.nn.init.normal_(model.speaker_embedding.proj.weight, std=0.5)
    n_mels = cfg.n_mels
    payload = {
        "format": FORMAT, "version": VERSION, "model_name": "tacotron2",
        "model": model.state_dict(), "ema": None, "config": {"model": to_dict(cfg)},
        "symbols": symbols, "text": {"symbol_set": "characters"}, "audio": audio,
        "speakers": speakers,
        # Model space centred on a quiet log-mel level, so random frames sound like noise
        # around speech level rather than full-scale.
        "mel_norm": MelNorm(np.full(n_mels, -6.0), np.full(n_mels, 1.5), True).state(),
        "step": 0,
    }
    save_checkpoint(Path(path), payload)
    return sum(p.numel() for p in model.parameters())


def sequential_synthesis(voice: ServedVoice, texts: list[str], max_chars: int) -> tuple[float, float]:
    """``texts`` through ``neurotts synth``'s synthesis path one sentence after another (batch
    1; Griffin-Lim with the voice's iterations): the baseline the server's throughput is
    measured against. Returns (seconds of audio, wall seconds)."""
    vocoder = voice.vocoder
    if voice.griffin_lim is not None:
        vocoder = GriffinLimVocoder(voice.audio, voice.device, n_iter=voice.griffin_lim.n_iter)
    audio = 0.0
    started = time.perf_counter()
    for text in texts:
        for ids in voice.encode(text, max_chars).ids:
            _, timing = synthesize_pieces([ids], voice.acoustic, vocoder, voice.device)
            audio += timing.audio_s
    return audio, time.perf_counter() - started
