"""The data check at the start of a fine-tune: is the new corpus enough, and what of it does
the base model know?

Reported (printed, written to ``data_check.txt`` in the run folder, kept in the checkpoint's
``init_from`` entry): minutes of audio and utterances in the train split, the sample rates,
and for models that read symbols how many of the symbols the train split uses the base
model's table has, naming the others. Warnings where the data is known to be too little:

- under :data:`MIN_MINUTES` of training audio: fine-tunes of a single-speaker voice are
  reported to work from about 10-15 minutes (Piper's users), and from-scratch Tacotron fails
  below ~24 minutes (Chung et al., ICASSP 2019); below that the attention often stops aligning.
- more than :data:`MAX_UNKNOWN_SHARE` of the symbols used unknown to the base: their rows
  start from the mapping rules, not from training, so the encoder has much to re-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from neurotts.data.store import FeatureStore
from neurotts.text.symbols import PAD

MIN_MINUTES = 10.0
MAX_UNKNOWN_SHARE = 1 / 3
LISTED = 30  # unknown symbols named in the printed line (all of them in data_check's dict)


@dataclass
class DataCheck:
    minutes: float  # audio in the train split
    utterances: int  # in the train split
    sample_rate: int  # the new store's
    base_sample_rate: int
    used: list[str] | None = None  # symbols the train split uses (None: the model reads none)
    unknown: list[str] = field(default_factory=list)  # of those, not in the base's table
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"data check: {self.minutes:.1f} minutes of audio in {self.utterances} train "
               f"utterances, {self.sample_rate} Hz (base: {self.base_sample_rate} Hz)"]
        if self.used is not None:
            known = len(self.used) - len(self.unknown)
            line = f"data check: the base knows {known} of the {len(self.used)} symbols the train split uses"
            if self.unknown:
                shown = " ".join(repr(s) for s in self.unknown[:LISTED])
                more = f" ... ({len(self.unknown)} in all)" if len(self.unknown) > LISTED else ""
                line += f"; not: {shown}{more}"
            out.append(line)
        return out + self.warnings


def check_finetune_data(store: FeatureStore, base_symbols: Sequence[str], base_audio: dict[str, Any],
                        uses_symbols: bool) -> DataCheck:
    """The data check of ``store``'s train split against a base model (see module doc)."""
    train = store.split("train")
    sr = store.audio.sample_rate
    minutes = sum(u.n_samples for u in train) / sr / 60
    check = DataCheck(round(minutes, 2), len(train), sr, int(base_audio["sample_rate"]))
    if minutes < MIN_MINUTES:
        check.warnings.append(
            f"warning: only {minutes:.1f} minutes of training audio; fine-tunes are reported to "
            f"need about {MIN_MINUTES:.0f}-15 minutes, and with less the attention often fails to "
            "align: watch the alignment in TensorBoard, consider trainer.freeze=[encoder]")
    if uses_symbols:
        known = set(base_symbols)
        ids = {i for u in train for i in u.ids}
        check.used = [store.symbols[i] for i in sorted(ids) if store.symbols[i] != PAD]
        check.unknown = [s for s in check.used if s not in known]
        if check.used and len(check.unknown) / len(check.used) > MAX_UNKNOWN_SHARE:
            check.warnings.append(
                f"warning: {len(check.unknown)} of the {len(check.used)} symbols used are new to "
                "the base model: their embeddings start from the mapping rules (see "
                "init_from.tsv), so the encoder has much to learn; more data or steps help")
    return check
