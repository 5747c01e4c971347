"""The feature store that ``neurotts prepare`` writes and everything downstream reads.

Layout of a store folder::

    config.yaml       the resolved prepare config (audio, text, data settings)
    symbols.json      {"symbol_set": ..., "symbols": [...]}: id i is symbols[i]
    manifest.jsonl    one JSON object per kept utterance (see ``Utterance``)
    stats.json        per-channel log-mel mean/std over the train split
    rejects.tsv       id <TAB> reason, one line per skipped utterance
    mels/ID.npy       float32 (n_frames, n_mels) log-mel
    audio/ID.npy      int16 (n_samples,), n_samples == n_frames * hop_length
    oov.tsv           words CMUdict lacks and what was said for each (symbol_set=arpabet)
    .progress.jsonl   prepare's journal of finished audio work (a rerun resumes from it)

:class:`StoreLayout` is the one place these names are spelled: ``prepare`` writes through it,
:class:`FeatureStore` and the loaders read through it.

Downstream code takes audio settings and the symbol table from here (and later from
checkpoints), never from its own config, so nothing re-derives what ``prepare`` decided.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from neurotts.audio import AudioConfig, MelNorm, int16_to_float
from neurotts.config import to_schema
from neurotts.errors import UserError
from neurotts.text.frontend import TextConfig

SPLITS = ("train", "val", "test")
JOURNAL = ".progress.jsonl"


class StoreError(UserError, RuntimeError):
    """A feature store that is missing or incomplete; the message names the path."""


@dataclass(frozen=True)
class Utterance:
    id: str
    split: str
    text: str  # raw transcript as in metadata.csv
    normalized: str  # our normalisation of it
    ids: list[int]  # symbol ids, EOS included
    n_frames: int
    n_samples: int
    speaker: str | None = None  # the corpus's speaker label, where its format has one


class StoreLayout:
    """Where each file of a store folder lives (see the module docstring); the folder need not
    exist yet (``prepare`` writes through this)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.symbols = self.root / "symbols.json"
        self.manifest = self.root / "manifest.jsonl"
        self.stats = self.root / "stats.json"
        self.rejects = self.root / "rejects.tsv"
        self.oov = self.root / "oov.tsv"
        self.journal = self.root / JOURNAL
        self.mels = self.root / "mels"
        self.audio = self.root / "audio"

    def mel(self, uid: str) -> Path:
        return self.mels / f"{uid}.npy"

    def wav(self, uid: str) -> Path:
        return self.audio / f"{uid}.npy"


class FeatureStore:
    """Read access to a prepared store: manifest, arrays, statistics, settings."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.layout = StoreLayout(self.root)
        manifest = self.layout.manifest
        if not manifest.is_file():
            raise StoreError(
                f"{self.root}: not a feature store (no {manifest.name}); run `neurotts prepare` first"
            )
        cfg = OmegaConf.load(self.layout.config)
        self.audio: AudioConfig = to_schema(cfg.audio, AudioConfig)
        self.text: TextConfig = to_schema(cfg.text, TextConfig)
        sym = json.loads(self.layout.symbols.read_text())
        self.symbols: list[str] = sym["symbols"]
        stats = json.loads(self.layout.stats.read_text())
        self.mel_mean = np.asarray(stats["mel_mean"], dtype=np.float32)
        self.mel_std = np.asarray(stats["mel_std"], dtype=np.float32)

    @cached_property
    def utterances(self) -> list[Utterance]:
        """The manifest, read on first use: opening a store for its settings (the train
        config takes its audio settings from it) costs no pass over a 13k-row manifest."""
        with open(self.layout.manifest, encoding="utf-8") as f:
            return [Utterance(**json.loads(line)) for line in f if line.strip()]

    @cached_property
    def _by_id(self) -> dict[str, Utterance]:
        return {u.id: u for u in self.utterances}

    @cached_property
    def speakers(self) -> list[str]:
        """The speaker table: the manifest's speaker labels, sorted (id i is speakers[i]);
        ``[]`` for a single-speaker store (no labels, or one label throughout). Decided here,
        from all splits, so training, its checkpoints and everything that reads them share
        one table; a store where some utterances have a label and others none is refused."""
        labels = {u.speaker for u in self.utterances}
        if None in labels and len(labels) > 1:
            unlabelled = sum(u.speaker is None for u in self.utterances)
            first = next(u.id for u in self.utterances if u.speaker is None)
            raise StoreError(f"{self.layout.manifest}: {unlabelled} utterances have no speaker "
                             f"(first: {first}) while others have one; label every row of the "
                             "corpus, or none")
        names = sorted(n for n in labels if n is not None)
        return names if len(names) > 1 else []

    def speaker_id(self, u: Utterance) -> int:
        """The id of ``u``'s speaker in :attr:`speakers` (0 for a single-speaker store)."""
        return self._speaker_ids.get(u.speaker, 0) if self.speakers else 0

    @cached_property
    def _speaker_ids(self) -> dict[str | None, int]:
        return {name: i for i, name in enumerate(self.speakers)}

    def split(self, name: str) -> list[Utterance]:
        if name not in SPLITS:
            raise StoreError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return [u for u in self.utterances if u.split == name]

    def mel_norm(self, enabled: bool) -> MelNorm:
        """Z-scoring with this store's train-split statistics (identity when not ``enabled``)."""
        return MelNorm(self.mel_mean, self.mel_std, enabled)

    def __getitem__(self, uid: str) -> Utterance:
        return self._by_id[uid]

    def mel(self, uid: str) -> np.ndarray:
        """float32 (n_frames, n_mels) log-mel."""
        return np.load(self.layout.mel(uid))

    def audio_float(self, uid: str) -> np.ndarray:
        """float32 (n_samples,) waveform in [-1, 1]."""
        path = self.layout.wav(uid)
        if not path.is_file():
            raise StoreError(f"{path}: no audio in this store (prepare with save_audio=true)")
        return int16_to_float(np.load(path))


def utterance_record(u: Utterance) -> str:
    # vars() rather than dataclasses.asdict(): asdict deep-copies every id list element.
    return json.dumps(vars(u), ensure_ascii=False)


def describe(cfg: Any) -> dict[str, Any]:
    """The settings that make two stores' features comparable (used to refuse mixing them)."""
    # A text setting left null (text.language of an English symbol set) equals one a store
    # made before the setting existed does not have.
    text = {k: v for k, v in cfg["text"].items() if v is not None}
    return {"audio": cfg["audio"], "text": text, "save_audio": cfg["save_audio"]}
