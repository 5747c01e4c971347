"""Datasets, collate functions and the length-bucketed batch sampler used for training.

Two kinds of items come out of a feature store:

* :class:`TextMelDataset` -- symbol ids and the whole log-mel of an utterance (acoustic models);
  :func:`collate_text_mel` pads them into a :class:`TextMelBatch`.
* :class:`AudioWindowDataset` -- a random window of ``k`` mel frames and the ``k * hop`` audio
  samples they own, plus ``context`` frames (and their samples) on either side (vocoders);
  :func:`collate_windows` stacks them into an :class:`AudioWindowBatch`.

:class:`BucketBatchSampler` groups utterances of similar length so batches carry little
padding. Its batches are a pure function of ``(seed, epoch)``, so a run resumed in the middle
of an epoch sees exactly the batches the uninterrupted run would have seen; under DDP each
rank takes a disjoint share of them.

Damaged stores: a feature file that is missing or shorter than its manifest entry says is a
one-line error before the first step (:meth:`TextMelDataset.check_files`), naming the file and
how many others are affected; one that fails to load during training is a one-line error
naming it (:class:`FeatureFileError`). Such items are not skipped: the batches are a function
of the item list, so dropping one silently would train on other data and break exact resume.
``neurotts prepare`` run again with the same settings redoes missing files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from neurotts.audio import MelNorm, int16_to_float
from neurotts.data.store import FeatureStore, StoreError, Utterance

_NPY_HEADER_MIN = 64  # bytes before the data of any .npy file numpy writes (v1 header)


class FeatureFileError(StoreError):
    """A feature file of the store is missing or unreadable; the message names it."""

    def __init__(self, message: str):
        # Raised in a DataLoader worker, torch re-raises it in the main process with the
        # worker's traceback as the message; its last line is ours.
        if message.startswith("Caught "):
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def load_feature(path: Path) -> np.ndarray:
    """``np.load`` of a store array, failing with one line that names the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = "missing" if isinstance(exc, FileNotFoundError) else f"unreadable: {exc}"
        raise FeatureFileError(f"{path}: feature file {reason}; run `neurotts prepare` again "
                               "with the same settings to redo it (delete it first if damaged)") from None


def check_feature_files(files: Sequence[tuple[Path, int]]) -> None:
    """Every ``(path, data bytes)`` exists and is long enough; else one line naming the first
    bad file and how many there are. Stats only: seconds for LJSpeech on a network disk."""
    bad: list[str] = []
    for path, data_bytes in files:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            bad.append(f"{path} is missing")
            continue
        if size < data_bytes + _NPY_HEADER_MIN:
            bad.append(f"{path} is truncated ({size} bytes, at least {data_bytes + _NPY_HEADER_MIN} expected)")
    if bad:
        more = f" (and {len(bad) - 1} more feature files missing or truncated)" if len(bad) > 1 else ""
        raise FeatureFileError(f"{bad[0]}{more}; run `neurotts prepare` again with the same "
                               "settings to redo missing files (delete truncated ones first)")

# ------------------------------------------------------------------------------ text + mel


class TextMelItem(NamedTuple):
    ids: torch.Tensor  # (T_text,) long
    mel: torch.Tensor  # (T_mel, n_mels) float32
    speaker: int = 0  # id in the store's speaker table (0 for a single-speaker store)


class TextMelBatch(NamedTuple):
    text: torch.Tensor  # (B, T_text) long, 0-padded
    text_lengths: torch.Tensor  # (B,) long
    mels: torch.Tensor  # (B, T_mel, n_mels) float32, 0-padded
    mel_lengths: torch.Tensor  # (B,) long
    speakers: torch.Tensor  # (B,) long speaker ids (all 0 for a single-speaker store)


class TextMelDataset(Dataset):
    def __init__(self, store: FeatureStore, utterances: Sequence[Utterance], norm: MelNorm):
        self.store = store
        self.utterances = list(utterances)
        self.norm = norm

    def __len__(self) -> int:
        return len(self.utterances)

    def lengths(self) -> list[int]:
        """Mel frames per item: what batch cost (and padding) scales with."""
        return [u.n_frames for u in self.utterances]

    def check_files(self) -> None:
        """Every mel this dataset will read exists and is complete (see the module doc)."""
        n_mels = self.store.audio.n_mels
        check_feature_files([(self.store.layout.mel(u.id), u.n_frames * n_mels * 4)
                             for u in self.utterances])

    def __getitem__(self, index: int) -> TextMelItem:
        u = self.utterances[index]
        mel = self.norm.normalize_np(load_feature(self.store.layout.mel(u.id)))
        return TextMelItem(torch.tensor(u.ids, dtype=torch.long), torch.from_numpy(mel),
                           self.store.speaker_id(u))


def collate_text_mel(items: Sequence[TextMelItem]) -> TextMelBatch:
    text_lengths = torch.tensor([len(it.ids) for it in items], dtype=torch.long)
    mel_lengths = torch.tensor([it.mel.shape[0] for it in items], dtype=torch.long)
    n_mels = items[0].mel.shape[1]
    text = torch.zeros(len(items), int(text_lengths.max()), dtype=torch.long)
    mels = torch.zeros(len(items), int(mel_lengths.max()), n_mels, dtype=torch.float32)
    for i, it in enumerate(items):
        text[i, : len(it.ids)] = it.ids
        mels[i, : it.mel.shape[0]] = it.mel
    speakers = torch.tensor([it.speaker for it in items], dtype=torch.long)
    return TextMelBatch(text, text_lengths, mels, mel_lengths, speakers)


# ------------------------------------------------------------------------------ audio windows


class AudioWindowBatch(NamedTuple):
    audio: torch.Tensor  # (B, (k + 2c) * hop) float32 in [-1, 1], zeros outside the utterance
    mels: torch.Tensor  # (B, k + 2c, n_mels) float32, silence outside the utterance
    mask: torch.Tensor  # (B, (k + 2c) * hop) bool: samples the loss counts (window, in-utterance)
    speakers: torch.Tensor  # (B,) long speaker ids (an item: a () tensor); 0 for one speaker


class AudioWindowDataset(Dataset):
    """Windows of ``window`` frames with ``context`` frames either side.

    The window start is drawn from a generator seeded with ``(seed, epoch, index)``: the same
    in every worker process and after a resume, whatever order items are fetched in. Frames
    outside the utterance are filled with silence (the log floor, normalised like the rest)
    and their samples with zeros; the mask marks the window's in-utterance samples only.
    """

    def __init__(self, store: FeatureStore, utterances: Sequence[Utterance], norm: MelNorm,
                 window: int, context: int, seed: int):
        self.store = store
        self.utterances = list(utterances)
        self.norm = norm
        self.window, self.context, self.seed = window, context, seed
        self.hop = store.audio.hop_length
        self.silence = math.log(store.audio.log_floor)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utterances)

    def lengths(self) -> list[int]:
        return [self.window] * len(self.utterances)  # every window costs the same

    def check_files(self) -> None:
        """Every mel and waveform this dataset will read exists and is complete."""
        if not self.store.layout.audio.is_dir():
            raise StoreError(f"{self.store.root}: no audio in this store (a vocoder needs it: "
                             "prepare with save_audio=true)")
        n_mels = self.store.audio.n_mels
        check_feature_files([(path, nbytes) for u in self.utterances for path, nbytes in (
            (self.store.layout.mel(u.id), u.n_frames * n_mels * 4),
            (self.store.layout.wav(u.id), u.n_samples * 2))])

    def __getitem__(self, index: int) -> AudioWindowBatch:
        u = self.utterances[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(0, max(u.n_frames - self.window, 0) + 1))  # window's first frame
        first, stop = start - self.context, start + self.window + self.context
        mel = load_feature(self.store.layout.mel(u.id))
        wav = int16_to_float(load_feature(self.store.layout.wav(u.id)))
        frames = np.full((stop - first, mel.shape[1]), self.silence, dtype=np.float32)
        samples = np.zeros((stop - first) * self.hop, dtype=np.float32)
        lo, hi = max(first, 0), min(stop, u.n_frames)  # in-utterance part of [first, stop)
        frames[lo - first: hi - first] = mel[lo:hi]
        samples[(lo - first) * self.hop: (hi - first) * self.hop] = wav[lo * self.hop: hi * self.hop]
        mask = np.zeros(samples.shape[0], dtype=bool)
        w_hi = min(start + self.window, u.n_frames)
        mask[(start - first) * self.hop: (w_hi - first) * self.hop] = True
        mels = self.norm.normalize_np(frames)
        return AudioWindowBatch(torch.from_numpy(samples), torch.from_numpy(mels),
                                torch.from_numpy(mask),
                                torch.tensor(self.store.speaker_id(u), dtype=torch.long))


def collate_windows(items: Sequence[AudioWindowBatch]) -> AudioWindowBatch:
    return AudioWindowBatch(*(torch.stack(parts) for parts in zip(*items, strict=True)))


# ------------------------------------------------------------------------------ sampler


class BucketBatchSampler(Sampler[list[int]]):
    """Length-bucketed, shuffled batches; deterministic in ``(seed, epoch)``; DDP-aware.

    Each epoch: shuffle all indices, cut them into buckets of ``bucket_size * batch_size``,
    sort each bucket by length, cut it into batches (at most ``batch_size`` items and, when
    ``max_batch_frames`` > 0, at most that many padded frames), then shuffle the batch order.
    With ``num_replicas`` > 1 rank ``r`` takes batches ``r, r + n, ...``; the last
    ``len % n`` batches are left out of that epoch so every rank runs the same number of
    steps (no rank blocks in an all-reduce) and no two ranks ever share an item. With
    ``drop_uneven=False`` (validation) every batch is kept and ranks may get one batch more.

    Resuming: ``set_epoch(epoch, start)`` skips the first ``start`` batches of this rank.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, bucket_size: int = 32,
                 max_batch_frames: int = 0, shuffle: bool = True, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, drop_uneven: bool = True):
        if batch_size < 1 or bucket_size < 1:
            raise ValueError("batch_size and bucket_size must be at least 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.bucket_size = batch_size, bucket_size
        self.max_batch_frames = max_batch_frames
        self.shuffle, self.seed = shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.drop_uneven = drop_uneven
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _cut(self, bucket: np.ndarray) -> list[list[int]]:
        """Cut a length-sorted bucket into batches within both size limits."""
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in bucket.tolist():
            longest_if_added = max(longest, int(self.lengths[i]))
            too_many = len(current) == self.batch_size
            too_long = (self.max_batch_frames > 0 and current
                        and longest_if_added * (len(current) + 1) > self.max_batch_frames)
            if too_many or too_long:
                batches.append(current)
                current, longest_if_added = [], int(self.lengths[i])
            current.append(i)
            longest = longest_if_added
        if current:
            batches.append(current)
        return batches

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` (every rank's), in order."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        span = self.batch_size * self.bucket_size
        batches: list[list[int]] = []
        for lo in range(0, len(order), span):
            bucket = order[lo: lo + span]
            bucket = bucket[np.argsort(self.lengths[bucket], kind="stable")]
            batches.extend(self._cut(bucket))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def rank_batches(self, epoch: int) -> list[list[int]]:
        batches = self.epoch_batches(epoch)
        usable = len(batches)
        if self.drop_uneven:
            usable -= len(batches) % self.num_replicas
        return batches[self.rank: usable: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.rank_batches(self.epoch)[self.start:]

    def __len__(self) -> int:
        return max(len(self.rank_batches(self.epoch)) - self.start, 0)
