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


def test_demo_settings_get_the_split_sizes_they_ask_for(tmp_path):
    """recipes/demo.sh asks for val 8 / test 6 with clips up to 6 s; 221 of the 385 clips are
    longer. The split is drawn from the clips kept, so the sizes asked for are the sizes made
    (it used to be drawn first, and the demo got val 4 / test 5)."""
    out = tmp_path / "store"
    result = CliRunner().invoke(app, [
        "prepare", f"data.root={SAMPLE}", f"out={out}", "data.split.val_size=8",
        "data.split.test_size=6", "audio.max_duration=6.0", "save_audio=false", "num_workers=2",
    ])
    assert result.exit_code == 0, result.output
    store = FeatureStore(out)
    assert (len(store.split("train")), len(store.split("val")), len(store.split("test"))) == (150, 8, 6)
