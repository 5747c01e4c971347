"""``--acoustic RUN``: how a trained Tacotron 2 copes with each clip, teacher-forced.

The model is loaded the way synthesis loads it (:meth:`neurotts.synthesis.engine.AcousticModel.load`),
so its own symbol table, text settings, audio settings and mel normalisation are used. Each
clip is read as ``prepare`` reads it (:func:`neurotts.audio.load_clip` at the model's audio
settings, then the log-mel), then one teacher-forced pass gives per clip:

- ``acoustic_loss``: mean squared error of the post-net mel against the clip's own mel, in
  the model's normalised units (what training minimises);
- the attention health metrics of :mod:`neurotts.models.alignment` on the teacher-forced
  alignment: ``attention_focus``, ``attention_monotonicity``, ``attention_coverage`` and
  ``attention_band_mass``.

A clip the model cannot align (a wrong transcript, long silences, noise) shows as low
coverage and band mass and a loss far above the corpus's.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurotts.audio import AudioError, LogMel, int16_to_float, load_clip
from neurotts.data.loader import TextMelItem, collate_text_mel
from neurotts.models.alignment import alignment_metrics
from neurotts.models.layers import sequence_mask
from neurotts.models.tacotron2 import decoder_lengths
from neurotts.synthesis.engine import AcousticModel, pick_device
from neurotts.text.frontend import TextError, TextWarning


class AcousticChecker:
    """A loaded acoustic model; ``measure(items)`` scores a batch of clips."""

    def __init__(self, path: str, device: str):
        self.device = pick_device(device)
        self.model = AcousticModel.load(path, self.device)
        self.logmel = LogMel(self.model.audio)
        # Records measured with another checkpoint (or step) are measured again.
        self.name = f"{self.model.path}@{self.model.step}"

    def _item(self, wav_path: Path, text: str) -> tuple[np.ndarray, TextMelItem] | str:
        """One clip's samples ``(n,)`` int16 and the model's input for it, or why there is
        none."""
        try:
            pcm = load_clip(wav_path, self.model.audio)
        except AudioError as exc:
            return str(exc)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TextWarning)
                _, _, ids = self.model.frontend.encode(text)
        except TextError as exc:
            return f"text: {exc}"
        with torch.no_grad():
            mel = self.logmel(torch.from_numpy(int16_to_float(pcm)))  # (T, n_mels)
        norm = self.model.norm.normalize(mel)
        return pcm, TextMelItem(torch.tensor(ids, dtype=torch.long), norm)

    def _batch(self, items: list[tuple[str, Path, str]]
               ) -> tuple[dict[str, dict[str, Any]], list[tuple[str, TextMelItem]]]:
        """The clips that can go through the model, and why the others cannot."""
        out: dict[str, dict[str, Any]] = {}
        batch: list[tuple[str, TextMelItem]] = []
        for uid, wav, text in items:
            item = self._item(Path(wav), text)
            if isinstance(item, str):
                out[uid] = {"acoustic_loss": None, "acoustic_error": item}
            else:
                batch.append((uid, item[1]))
        return out, batch

    @torch.no_grad()
    def measure(self, items: list[tuple[str, Path, str]],
                speakers: list[str | None] | None = None) -> dict[str, dict[str, Any]]:
        """``(id, wav path, raw text)`` per clip -> its acoustic measures (None where the
        clip could not be put through the model, with ``acoustic_error`` saying why).
        ``speakers``: each clip's speaker label, for a multi-speaker model (a label the
        model does not have, or none, is measured as its first speaker)."""
        known = set(self.model.speakers)
        who = {uid: (name if name in known else None)
               for (uid, _, _), name in zip(items, speakers or [None] * len(items), strict=True)}
        out, batch = self._batch(items)
        if not batch:
            return out
        b = collate_text_mel([it for _, it in batch])
        dev = self.device
        text, text_len = b.text.to(dev), b.text_lengths.to(dev)
        mels, mel_len = b.mels.to(dev), b.mel_lengths.to(dev)
        ids = self.model.speaker_ids([who[uid] for uid, _ in batch], dev)  # None: one speaker
        res = self.model.model(text, text_len, mels, mel_len, speakers=ids)
        frame_mask = sequence_mask(mel_len, mels.shape[1]).float()  # (B, T_mel)
        err = ((res.mel_after.float() - mels) ** 2).mean(dim=-1) * frame_mask  # (B, T_mel)
        loss = (err.sum(dim=1) / frame_mask.sum(dim=1)).cpu().numpy()  # (B,)
        dec_len = decoder_lengths(b.mel_lengths, self.model.cfg.reduction_factor)  # (B,)
        align = res.alignments.float().cpu()  # (B, T_dec, T_text)
        for k, (uid, _) in enumerate(batch):
            m = alignment_metrics(align[k : k + 1], dec_len[k : k + 1], b.text_lengths[k : k + 1])
            out[uid] = {"acoustic_loss": float(np.float64(loss[k])),
                        **{f"attention_{key}": v for key, v in m.as_dict().items()}}
        return out

    @torch.no_grad()
    def alignment(self, wav: Path, text: str) -> tuple[np.ndarray, list[int], np.ndarray]:
        """One clip teacher-forced: its samples as the model sees them ``(n,)`` int16, its
        symbol ids, and the attention ``(T_dec, T_text)`` (e.g. for word times)."""
        got = self._item(Path(wav), text)
        if isinstance(got, str):
            raise AudioError(f"{wav}: {got}")
        pcm, item = got
        dev = self.device
        res = self.model.model(item.ids[None].to(dev), torch.tensor([len(item.ids)], device=dev),
                               item.mel[None].to(dev), torch.tensor([len(item.mel)], device=dev))
        return pcm, item.ids.tolist(), res.alignments[0].float().cpu().numpy()
