"""Tacotron 2 task: text ids + mels, teacher forcing, guided attention, validation media.

Mels are z-scored with the store's train-split statistics when ``data.normalize_mels`` is on
(the default): the log-mel channels differ in mean by several nats, and the MSE otherwise
spends its effort on the per-channel offsets. The statistics go into every checkpoint as
``mel_norm``, so synthesis maps the model's output back to log-mels with them.
The symbol count comes from the store's symbol table.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from neurotts.checkpoint import Key
from neurotts.config import ConfigError
from neurotts.data.loader import (
    TextMelBatch,
    TextMelDataset,
    TextMelItem,
    collate_text_mel,
)
from neurotts.data.store import FeatureStore
from neurotts.models.alignment import alignment_metrics
from neurotts.models.registry import DataSpec, build_model
from neurotts.models.tacotron2 import Tacotron2Config, decoder_lengths, tacotron2_loss
from neurotts.training.config import TrainConfig
from neurotts.training.graphs import GraphedDecoder
from neurotts.training.logging import TrainLogger
from neurotts.training.media import griffin_lim, plot_alignment, plot_mels


class Tacotron2Task:
    name = "tacotron2"

    def __init__(self, cfg: Tacotron2Config, store: FeatureStore, train: TrainConfig):
        self.cfg = cfg
        self.store = store
        self.norm = store.mel_norm(train.data.normalize_mels)
        self.gl_iters = train.trainer.media.griffin_lim_iters
        self.model = build_model(cfg, DataSpec(len(store.symbols), store.audio, len(store.speakers)))
        graphs = train.trainer.cuda_graphs
        self.graphs = (GraphedDecoder(self.model.decoder, cfg.reduction_factor, graphs)
                       if graphs.enabled else None)

    def dataset(self, split: str, seed: int) -> TextMelDataset:
        return TextMelDataset(self.store, self.store.split(split), self.norm)

    def collate(self, items: list[TextMelItem]) -> TextMelBatch:
        return collate_text_mel(items)

    def set_epoch(self, dataset: TextMelDataset, epoch: int) -> None:
        """Whole utterances: nothing depends on the epoch."""

    def loss(self, model: nn.Module, batch: TextMelBatch, step: int
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.graphs is not None and isinstance(model, DistributedDataParallel):
            raise ConfigError("trainer.cuda_graphs.enabled=true supports one process only "
                              "(not torchrun/DDP)")
        fed = self.fed_frames(model, batch, step) if model.training else batch.mels
        out = model(batch.text, batch.text_lengths, fed, batch.mel_lengths,
                    decode=self.graphs, speakers=self.speakers(batch.speakers))
        # The targets are the true frames whatever the decoder was fed.
        return tacotron2_loss(out, batch.mels, batch.mel_lengths, batch.text_lengths, self.cfg, step)

    def sampling_prob(self, step: int) -> float:
        """Scheduled-sampling probability at ``step``: 0 before ``sampling_start``, then a
        linear ramp to ``sampling_prob`` over ``sampling_ramp`` steps."""
        tf = self.cfg.teacher_forcing
        if tf.sampling_prob == 0 or step < tf.sampling_start:
            return 0.0
        ramp = 1.0 if tf.sampling_ramp == 0 else min((step - tf.sampling_start) / tf.sampling_ramp, 1.0)
        return tf.sampling_prob * ramp

    def fed_frames(self, model: nn.Module, batch: TextMelBatch, step: int) -> torch.Tensor:
        """``(B, T_mel, n_mels)`` frames the decoder is fed in training (model.teacher_forcing):
        the true ones, some swapped for the model's own teacher-forced predictions of them
        (scheduled sampling; that pass has no gradient), plus Gaussian noise."""
        tf, fed = self.cfg.teacher_forcing, batch.mels
        prob = self.sampling_prob(step)
        if prob > 0:
            with torch.no_grad():
                own = model(batch.text, batch.text_lengths, fed, batch.mel_lengths,
                            speakers=self.speakers(batch.speakers)).mel_before
            swap = torch.rand(fed.shape[0], fed.shape[1], 1, device=fed.device) < prob  # (B, T, 1)
            fed = torch.where(swap, own.to(fed.dtype), fed)
        if tf.input_noise > 0:
            fed = fed + tf.input_noise * torch.randn_like(fed)
        return fed

    def speakers(self, ids: torch.Tensor) -> torch.Tensor | None:
        """The batch's speaker ids ``(B,)`` for a multi-speaker model, else None."""
        return ids if self.store.speakers else None

    def frames(self, batch: TextMelBatch) -> int:
        return int(batch.mel_lengths.sum())

    def describe(self) -> dict[str, Any]:
        return {Key.MEL_NORM: self.norm.state(), Key.SPEAKERS: list(self.store.speakers)}

    @torch.no_grad()
    def log_media(self, model: nn.Module, batch: TextMelBatch, log: TrainLogger, step: int) -> None:
        """Alignment health of the batch; for its first item the teacher-forced alignment and
        mels, and (``griffin_lim_iters`` > 0) audio and a free-running synthesis."""
        out = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths,
                    speakers=self.speakers(batch.speakers))
        dec_lengths = decoder_lengths(batch.mel_lengths, self.cfg.reduction_factor)
        metrics = alignment_metrics(out.alignments.float().cpu(), dec_lengths.cpu(),
                                    batch.text_lengths.cpu())
        log.scalars(step, metrics.as_dict(), "val_alignment")
        n_text, n_mel, n_dec = (int(batch.text_lengths[0]), int(batch.mel_lengths[0]),
                                int(dec_lengths[0]))
        log.image("val/alignment", plot_alignment(out.alignments[0, :n_dec, :n_text]), step)
        log.image("val/mel", plot_mels(out.mel_after[0, :n_mel], batch.mels[0, :n_mel]), step)
        if self.gl_iters > 0:
            self._log_audio(model, batch, out.mel_after[0, :n_mel], log, step)

    def _log_audio(self, model: nn.Module, batch: TextMelBatch, teacher_forced: torch.Tensor,
                   log: TrainLogger, step: int) -> None:
        """Griffin-Lim of the teacher-forced prediction, and of a free-running synthesis
        (with its alignment) when that lasts a few frames at least."""
        audio = self.store.audio
        wav = griffin_lim(self.norm.inverse(teacher_forced.float()), audio, self.gl_iters)
        log.audio("val/teacher_forced_griffin_lim", wav, audio.sample_rate, step)
        n_text = int(batch.text_lengths[0])
        with warnings.catch_warnings():  # an unaligned model hits the length guard
            warnings.simplefilter("ignore", RuntimeWarning)
            synth = model.infer(batch.text[:1, :n_text], batch.text_lengths[:1],
                                self.speakers(batch.speakers[:1]))
        log.scalars(step, {"synthesis_hit_max": float(synth.hit_max[0]),
                           "synthesis_frames": float(synth.mel_lengths[0])}, "val_alignment")
        log.image("val/synthesis_alignment", plot_alignment(synth.alignments[0, :, :n_text]), step)
        n_frames = int(synth.mel_lengths[0])
        if n_frames * audio.hop_length >= 2 * audio.n_fft:  # Griffin-Lim needs a few frames
            mel = self.norm.inverse(synth.mels[0, :n_frames].float())
            wav = griffin_lim(mel, audio, self.gl_iters)
            log.audio("val/synthesis_griffin_lim", wav, audio.sample_rate, step)


TASK = Tacotron2Task  # what neurotts.training.tasks.task_class finds for this model
