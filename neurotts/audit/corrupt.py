"""A copy of an LJSpeech-layout corpus with known defects, to measure what the audit finds.

:func:`corrupt_corpus` copies ``src`` to ``dst`` and damages ``per_kind`` clips of each kind
in :data:`KINDS` (each clip at most once), writing the truth to ``dst/corruptions.tsv``
(``id<TAB>kind``). The defects are the ones that make Tacotron 2 fail to align:

- ``swapped``: pairs of clips exchange transcripts (both count);
- ``other_text``: a clip gets the transcript of another clip, which is left as it is;
- ``half_words``: every second word of the transcript is dropped;
- ``truncated``: the audio stops after ``truncate_share`` of its samples;
- ``noise``: white noise at ``noise_snr_db`` below the clip's own power;
- ``silence``: ``pad_seconds`` of silence before (even picks) or after (odd picks) the clip;
- ``clipping``: the clip amplified ``clip_gain`` times and cut at full scale.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from neurotts.data.formats import Row, read_corpus

KINDS = ("swapped", "other_text", "half_words", "truncated", "noise", "silence", "clipping")


@dataclass(frozen=True)
class Damage:
    truncate_share: float = 0.55
    noise_snr_db: float = 5.0
    pad_seconds: float = 2.0
    clip_gain: float = 10.0


def _write_wav(path: Path, wav: np.ndarray, rate: int) -> None:
    sf.write(str(path), np.clip(wav, -1.0, 1.0), rate, subtype="PCM_16")


def _damage_audio(kind: str, wav: np.ndarray, rate: int, pick: int, d: Damage,
                  rng: np.random.Generator) -> np.ndarray:
    """``wav`` (n,) float -> its damaged copy."""
    if kind == "truncated":
        return wav[: int(wav.size * d.truncate_share)]
    if kind == "noise":
        power = float(np.mean(wav.astype(np.float64) ** 2))
        sigma = np.sqrt(power * 10.0 ** (-d.noise_snr_db / 10.0))
        return wav + rng.normal(0.0, sigma, wav.size).astype(np.float32)
    if kind == "silence":
        pad = np.zeros(int(d.pad_seconds * rate), dtype=wav.dtype)
        return np.concatenate([pad, wav] if pick % 2 == 0 else [wav, pad])
    if kind == "clipping":
        return wav * d.clip_gain
    raise ValueError(f"{kind!r} is not an audio defect")


def _damage_texts(kind: str, chosen: list[Row], spare: list[Row], texts: dict[str, str]) -> None:
    """Rewrite ``texts`` (id -> raw transcript) for the text defects, in place."""
    if kind == "swapped":
        for a, b in zip(chosen[::2], chosen[1::2], strict=False):
            texts[a.id], texts[b.id] = texts[b.id], texts[a.id]
    elif kind == "other_text":
        for row, donor in zip(chosen, spare, strict=False):
            texts[row.id] = texts[donor.id]
    elif kind == "half_words":
        for row in chosen:
            texts[row.id] = " ".join(texts[row.id].split()[::2])


def corrupt_corpus(src: Path, dst: Path, per_kind: int, seed: int = 0,
                   damage: Damage | None = None) -> dict[str, str]:
    """Copy ``src`` to ``dst`` with ``per_kind`` damaged clips per kind; return id -> kind.

    ``swapped`` damages ``per_kind`` rounded up to an even number (pairs). The clips left over
    lend ``other_text`` its transcripts, so ``(len(KINDS) + 1) * per_kind + 1`` are needed.
    """
    d = damage or Damage()
    rows = read_corpus(src, "ljspeech").rows
    need = (len(KINDS) + 1) * per_kind + 1 + per_kind % 2
    if len(rows) < need:
        raise ValueError(f"{src}: {len(rows)} clips, {need} needed for {per_kind} per kind")
    rng = np.random.default_rng(seed)
    order = [rows[k] for k in rng.permutation(len(rows))]
    picks: dict[str, list[Row]] = {}
    start = 0
    for kind in KINDS:
        n = per_kind + per_kind % 2 if kind == "swapped" else per_kind  # swaps come in pairs
        picks[kind], start = order[start : start + n], start + n
    spare = order[start:]
    texts = {r.id: r.text for r in rows}
    truth: dict[str, str] = {}
    (dst / "wavs").mkdir(parents=True, exist_ok=True)
    for kind, chosen in picks.items():
        truth.update({r.id: kind for r in chosen})
        _damage_texts(kind, chosen, spare, texts)
    for row in rows:
        out = dst / "wavs" / row.audio.name
        kind = truth.get(row.id)
        if kind in ("truncated", "noise", "silence", "clipping"):
            wav, rate = sf.read(str(row.audio), dtype="float32", always_2d=True)
            wav = wav.mean(axis=1)  # (n,): damaged clips are written mono
            pick = picks[kind].index(row)
            _write_wav(out, _damage_audio(kind, wav, rate, pick, d, rng), rate)
        else:
            shutil.copyfile(row.audio, out)
    (dst / "metadata.csv").write_text(
        "".join(f"{r.id}|{texts[r.id]}|{texts[r.id]}\n" for r in rows), encoding="utf-8")
    (dst / "corruptions.tsv").write_text(
        "id\tkind\n" + "".join(f"{uid}\t{kind}\n" for uid, kind in sorted(truth.items())),
        encoding="utf-8")
    return truth


def main(argv: list[str] | None = None) -> None:
    """``python -m neurotts.audit.corrupt SRC DST [--per-kind N] [--seed S]``."""
    import argparse

    ap = argparse.ArgumentParser(description="Copy an LJSpeech-layout corpus with known defects.")
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--per-kind", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    truth = corrupt_corpus(args.src, args.dst, args.per_kind, args.seed)
    print(f"damaged {len(truth)} clips of {args.src} into {args.dst} (see corruptions.tsv)")


if __name__ == "__main__":
    main()
