"""Steps until Tacotron 2 attention aligns, per attention type, with and without the guide.

Trains on the shortest clips of the shared LJSpeech sample and checks the alignment of a fixed
held batch (teacher-forced, eval mode) every ``--check-every`` steps with
:func:`neurotts.models.alignment.is_aligned`. On CPU a reduced model is trained (the full one
runs ~22 s/step on 2 cores); with CUDA available the shipped full-size config is used.

Progress goes to stderr; the last stdout line is one JSON object::

    {"bench": "alignment_speed", "device": ..., "results": {"location": {"guided":
     {"steps": 65 | null, "seconds": ..., "metrics": {...}}, "unguided": {...}}, ...}, ...}

``steps`` is null when the held batch did not align within ``--max-steps``.
Usage: ``python bench/alignment_speed.py [--max-steps 300] [--attentions location,dca]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import soundfile as sf
import torch
from omegaconf import OmegaConf
from torch.nn.utils.rnn import pad_sequence

from neurotts.audio import AudioConfig, fit_to_hop, load_wav, log_mel, trim_silence
from neurotts.config import load_config
from neurotts.data.config import PrepareConfig
from neurotts.models.alignment import AlignmentMetrics, AlignmentThresholds, alignment_metrics
from neurotts.models.registry import model_config as typed_model_config
from neurotts.models.tacotron2 import Tacotron2, Tacotron2Config, tacotron2_loss
from neurotts.text.frontend import TextConfig, TextFrontend

SAMPLE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech-sample" / "LJSpeech-1.1"
)
ATTENTIONS = ("location", "dca", "multihead")
# A ~0.16M-parameter Tacotron 2 (overrides of the default Tacotron2Config, which equals
# configs/model/tacotron2.yaml) that learns an alignment on a handful of real clips within a
# few hundred CPU steps: the model of this benchmark and of the alignment tests
# (tests/test_tacotron2.py imports it), so both measure the same thing.
ALIGNMENT_PROBE_TACOTRON2 = (
    "encoder.embedding_dim=32",
    "encoder.conv_channels=32",
    "encoder.lstm_dim=32",
    "encoder.dropout=0.0",
    "decoder.prenet_dims=[32,32]",
    "decoder.attention_rnn_dim=64",
    "decoder.decoder_rnn_dim=64",
    "decoder.zoneout=0.0",
    "attention.dim=32",
    "attention.location.n_filters=8",
    "attention.location.kernel_size=15",
    "attention.dca.n_static_filters=4",
    "attention.dca.static_kernel_size=11",
    "attention.dca.n_dynamic_filters=4",
    "attention.dca.dynamic_kernel_size=11",
    "attention.multihead.n_heads=2",
    "attention.multihead.n_filters=8",
    "attention.multihead.kernel_size=15",
    "postnet.channels=32",
    "postnet.layers=3",
    "reduction_factor=3",
)



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="training steps per run before giving up (default 300 CPU, 1500 GPU)",
    )
    p.add_argument(
        "--attentions",
        default=",".join(ATTENTIONS),
        help="comma-separated subset of location,dca,multihead",
    )
    p.add_argument("--check-every", type=int, default=5, help="steps between alignment checks")
    p.add_argument(
        "--clips", type=int, default=None, help="shortest clips to train on (default 8 CPU, 64 GPU)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default 8 CPU, 32 GPU")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (1 is as fast as 2 for the reduced model)",
    )
    args = p.parse_args(argv)
    unknown = set(args.attentions.split(",")) - set(ATTENTIONS)
    if unknown:
        p.error(f"unknown attention(s) {sorted(unknown)}; choose from {ATTENTIONS}")
    return args


def encode_texts(texts: list[str]) -> tuple[list[torch.Tensor], int]:
    """Character ids per raw text (through the project's normaliser) and the symbol count."""
    frontend = TextFrontend(TextConfig(symbol_set="characters"))
    ids = [torch.tensor(frontend.encode(t)[2], dtype=torch.long) for t in texts]
    return ids, len(frontend.symbols)


def load_clips(n: int, audio: AudioConfig) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """The ``n`` shortest sample clips: ids, standardised log-mels ``(T, n_mels)``, n_symbols."""
    rows = [line.rstrip("\n").split("|") for line in (SAMPLE / "metadata.csv").open()]
    rows.sort(key=lambda row: sf.info(str(SAMPLE / "wavs" / f"{row[0]}.wav")).frames)
    mels = []
    for row in rows[:n]:
        wav = load_wav(SAMPLE / "wavs" / f"{row[0]}.wav", audio.sample_rate)
        wav = trim_silence(wav, audio.trim_top_db, audio.win_length, audio.hop_length)
        mels.append(torch.from_numpy(log_mel(fit_to_hop(wav, audio.hop_length), audio)))
    frames = torch.cat(mels)
    mean, std = frames.mean(), frames.std()  # one global scale, as a feature store would
    ids, n_symbols = encode_texts([row[1] for row in rows[:n]])
    return ids, [(m - mean) / std for m in mels], n_symbols


def collate(ids: list[torch.Tensor], mels: list[torch.Tensor], device: torch.device):
    tl = torch.tensor([len(i) for i in ids])
    ml = torch.tensor([len(m) for m in mels])
    text, mel = pad_sequence(ids, batch_first=True), pad_sequence(mels, batch_first=True)
    return text.to(device), tl.to(device), mel.to(device), ml.to(device)


def model_config(attention: str, guided: bool, full: bool, n_mels: int) -> Tacotron2Config:
    overrides = [] if full else list(ALIGNMENT_PROBE_TACOTRON2)
    overrides += [f"attention.type={attention}"]
    if not guided:
        overrides.append("loss.guided_attn_weight=0.0")
    tree = OmegaConf.merge(OmegaConf.structured(Tacotron2Config(n_mels=n_mels)),
                           OmegaConf.from_dotlist(overrides))
    return typed_model_config(OmegaConf.to_container(tree))


def held_metrics(model: Tacotron2, cfg: Tacotron2Config, held) -> AlignmentMetrics:
    text, tl, mel, ml = held
    model.eval()
    with torch.no_grad():
        alignments = model(text, tl, mel, ml).alignments
    r = cfg.reduction_factor
    dec_lengths = torch.div(ml + r - 1, r, rounding_mode="floor")
    return alignment_metrics(alignments.float().cpu(), dec_lengths.cpu(), tl.cpu())


def run_one(cfg: Tacotron2Config, n_symbols: int, batches: list, args, device) -> dict:
    """Train from a fixed seed until the held batch (the first batch) aligns."""
    torch.manual_seed(0)
    model = Tacotron2(cfg, n_symbols).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    thresholds = AlignmentThresholds()
    start = time.perf_counter()
    metrics = AlignmentMetrics(0.0, 0.0, 0.0, 0.0)
    for step in range(1, args.max_steps + 1):
        text, tl, mel, ml = batches[(step - 1) % len(batches)]
        model.train()
        out = model(text, tl, mel, ml)
        loss, _ = tacotron2_loss(out, mel, ml, tl, cfg, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.check_every == 0 or step == args.max_steps:
            metrics = held_metrics(model, cfg, batches[0])
            if metrics.passes(thresholds):
                return {
                    "steps": step,
                    "seconds": round(time.perf_counter() - start, 1),
                    "metrics": _round(metrics),
                }
    return {
        "steps": None,
        "seconds": round(time.perf_counter() - start, 1),
        "metrics": _round(metrics),
    }


def _round(metrics: AlignmentMetrics) -> dict[str, float]:
    return {k: round(v, 3) for k, v in metrics.as_dict().items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not SAMPLE.is_dir():
        sys.exit(f"alignment_speed: LJSpeech sample not found at {SAMPLE}")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.set_num_threads(args.threads)
    args.max_steps = args.max_steps or (1500 if cuda else 300)
    n_clips = args.clips or (64 if cuda else 8)
    batch_size = args.batch_size or (32 if cuda else 8)
    audio = load_config("prepare", PrepareConfig, ["out=unused"]).audio
    ids, mels, n_symbols = load_clips(n_clips, audio)
    batches = [
        collate(ids[i : i + batch_size], mels[i : i + batch_size], device)
        for i in range(0, n_clips, batch_size)
    ]
    results: dict[str, dict] = {}
    total = time.perf_counter()
    for attention in args.attentions.split(","):
        results[attention] = {}
        for guided in (True, False):
            cfg = model_config(attention, guided, full=cuda, n_mels=audio.n_mels)
            res = run_one(cfg, n_symbols, batches, args, device)
            results[attention]["guided" if guided else "unguided"] = res
            print(f"{attention} guided={guided}: {res}", file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "bench": "alignment_speed",
                "device": torch.cuda.get_device_name() if cuda else f"cpu ({args.threads} threads)",
                "model": "full (configs/model/tacotron2.yaml)" if cuda else "reduced (CPU)",
                "clips": n_clips,
                "batch_size": batch_size,
                "lr": args.lr,
                "max_steps": args.max_steps,
                "check_every": args.check_every,
                "thresholds": AlignmentThresholds().__dict__,
                "results": results,
                "seconds_total": round(time.perf_counter() - total, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
