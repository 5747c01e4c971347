"""Any audio libsndfile decodes is read, downmixed and resampled to the audio config."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from neurotts.audio import AudioError, read_audio


def tone(sr: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)  # (T, 2)


@pytest.mark.parametrize(("fmt", "subtype", "suffix"), [
    ("FLAC", "PCM_24", "flac"), ("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3"),
    ("WAV", "PCM_16", "wav"),
])
def test_stereo_48k_is_downmixed_and_resampled(tmp_path, fmt, subtype, suffix):
    path = tmp_path / f"clip.{suffix}"
    sf.write(path, tone(48000), 48000, format=fmt, subtype=subtype)
    wav, source = read_audio(path, 22050)
    assert source.sample_rate == 48000 and source.channels == 2 and source.container == fmt
    assert source.describe() == f"{suffix} 48 kHz stereo" and source.converted(22050)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - 0.5 * 22050) < 0.02 * 22050  # mp3 adds a few ms of codec delay
    # The mono mix of (x, x/2) is 0.75 x: peak 0.3 (lossy codecs keep it within a few %).
    assert abs(np.abs(wav).max() - 0.3) < 0.03
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * 22050 / wav.size - 440) < 5


def test_mono_wav_at_the_rate_is_not_a_conversion(tmp_path):
    path = tmp_path / "m.wav"
    sf.write(path, tone(22050)[:, 0], 22050, subtype="PCM_16")
    _, source = read_audio(path, 22050)
    assert not source.converted(22050) and source.describe() == "wav 22.05 kHz mono"


def test_unreadable_file_names_itself(tmp_path):
    path = tmp_path / "not_audio.mp3"
    path.write_text("hello")
    with pytest.raises(AudioError, match="not_audio.mp3: cannot read audio"):
        read_audio(path, 22050)
