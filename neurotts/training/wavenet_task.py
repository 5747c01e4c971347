"""WaveNet task: random audio windows with their mel frames, teacher-forced likelihood.

A training item is a window of ``data.window_frames`` mel frames and the ``k * hop`` samples
they own, plus ``context`` frames on either side: enough for the conditioning convolutions
to see real neighbours at the window edges, and for the network's receptive field to be
filled with real past audio before the first sample that counts. The loss only counts the
window itself (the mask). Mels are normalised as for Tacotron 2 (see ``mel_norm`` in the
checkpoint), so a vocoder expects the same normalised mels an acoustic model produces.

Weights for synthesis: when ``trainer.ema_decay`` > 0 the engine keeps an exponential moving
average, stores it in checkpoints as ``ema`` and passes it here for validation media.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from neurotts.checkpoint import Key
from neurotts.data.loader import AudioWindowBatch, AudioWindowDataset, collate_windows
from neurotts.data.store import FeatureStore
from neurotts.models.registry import DataSpec, build_model
from neurotts.models.wavenet.model import WaveNetConfig, context_frames, make_io, wavenet_loss
from neurotts.training.config import TrainConfig
from neurotts.training.logging import TrainLogger


class WaveNetTask:
    name = "wavenet"

    def __init__(self, cfg: WaveNetConfig, store: FeatureStore, train: TrainConfig):
        self.cfg = cfg
        self.store = store
        self.norm = store.mel_norm(train.data.normalize_mels)
        self.window = train.data.window_frames
        self.context = context_frames(cfg)
        self.generate_samples = train.trainer.media.vocoder_samples
        self.fold = train.trainer.media.vocoder_fold
        self.model = build_model(cfg, DataSpec(len(store.symbols), store.audio, len(store.speakers)))

    def dataset(self, split: str, seed: int) -> AudioWindowDataset:
        return AudioWindowDataset(self.store, self.store.split(split), self.norm, self.window,
                                  self.context, seed)

    def collate(self, items: list[AudioWindowBatch]) -> AudioWindowBatch:
        return collate_windows(items)

    def set_epoch(self, dataset: AudioWindowDataset, epoch: int) -> None:
        dataset.set_epoch(epoch)  # new random windows every epoch

    def loss(self, model: nn.Module, batch: AudioWindowBatch, step: int
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs, targets = make_io(batch.audio, self.cfg)  # (B, T) each
        output = model(inputs, batch.mels, speakers=self.speakers(batch.speakers))  # (B, C_out, T)
        with torch.autocast(device_type=batch.audio.device.type, enabled=False):
            nll = wavenet_loss(self.cfg, output.float(), targets, batch.mask)
        return nll, {"nll": nll}

    def speakers(self, ids: torch.Tensor) -> torch.Tensor | None:
        """The batch's speaker ids ``(B,)`` for a multi-speaker model, else None."""
        return ids if self.store.speakers else None

    def frames(self, batch: AudioWindowBatch) -> int:
        return int(batch.mask.sum()) // self.cfg.hop_length

    def describe(self) -> dict[str, Any]:
        return {Key.MEL_NORM: self.norm.state(), Key.SPEAKERS: list(self.store.speakers)}

    @torch.no_grad()
    def log_media(self, model: nn.Module, batch: AudioWindowBatch, log: TrainLogger, step: int) -> None:
        """Audio generated from the ground-truth mel of a validation utterance (the first one
        that lasts ``vocoder_samples``, else the longest), next to its recording; folded as
        synthesis does, on the weights passed in (EMA when kept). The batch only gives the
        device and dtype: its windows are a fraction of a second long."""
        if self.generate_samples <= 0:
            return
        from neurotts.models.wavenet.fold import generate_folded

        sr, hop = self.store.audio.sample_rate, self.cfg.hop_length
        frames = math.ceil(self.generate_samples / hop)
        val = self.store.split("val")
        utt = next((u for u in val if u.n_frames >= frames), max(val, key=lambda u: u.n_frames))
        mel = self.norm.normalize_np(self.store.mel(utt.id)[:frames])  # (T, n_mels) in model space
        mels = torch.from_numpy(mel).to(batch.mels.device, batch.mels.dtype)[None]
        speaker = torch.tensor([self.store.speaker_id(utt)], device=mels.device)
        gen = generate_folded(model, mels, None, self.fold, sr,
                              generator=torch.Generator(device=mels.device).manual_seed(step),
                              speakers=self.speakers(speaker))
        n = min(mels.shape[1] * hop, self.generate_samples)
        log.audio("val/generated", gen[0, :n], sr, step)
        log.audio("val/target", torch.from_numpy(self.store.audio_float(utt.id)[:n]), sr, step)


TASK = WaveNetTask  # what neurotts.training.tasks.task_class finds for this model
