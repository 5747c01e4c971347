"""The runtime's numpy Griffin-Lim against the torch vocoder (its torch-free synthesis is tested
in test_export.py, on exported voices)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from neurotts.audio import AudioConfig, log_mel
from neurotts.audio import mel_filterbank as torch_filterbank
from neurotts.config import CONFIG_DIR, to_dict, to_schema
from neurotts.runtime.griffinlim import GriffinLim, mel_filterbank
from neurotts.vocoders import GriffinLimModule
from tests.conftest import speechlike

AUDIO = to_schema(OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml"), AudioConfig)


def test_filterbank_is_torchaudios():
    assert np.abs(mel_filterbank(to_dict(AUDIO)) - torch_filterbank(AUDIO).numpy()).max() < 1e-6


@pytest.mark.parametrize("frames", [2, 50])
def test_mel_inversion_matches_the_torch_vocoder(frames):
    """Without iterations (mel inversion, zero phase, overlap-add, peak normalisation) the
    waveforms agree sample for sample, short outputs padded alike."""
    mel = log_mel(speechlike(0.6, AUDIO.sample_rate, lead_silence=0.0), AUDIO)[:frames]
    ref = GriffinLimModule(AUDIO, n_iter=0)(torch.from_numpy(mel)[None])[0].numpy()
    ours = GriffinLim(to_dict(AUDIO), n_iter=0, momentum=0.99)(mel)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-5


def test_griffin_lim_matches_the_torch_vocoder_in_what_is_heard():
    """60 momentum iterations amplify float32 rounding in near-silent bins, so the phases part
    and samples differ; what is heard, the log-mel of the result, stays within 0.05 nats (mean
    absolute) of torch's, far closer than either is to the mel they invert (~0.15)."""
    mel = log_mel(speechlike(1.0, AUDIO.sample_rate), AUDIO)
    ref = GriffinLimModule(AUDIO)(torch.from_numpy(mel)[None])[0].numpy()
    ours = GriffinLim(to_dict(AUDIO), n_iter=60, momentum=0.99)(mel)
    heard_ref, heard_ours = log_mel(ref, AUDIO), log_mel(ours, AUDIO)
    assert np.abs(heard_ours - heard_ref).mean() <= 0.05
    assert abs(np.abs(heard_ours - mel).mean() - np.abs(heard_ref - mel).mean()) <= 0.01
