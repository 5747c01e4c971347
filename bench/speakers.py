"""Two speakers in one Tacotron 2: does each speak with its own pitch? (issue 21, part 3)

A two-speaker corpus is made from the LJSpeech sample: speaker ``lj`` is the clips as they
are, speaker ``lj_up4`` the same clips pitch-shifted by +4 semitones (librosa's phase-vocoder
``pitch_shift``), written as one Piper/LJSpeech-style ``metadata.csv`` (``ID|speaker|text``).
Both speakers say the same lines, so only the speaker id tells the model which pitch to use.
``neurotts prepare`` and ``neurotts train`` (a small Tacotron 2) run on it as a user runs them;
then ``neurotts synth --speaker NAME`` speaks held-out lines (LJSpeech lines that are not in
the sample) with Griffin-Lim for each speaker, and the two speakers' lines are compared:

* ``semitones``: median F0 (``librosa.pyin`` within ``F0_RANGE``) over the voiced frames of
  each speaker's lines; ``semitones_per_line_median`` pairs the same line of both speakers.
  Target: ``lj_up4`` at least 3 semitones above ``lj`` (the recordings differ by 4). NaN when
  pyin finds no voiced frame: a small model trained minutes smears the harmonics of its mels.
* ``spectral_shift``: the shift (semitones) that best matches the two speakers' mean log
  spectra on a log-frequency axis. ``librosa``'s pitch shift resamples, so the envelope moves
  by the same 4 semitones as the pitch; this is what a smeared spectrum keeps of a speaker.

Prints progress to stderr and ONE JSON line last on stdout. Run it with one thread per
process (OMP_NUM_THREADS=1) on a shared machine; ``--workdir`` keeps the corpus, store and run
so that a second call re-measures without retraining (``--steps`` more continue the run).

The recordings' own gap is measured the same way in the same call (and their mels through
Griffin-Lim: is the vocoder the limit?), and ``teacher_forced_shift`` is the spectral shift of
the model's output on recorded lines when only the speaker id changes (the slow test's check).

Usage: python bench/speakers.py [--clips 60] [--max-seconds 4] [--steps 800] [--lines 12]
       [--workdir DIR] [--measure CKPT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = SHARED / "ljspeech-sample" / "LJSpeech-1.1"
TEXTS = SHARED / "ljspeech-texts" / "metadata.csv"
SPEAKERS = ("lj", "lj_up4")  # sorted, as the speaker table is: ids 0 and 1
SHIFT = 4.0  # semitones of the second speaker
MIN_VOICED_SHARE = 0.2  # of the frames, for a median F0 to count
# pyin's search range (Hz), set for this voice: LJ speaks at about 190 Hz (recordings' median),
# the +4 semitone copy at about 240 Hz, both within 80-500 Hz. A wider range (60-600 Hz) lets
# pyin take the second harmonic of a smeared Griffin-Lim spectrum for F0 (an octave error).
F0_RANGE = (80.0, 500.0)
# Held out: not in the sample, short (a few seconds of speech), plain words.
FALLBACK_LINES = ["The committee met again on the following day.",
                  "He said that the house was empty when he came back.",
                  "There was no answer to the letter.",
                  "The prisoners were taken to the court in the morning."]
# A small Tacotron 2 (about 0.5M parameters): seconds per step on one core.
SMALL = ["model.reduction_factor=3", "model.encoder.embedding_dim=64",
         "model.encoder.conv_channels=64", "model.encoder.conv_layers=2",
         "model.encoder.lstm_dim=64", "model.decoder.prenet_dims=[64,64]",
         "model.decoder.attention_rnn_dim=128", "model.decoder.decoder_rnn_dim=128",
         "model.attention.dim=64", "model.attention.location.n_filters=16",
         "model.attention.location.kernel_size=15", "model.postnet.channels=64",
         "model.postnet.layers=3", "model.speakers.embedding_dim=16"]


def log(msg: str) -> None:
    print(f"[speakers] {msg}", file=sys.stderr, flush=True)


def make_corpus(root: Path, clips: int, max_seconds: float, sample: Path = SAMPLE) -> dict:
    """Write the two-speaker corpus into ``root`` (kept if already there); its size."""
    meta = root / "metadata.csv"
    if meta.is_file():
        return json.loads((root / "corpus.json").read_text())
    table = (sample / "metadata.csv").read_text(encoding="utf-8")
    rows = [ln.split("|") for ln in table.splitlines()]
    chosen = []
    for row in rows:
        info = sf.info(str(sample / "wavs" / f"{row[0]}.wav"))
        if info.frames / info.samplerate <= max_seconds:
            chosen.append((row[0], row[-1]))
        if len(chosen) == clips:
            break
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines, seconds = [], 0.0
    for uid, text in chosen:
        y, sr = sf.read(sample / "wavs" / f"{uid}.wav", dtype="float32")
        up = librosa.effects.pitch_shift(y, sr=sr, n_steps=SHIFT)
        for speaker, wav in zip(SPEAKERS, (y, up), strict=True):
            sf.write(root / "wavs" / f"{speaker}_{uid}.wav", wav, sr, subtype="PCM_16")
            lines.append(f"{speaker}_{uid}|{speaker}|{text}")
        seconds += 2 * y.size / sr
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = {"clips_per_speaker": len(chosen), "minutes": round(seconds / 60, 2)}
    (root / "corpus.json").write_text(json.dumps(info))
    return info


def held_out_lines(corpus_ids: set[str], n: int) -> list[str]:
    """``n`` short LJSpeech lines whose clips are not in the sample."""
    if not TEXTS.is_file():
        return FALLBACK_LINES[:n]
    out = []
    for ln in TEXTS.read_text(encoding="utf-8").splitlines():
        parts = ln.split("|")
        text = parts[-1]
        if parts[0] not in corpus_ids and 30 <= len(text) <= 60 and text.isascii() \
                and not any(c.isdigit() for c in text):
            out.append(text)
        if len(out) == n:
            break
    return out


def neurotts(*args: str) -> float:
    """Run a neurotts command (the CLI, in a fresh process); its wall seconds."""
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "neurotts.cli", *args], check=True, env=env,
                   stdout=sys.stderr)
    return time.perf_counter() - t0


def median_f0(wavs: list[Path]) -> tuple[float, list[float], float]:
    """Median F0 (Hz) over the voiced frames of all ``wavs`` (pyin within ``F0_RANGE``),
    each file's median, and the share of frames pyin calls voiced (about 0.6 in the
    recordings)."""
    voiced, each, frames = [], [], 0
    for path in wavs:
        y, sr = sf.read(path, dtype="float32")
        f0, flag, _ = librosa.pyin(y, fmin=F0_RANGE[0], fmax=F0_RANGE[1], sr=sr,
                                   frame_length=1024)
        f = f0[flag & np.isfinite(f0)]
        voiced.append(f)
        frames += f0.size
        each.append(round(float(np.median(f)), 1) if f.size else float("nan"))
    allf = np.concatenate(voiced) if voiced else np.zeros(0)
    return ((float(np.median(allf)) if allf.size else float("nan")), each,
            round(allf.size / max(frames, 1), 3))


def semitones(hi: float, lo: float) -> float:
    return float(12.0 * np.log2(hi / lo))


GRID_HZ = 100.0 * 2.0 ** (np.arange(0, 12 * np.log2(6000 / 100), 0.1) / 12)  # 0.1 st steps


def mean_log_spectrum(wavs: list[Path]) -> np.ndarray:
    """Mean log power over the louder half of the frames of ``wavs``, on ``GRID_HZ`` (tenths
    of a semitone from 100 Hz to 6 kHz): what is left of a speaker when the harmonics are
    smeared (the envelope, which a pitch shift by resampling moves with the pitch)."""
    spectra = []
    for path in wavs:
        y, sr = sf.read(path, dtype="float32")
        power = np.abs(librosa.stft(y, n_fft=2048, hop_length=256)) ** 2  # (F, T)
        loud = power.sum(0) >= np.median(power.sum(0))
        freqs = librosa.fft_frequencies(sr=sr, n_fft=2048)
        spectra.append(np.interp(GRID_HZ, freqs, np.log(power[:, loud].mean(1) + 1e-10)))
    return np.mean(spectra, axis=0)


def best_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Semitones by which spectrum ``b`` sits above ``a`` (both on ``GRID_HZ``): the shift
    (in tenths, -8 to +8 semitones) that best correlates the two."""
    m, shifts = 80, np.arange(-80, 81)  # b[i + k] against a[i], i over the middle of the grid
    score = [np.corrcoef(a[m: a.size - m], b[m + k: b.size - m + k])[0, 1] for k in shifts]
    return float(shifts[int(np.argmax(score))] / 10.0)


def spectral_shift(lo: list[Path], hi: list[Path]) -> float:
    """Semitones by which ``hi``'s mean log spectrum sits above ``lo``'s."""
    return best_shift(mean_log_spectrum(lo), mean_log_spectrum(hi))


def mel_shift(lo: np.ndarray, hi: np.ndarray, audio: object) -> float:
    """Semitones by which mean log-mel ``hi`` ``(n_mels,)`` sits above ``lo``: the mel bands'
    centre frequencies put on ``GRID_HZ`` (bands are about 1 semitone apart above 1 kHz)."""
    centres = librosa.mel_frequencies(lo.size + 2, fmin=audio.fmin, fmax=audio.fmax)[1:-1]
    return best_shift(np.interp(GRID_HZ, centres, lo), np.interp(GRID_HZ, centres, hi))


def teacher_forced_shift(acoustic: Path, store_dir: Path, n: int = 8) -> dict:
    """The model fed ``n`` of ``lj``'s recorded utterances (text and mels, teacher forcing) once
    as ``lj`` and once as ``lj_up4``: how far up its output spectrum moves with the speaker id
    alone (0 if the id were ignored), beside the recordings' own shift (same lines)."""
    import torch

    from neurotts import checkpoint as ckpt
    from neurotts.data.loader import TextMelDataset, collate_text_mel
    from neurotts.data.store import FeatureStore

    trained = ckpt.load_trained(acoustic, "tacotron2")
    store = FeatureStore(store_dir)
    by_id = {u.id: u for u in store.utterances}
    lo = [u for u in store.utterances if u.speaker == SPEAKERS[0]][:n]
    hi = [by_id[u.id.replace(SPEAKERS[0], SPEAKERS[1], 1)] for u in lo]
    means = {}
    for name, utts in (("rec_lo", lo), ("rec_hi", hi)):
        data = TextMelDataset(store, utts, trained.mel_norm)
        batch = collate_text_mel([data[i] for i in range(len(utts))])
        valid = torch.arange(batch.mels.shape[1])[None, :] < batch.mel_lengths[:, None]  # (B, T)
        means[name] = trained.mel_norm.inverse(batch.mels)[valid].mean(0).numpy()
        if name == "rec_hi":
            break
        for sid, speaker in enumerate(SPEAKERS):
            torch.manual_seed(0)  # the prenet's dropout stays on in eval mode
            with torch.no_grad():
                out = trained.model(batch.text, batch.text_lengths, batch.mels,
                                    batch.mel_lengths, speakers=torch.full_like(batch.speakers,
                                                                                sid)).mel_after
            means[speaker] = trained.mel_norm.inverse(out)[valid].mean(0).numpy()
    return {"teacher_forced_shift": mel_shift(means[SPEAKERS[0]], means[SPEAKERS[1]],
                                              trained.audio),
            "training_data_mel_shift": mel_shift(means["rec_lo"], means["rec_hi"], trained.audio)}


def griffin_lim_recordings(work: Path, n: int = 10) -> dict[str, list[Path]]:
    """The store's mels of ``n`` recorded lines per speaker through synth's Griffin-Lim (60
    iterations), written to ``work/gl``: how much voicing pyin finds once a perfect mel has
    gone through the vocoder the synthesized lines go through."""
    import torch

    from neurotts.data.store import FeatureStore
    from neurotts.vocoders import GriffinLimVocoder

    store = FeatureStore(work / "store")
    vocoder = GriffinLimVocoder(store.audio, torch.device("cpu"))
    out: dict[str, list[Path]] = {}
    for speaker in SPEAKERS:
        folder = work / "gl" / speaker
        folder.mkdir(parents=True, exist_ok=True)
        out[speaker] = []
        for u in [u for u in store.utterances if u.speaker == speaker][:n]:
            mel = torch.from_numpy(store.mel(u.id))[None]  # (1, T, n_mels) log-mel
            wav = vocoder(mel, torch.tensor([mel.shape[1]]))[0]
            sf.write(folder / f"{u.id}.wav", wav, store.audio.sample_rate, subtype="PCM_16")
            out[speaker].append(folder / f"{u.id}.wav")
    return out


def train_two_speakers(work: Path, clips: int, max_seconds: float, steps: int,
                       extra: list[str]) -> dict:
    """The corpus, store and run in ``work`` (``corpus``, ``store``, ``run``; kept ones are
    reused, a kept run continues to ``steps``): their size and seconds."""
    corpus, store, run_dir = work / "corpus", work / "store", work / "run"
    t0 = time.perf_counter()
    info = make_corpus(corpus, clips, max_seconds)
    log(f"corpus: {info} ({time.perf_counter() - t0:.0f} s)")
    prepare_s = 0.0
    if not (store / "manifest.jsonl").is_file():
        prepare_s = neurotts("prepare", f"data.root={corpus}", f"out={store}",
                             "data.format=piper")
    train_s = neurotts("train", "experiment=tiny", f"data.features={store}", f"run.dir={run_dir}",
                       *SMALL, f"trainer.max_steps={steps}", "trainer.batch_size=8",
                       "trainer.val_every=100", "trainer.checkpoint_every=100",
                       "trainer.log_every=25", "trainer.media.griffin_lim_iters=0",
                       "trainer.schedule.warmup_steps=50", "trainer.optimizer.lr=2e-3", *extra)
    return {"clips_per_speaker": info["clips_per_speaker"], "minutes": info["minutes"],
            "steps": steps, "prepare_s": round(prepare_s, 1), "train_s": round(train_s, 1)}


def run(work: Path, clips: int, max_seconds: float, steps: int, lines: int,
        extra: list[str]) -> dict:
    result = train_two_speakers(work, clips, max_seconds, steps, extra)
    write_lines(work, lines)
    return {**result, **measure(work, work / "run", work / "corpus")}


def write_lines(work: Path, n: int) -> None:
    """``work/lines.txt``: the first ``n`` held-out lines (the same first lines for any n)."""
    ids = {ln.split("|")[0] for ln in (SAMPLE / "metadata.csv").read_text().splitlines()}
    (work / "lines.txt").write_text("\n".join(held_out_lines(ids, n)) + "\n", encoding="utf-8")


def measure(work: Path, acoustic: Path, corpus: Path) -> dict:
    """Speak ``work/lines.txt`` as each speaker with ``acoustic`` (a run or checkpoint) and
    compare the speakers' lines, and the recordings of ``corpus``, as the docstring says."""
    result: dict = {"lines": len((work / "lines.txt").read_text().splitlines()),
                    "f0_range_hz": list(F0_RANGE)}
    medians, wavs, per_line = {}, {}, {}
    for speaker in SPEAKERS:
        out = work / "synth" / speaker
        neurotts("synth", "-i", str(work / "lines.txt"), "-a", str(acoustic), "-o", f"{out}/",
                 "--speaker", speaker, "--seed", "0", "--force")
        wavs[speaker] = sorted(out.glob("*.wav"))
        medians[speaker], each, share = median_f0(wavs[speaker])
        per_line[speaker] = np.array(each)
        result[f"f0_{speaker}_hz"] = round(medians[speaker], 1)
        result[f"f0_{speaker}_per_line_hz"] = each
        result[f"voiced_share_{speaker}"] = share
    recorded = {s: sorted((corpus / "wavs").glob(f"{s}_LJ*.wav"))[:10] for s in SPEAKERS}
    ref = {s: median_f0(recorded[s]) for s in SPEAKERS}
    result["training_data_voiced_share"] = ref[SPEAKERS[0]][2]
    ref = {s: r[0] for s, r in ref.items()}
    result["training_data_semitones"] = round(semitones(ref[SPEAKERS[1]], ref[SPEAKERS[0]]), 2)
    result["training_data_spectral_shift"] = spectral_shift(*(recorded[s] for s in SPEAKERS))
    gl = {s: median_f0(w) for s, w in griffin_lim_recordings(work).items()}
    result["griffin_lim_recordings_voiced_share"] = [gl[s][2] for s in SPEAKERS]
    result["griffin_lim_recordings_semitones"] = round(
        semitones(gl[SPEAKERS[1]][0], gl[SPEAKERS[0]][0]), 2)
    # NaN when pyin finds no voiced frame in one speaker's lines (smeared harmonics).
    result["semitones"] = round(semitones(medians[SPEAKERS[1]], medians[SPEAKERS[0]]), 2)
    # The same line spoken by both: the median of the per-line gaps (lines pyin voices in both).
    gaps = 12.0 * np.log2(per_line[SPEAKERS[1]] / per_line[SPEAKERS[0]])
    gaps = gaps[np.isfinite(gaps)]
    result["semitones_per_line_median"] = round(float(np.median(gaps)), 2) if gaps.size else None
    result["lines_higher"] = f"{int((gaps > 0).sum())}/{gaps.size}"
    result["spectral_shift"] = spectral_shift(*(wavs[s] for s in SPEAKERS))
    result.update(teacher_forced_shift(acoustic, work / "store"))
    result["target_semitones"] = 3.0
    # A median over a few spurious pyin frames means nothing: the F0 figure counts only when
    # pyin hears voice in a fair share of both speakers' frames (0.6 in the recordings).
    voiced = min(result[f"voiced_share_{s}"] for s in SPEAKERS)
    result["f0_measurable"] = bool(voiced >= MIN_VOICED_SHARE)
    result["passed"] = bool(result["f0_measurable"] and 3.0 <= result["semitones"] <= 8.0)
    result["spectral_passed"] = bool(result["spectral_shift"] >= 3.0)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=60, help="clips per speaker")
    ap.add_argument("--max-seconds", type=float, default=4.0, help="longest clip used")
    ap.add_argument("--steps", type=int, default=800, help="training steps (in all)")
    ap.add_argument("--lines", type=int, default=12, help="held-out lines per speaker")
    ap.add_argument("--workdir", type=Path, default=None, help="keep everything here")
    ap.add_argument("--measure", type=Path, default=None,
                    help="only measure this checkpoint (with --workdir of an earlier run)")
    ap.add_argument("overrides", nargs="*", help="more train overrides (key=value)")
    args = ap.parse_args()
    if not (SAMPLE / "metadata.csv").is_file():
        print(json.dumps({"skipped": f"no LJSpeech sample at {SAMPLE}"}))
        return
    if args.measure is not None:
        if args.workdir is None:
            ap.error("--measure needs the --workdir of an earlier run")
        write_lines(args.workdir, args.lines)
        result = {"checkpoint": str(args.measure),
                  **measure(args.workdir, args.measure, args.workdir / "corpus")}
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(work, args.clips, args.max_seconds, args.steps, args.lines, args.overrides)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
