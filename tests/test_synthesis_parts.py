"""Pieces of synthesis that need no trained model: text chunking and Griffin-Lim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurotts.audio import fit_to_hop, log_mel
from neurotts.config import load_config
from neurotts.data.config import PrepareConfig
from neurotts.text.chunking import split_text
from neurotts.vocoders import GriffinLimModule
from tests.conftest import speechlike


def test_split_at_sentences():
    text = "The first sentence. The second one!  Is this the third? \"Yes,\" she said."
    assert split_text(text, 200) == [
        "The first sentence.", "The second one!", "Is this the third?", "\"Yes,\" she said.",
    ]


def test_long_sentence_splits_at_clauses_then_words():
    clause = "a clause with several words in it"
    sentence = ", ".join([clause] * 6) + "."
    pieces = split_text(sentence, 80)
    assert all(len(p) <= 80 for p in pieces)
    assert " ".join(pieces) == sentence
    words = " ".join(["word"] * 50)
    pieces = split_text(words, 30)
    assert all(len(p) <= 30 for p in pieces) and " ".join(pieces) == words


def test_split_edge_cases():
    assert split_text("   \n ", 100) == []
    assert split_text("supercalifragilistic", 5) == ["supercalifragilistic"]
    assert split_text("Version 2.5 is out. Next.", 100) == ["Version 2.5 is out.", "Next."]


@pytest.fixture(scope="module")
def audio_cfg():
    return load_config("prepare", PrepareConfig, ["out=unused"]).audio


def test_griffin_lim_reconstructs_the_mel(audio_cfg):
    wav = fit_to_hop(speechlike(0.6, audio_cfg.sample_rate, lead_silence=0.0), audio_cfg.hop_length)
    mel = torch.from_numpy(log_mel(wav, audio_cfg))[None]  # (1, T, n_mels)
    out = GriffinLimModule(audio_cfg, n_iter=32)(mel)
    assert out.shape == (1, wav.size) and torch.isfinite(out).all()
    again = log_mel(out[0].numpy(), audio_cfg)
    loud = mel[0].numpy() > mel[0].numpy().max() - 6.0  # bins within ~50 dB of the peak
    # phase is recovered, not copied: the re-analysed mel matches on the loud bins
    assert np.abs(again - mel[0].numpy())[loud].mean() < 0.35
    assert out.abs().max() <= 0.95 + 1e-6


def test_griffin_lim_batches(audio_cfg):
    mel = torch.randn(3, 20, audio_cfg.n_mels) - 4
    out = GriffinLimModule(audio_cfg, n_iter=4)(mel)
    assert out.shape == (3, 20 * audio_cfg.hop_length)


def test_griffin_lim_handles_one_frame(audio_cfg):
    out = GriffinLimModule(audio_cfg, n_iter=2)(torch.randn(1, 1, audio_cfg.n_mels) - 4)
    assert out.shape == (1, audio_cfg.hop_length) and torch.isfinite(out).all()


@pytest.mark.parametrize("n_iter", [0, 1, 8])
def test_griffin_lim_is_torchaudios_iteration(audio_cfg, n_iter):
    """The module's own inverse STFT (irfft + overlap-add) and phase step compute torchaudio's
    momentum Griffin-Lim from the same zero phase: few iterations stay at float rounding
    (many amplify rounding in near-silent bins, so the phases drift apart there)."""
    import torchaudio.functional as AF

    wav = fit_to_hop(speechlike(0.5, audio_cfg.sample_rate, lead_silence=0.0), audio_cfg.hop_length)
    mel = torch.from_numpy(log_mel(wav, audio_cfg))[None]  # (1, T, n_mels)
    module = GriffinLimModule(audio_cfg, n_iter=n_iter)
    linear = torch.clamp(torch.exp(mel) @ module.inverse, min=0.0).transpose(-1, -2)  # (1, F, T)
    linear = torch.cat([linear, linear[..., -1:]], dim=-1)  # (1, F, T + 1), as the module does
    ref = AF.griffinlim(linear, module.window, module.n_fft, module.hop_length, module.win_length,
                        power=1.0, n_iter=n_iter, momentum=module.momentum,
                        length=mel.shape[1] * module.hop_length, rand_init=False)
    ours = module.unnormalised(mel)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() <= 1e-3 * ref.abs().max()
