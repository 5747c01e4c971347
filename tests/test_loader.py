"""Bucketed sampler, datasets and collate functions (neurotts/data/loader.py).

``write_store`` builds a small synthetic feature store (real log-mels of synthetic tones, in
the layout ``neurotts prepare`` writes); tests/test_training.py uses it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from neurotts.audio import AudioConfig, float_to_int16, log_mel
from neurotts.config import compose_config, to_schema
from neurotts.data.loader import (
    AudioWindowDataset,
    BucketBatchSampler,
    TextMelDataset,
    collate_text_mel,
    collate_windows,
)
from neurotts.data.store import FeatureStore

SYMBOLS = ["_", "~", " ", *"abcdefghijklmnopqrstuvwxyz", ".", ",", "?"]


def ljspeech_audio() -> AudioConfig:
    cfg = compose_config("prepare", ["out=-"])
    return to_schema(cfg.audio, AudioConfig)


def write_store(root: Path, n: int = 12, splits: dict[str, int] | None = None, seed: int = 0,
                frames: tuple[int, int] = (24, 72)) -> FeatureStore:
    """A feature store of ``n`` utterances: each a few tones whose pitch follows its text, so
    a model has something learnable. ``splits``: how many go to val and test (rest: train)."""
    splits = splits or {"val": 2, "test": 1}
    audio = ljspeech_audio()
    rng = np.random.default_rng(seed)
    (root / "mels").mkdir(parents=True)
    (root / "audio").mkdir()
    records, all_mels = [], []
    order = ["val"] * splits["val"] + ["test"] * splits["test"]
    order += ["train"] * (n - len(order))
    for i, split in enumerate(order):
        n_frames = int(rng.integers(frames[0], frames[1] + 1))
        ids = [int(x) for x in rng.integers(2, len(SYMBOLS), size=max(n_frames // 6, 3))] + [1]
        t = np.arange(n_frames * audio.hop_length) / audio.sample_rate
        pitch = np.repeat(150.0 + 20.0 * np.array(ids, dtype=np.float64),
                          int(np.ceil(t.size / len(ids))))[: t.size]
        wav = (0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / audio.sample_rate)).astype(np.float32)
        mel = log_mel(wav, audio)
        uid = f"SYN{i:03d}"
        np.save(root / "mels" / f"{uid}.npy", mel)
        np.save(root / "audio" / f"{uid}.npy", float_to_int16(wav))
        text = "".join(SYMBOLS[k] for k in ids[:-1])
        records.append({"id": uid, "split": split, "text": text, "normalized": text, "ids": ids,
                        "n_frames": n_frames, "n_samples": t.size})
        if split == "train":
            all_mels.append(mel)
    stacked = np.concatenate(all_mels)
    cfg = {"audio": OmegaConf.to_container(OmegaConf.structured(audio)),
           "text": {"symbol_set": "characters"}, "save_audio": True}
    (root / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (root / "symbols.json").write_text(json.dumps({"symbol_set": "characters", "symbols": SYMBOLS}))
    (root / "stats.json").write_text(json.dumps({"mel_mean": stacked.mean(0).tolist(),
                                                 "mel_std": stacked.std(0).tolist()}))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return FeatureStore(root)


# ------------------------------------------------------------------------------ sampler

LENGTHS = [int(x) for x in np.random.default_rng(3).integers(20, 800, size=203)]


def flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


def test_sampler_covers_every_item_once_per_epoch() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=8, bucket_size=4, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(flat(batches)) == list(range(len(LENGTHS)))
        assert all(1 <= len(b) <= 8 for b in batches)
        assert len(sampler) == len(batches)


def test_sampler_is_deterministic_and_reshuffles_per_epoch() -> None:
    a = BucketBatchSampler(LENGTHS, batch_size=8, bucket_size=4, seed=1)
    b = BucketBatchSampler(LENGTHS, batch_size=8, bucket_size=4, seed=1)
    assert a.epoch_batches(0) == b.epoch_batches(0)
    assert a.epoch_batches(0) != a.epoch_batches(1)
    assert a.epoch_batches(0) != BucketBatchSampler(LENGTHS, 8, 4, seed=2).epoch_batches(0)


def test_sampler_buckets_cut_padding() -> None:
    def padding(batches: list[list[int]]) -> int:
        return sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches)

    bucketed = BucketBatchSampler(LENGTHS, batch_size=8, bucket_size=8, seed=0).epoch_batches(0)
    rng = np.random.default_rng(0).permutation(len(LENGTHS)).tolist()
    random_batches = [rng[i: i + 8] for i in range(0, len(rng), 8)]
    assert padding(bucketed) < 0.3 * padding(random_batches)


def test_sampler_caps_padded_frames_per_batch() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=16, bucket_size=4, max_batch_frames=4000)
    batches = sampler.epoch_batches(0)
    assert sorted(flat(batches)) == list(range(len(LENGTHS)))
    assert all(max(LENGTHS[i] for i in b) * len(b) <= 4000 or len(b) == 1 for b in batches)
    assert max(len(b) for b in batches) == 16  # short clips still fill a batch


@pytest.mark.parametrize("replicas", [2, 3])
def test_sampler_ranks_get_disjoint_equal_shares(replicas: int) -> None:
    shares = [BucketBatchSampler(LENGTHS, 8, 4, seed=5, num_replicas=replicas, rank=r)
              for r in range(replicas)]
    per_rank = [list(s) for s in shares]
    assert len({len(b) for b in per_rank}) == 1  # same number of steps on every rank
    items = [set(flat(b)) for b in per_rank]
    for r in range(replicas):
        for q in range(r + 1, replicas):
            assert not items[r] & items[q]
    n_batches = len(shares[0].epoch_batches(0))
    assert len(per_rank[0]) * replicas == n_batches - n_batches % replicas
    # validation sharding keeps every batch
    keep_all = [BucketBatchSampler(LENGTHS, 8, 4, shuffle=False, num_replicas=replicas, rank=r,
                                   drop_uneven=False) for r in range(replicas)]
    assert sorted(i for s in keep_all for i in flat(list(s))) == list(range(len(LENGTHS)))


def test_sampler_resumes_mid_epoch() -> None:
    full = BucketBatchSampler(LENGTHS, 8, 4, seed=9, num_replicas=2, rank=1)
    full.set_epoch(4)
    expected = list(full)
    resumed = BucketBatchSampler(LENGTHS, 8, 4, seed=9, num_replicas=2, rank=1)
    resumed.set_epoch(4, start=5)
    assert list(resumed) == expected[5:]
    assert len(resumed) == len(expected) - 5


# ------------------------------------------------------------------------------ datasets


def test_text_mel_dataset_and_collate(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store", n=6)
    norm = store.mel_norm(enabled=True)
    ds = TextMelDataset(store, store.split("train"), norm)
    items = [ds[i] for i in range(len(ds))]
    batch = collate_text_mel(items)
    b = len(items)
    assert batch.text.shape == (b, max(len(it.ids) for it in items))
    assert batch.mels.shape == (b, max(ds.lengths()), store.audio.n_mels)
    assert batch.mel_lengths.tolist() == ds.lengths()
    for i, it in enumerate(items):
        assert torch.equal(batch.mels[i, : it.mel.shape[0]], it.mel)
        assert torch.all(batch.mels[i, it.mel.shape[0]:] == 0)
    raw = torch.from_numpy(store.mel(ds.utterances[0].id))
    assert torch.allclose(norm.inverse(items[0].mel), raw, atol=1e-4)


def test_audio_windows_line_up_with_their_frames(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store", n=6, frames=(8, 40))
    hop = store.audio.hop_length
    window, context = 12, 3
    ds = AudioWindowDataset(store, store.split("train"), store.mel_norm(False),
                            window, context, seed=7)
    for index in range(len(ds)):
        item = ds[index]
        assert item.mels.shape == (window + 2 * context, store.audio.n_mels)
        assert item.audio.shape == ((window + 2 * context) * hop,)
        u = ds.utterances[index]
        wav, mel = store.audio_float(u.id), store.mel(u.id)
        start_sample = context * hop  # the window's first sample in the item
        assert not item.mask[:start_sample].any()
        n = int(item.mask.sum()) // hop  # frames counted (fewer at an utterance's end)
        assert n == min(window, u.n_frames)
        # find where the window sits in the utterance by its first mel frame
        start = int(np.argmin(np.abs(mel - item.mels[context].numpy()).sum(1)))
        assert 0 <= start <= max(u.n_frames - window, 0)
        got = item.audio[start_sample: start_sample + n * hop].numpy()
        np.testing.assert_array_equal(got, wav[start * hop: (start + n) * hop])
        np.testing.assert_array_equal(item.mels[context: context + n].numpy(), mel[start: start + n])
        lo = max(start - context, 0)  # context frames are real where the utterance has them
        np.testing.assert_array_equal(item.mels[context - (start - lo): context].numpy(), mel[lo:start])
    assert torch.equal(ds[0].audio, ds[0].audio)  # same epoch, same window
    ds.set_epoch(1)
    batch = collate_windows([ds[i] for i in range(len(ds))])
    assert batch.audio.shape[0] == batch.mels.shape[0] == batch.mask.shape[0] == len(ds)
