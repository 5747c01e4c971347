"""Integration: ``neurotts prepare`` on the real 385-clip LJSpeech sample in ../shared."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from neurotts.cli import app
from neurotts.data.store import FeatureStore
from tests.conftest import SAMPLE, requires_sample
from tests.test_audio import librosa_logmel

pytestmark = [requires_sample, pytest.mark.slow]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    # No split sizes given: the README's `prepare data.root=DIR out=DIR` on a small corpus.
    out = tmp_path_factory.mktemp("sample") / "store"
    result = CliRunner().invoke(app, ["prepare", f"data.root={SAMPLE}", f"out={out}", "num_workers=2"])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def store_dir(prepared):
    return prepared[0]


def test_every_clip_is_kept_with_aligned_frames(prepared, store_dir):
    store = FeatureStore(store_dir)
    assert len(store.utterances) == 385
    # Default sizes scale down for a small corpus: 5 % val, 10 % test (LJSpeech: 100 / 500).
    assert (len(store.split("train")), len(store.split("val")), len(store.split("test"))) == (328, 19, 38)
    assert "split sizes scaled to 385 usable utterances: val 19, test 38" in prepared[1]
    hop = store.audio.hop_length
    for u in store.utterances:
        assert u.n_samples == u.n_frames * hop
        assert store.mel(u.id).shape == (u.n_frames, store.audio.n_mels)
    hours = sum(u.n_samples for u in store.utterances) / store.audio.sample_rate / 3600
    assert 0.6 < hours < 0.7  # 41.7 min before trimming leading/trailing silence


def test_mels_equal_librosa_reference(store_dir):
    """Stated tolerance: within 5e-3 in log magnitude (0.5 %) on every bin, 1e-4 on average,
    recomputed by librosa from the stored (trimmed, 16-bit) waveform."""
    store = FeatureStore(store_dir)
    for u in store.utterances[::40]:
        ref = librosa_logmel(store.audio_float(u.id), store.audio)
        diff = np.abs(store.mel(u.id) - ref)
        assert diff.max() < 5e-3 and diff.mean() < 1e-4, u.id


def test_rerun_is_a_noop(store_dir):
    mtimes = {p: p.stat().st_mtime_ns for p in store_dir.rglob("*.npy")}
    result = CliRunner().invoke(app, ["prepare", f"data.root={SAMPLE}", f"out={store_dir}"])
    assert result.exit_code == 0
    assert "385 already done" in result.output
    assert mtimes == {p: p.stat().st_mtime_ns for p in store_dir.rglob("*.npy")}
