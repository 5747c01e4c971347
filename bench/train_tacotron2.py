"""Tacotron 2 training throughput: ours vs ``torchaudio.models.Tacotron2``, same sizes and batch.

Measures output mel frames per second of whole training steps (forward, loss, backward, AdamW
update, gradient clipping) on random batches whose text lengths are drawn from the real
LJSpeech transcripts (../shared/data/ljspeech-texts, uniform 20-180 if absent) and whose mel
lengths follow LJSpeech's speaking rate (~5.8 frames of hop 256 per character).

* CPU, always: small sizes (128/256-wide, r=1 for both models, and ours at its default r=2
  too), batch 4, clips capped at ``--cpu-max-frames`` so it finishes in a few minutes.
  ``--cpu-threads 1`` gives steadier figures on a shared machine.
* CUDA, when available: the paper's sizes (both libraries' defaults) at batch 128 and 256, clips
  capped at 1000 frames; fp32 (TF32 tensor cores, as NVIDIA's fp32 figures), bf16 and fp16
  (with loss scaling) autocast; ours eager and with ``trainer.cuda_graphs`` (graph rows first
  run every batch once untimed, which captures each padded shape; ``warmup_s`` says how long
  that took). ``--gpu-set quick`` is the subset ``make bench-gpu`` runs, ``full`` every row.
  Rows that run out of memory are null. ``targets`` compares with issue 11's goals.
* ``--smoke``: the CUDA part's code on the CPU with tiny sizes (graph rows skipped), seconds.

Prints progress to stderr and ONE JSON line (the results) last on stdout.
Usage: python bench/train_tacotron2.py [--steps 3] [--cpu-threads 0] [--gpu-set full] [--no-gpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from neurotts.config import compose_config
from neurotts.models.registry import model_config
from neurotts.models.tacotron2 import Tacotron2, tacotron2_loss
from neurotts.training.config import CudaGraphsConfig
from neurotts.training.graphs import GraphedDecoder
from neurotts.training.optim import set_tf32

TEXTS = Path(__file__).resolve().parents[2] / "shared/data/ljspeech-texts/metadata.csv"
N_MELS, N_SYMBOLS = 80, 148
FRAMES_PER_CHAR = 5.8


@dataclass(frozen=True)
class Sizes:
    embedding: int
    encoder: int  # conv channels and BiLSTM output (both libraries tie them)
    prenet: int
    attention_rnn: int
    decoder_rnn: int
    attention_dim: int
    postnet: int


SMALL = Sizes(128, 128, 64, 256, 256, 64, 128)
FULL = Sizes(512, 512, 256, 1024, 1024, 128, 512)
TINY = Sizes(32, 32, 16, 32, 32, 16, 32)  # --smoke only


@dataclass(frozen=True)
class Row:
    """One measured configuration of the CUDA part."""

    batch: int
    model: str  # ours | torchaudio
    r: int
    precision: str  # fp32 (TF32) | bf16 | fp16
    graphed: bool = False

    @property
    def name(self) -> str:
        return (f"b{self.batch}_{self.precision}_{self.model}_r{self.r}"
                f"{'_graphed' if self.graphed else ''}")


def _rows(batch: int, models: list[tuple[str, int, bool]], precisions: list[str]) -> list[Row]:
    return [Row(batch, m, r, p, g) for m, r, g in models for p in precisions]


_TA, _R1, _R1G, _R2, _R2G = ("torchaudio", 1, False), ("ours", 1, False), ("ours", 1, True), \
    ("ours", 2, False), ("ours", 2, True)
GPU_SETS = {
    # ~2-3 minutes on one H100: issue 11's table re-measured, graphed rows, batch 256.
    "quick": (_rows(128, [_TA, _R1], ["fp32", "bf16"]) + _rows(128, [_R1G, _R2G], ["fp32", "bf16", "fp16"])
              + _rows(128, [_R2], ["bf16"]) + _rows(256, [_R1G], ["fp32", "bf16"])
              + _rows(256, [_R2G], ["fp32"])),
    "full": [row for batch in (128, 256) for row in
             _rows(batch, [_TA, _R1, _R1G, _R2, _R2G], ["fp32", "bf16", "fp16"])],
}


@dataclass
class Batch:
    text: torch.Tensor  # (B, T_text) long, sorted by length, longest first (torchaudio needs it)
    text_lengths: torch.Tensor  # (B,)
    mels: torch.Tensor  # (B, T_mel, n_mels)
    mel_lengths: torch.Tensor  # (B,)

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.text, self.text_lengths, self.mels,
                                              self.mel_lengths)))


def text_lengths_pool() -> np.ndarray:
    if TEXTS.is_file():
        rows = TEXTS.read_text(encoding="utf-8").splitlines()
        return np.array([len(r.split("|")[-1]) for r in rows if r.count("|") >= 2])
    return np.arange(20, 181)


def make_batches(n: int, batch: int, max_frames: int, seed: int) -> list[Batch]:
    rng = np.random.default_rng(seed)
    pool = text_lengths_pool()
    out = []
    for _ in range(n):
        chars = np.sort(rng.choice(pool, size=batch))[::-1]
        frames = np.minimum((chars * FRAMES_PER_CHAR).astype(int), max_frames)
        chars = np.maximum(np.minimum(chars, frames // 3), 2)  # keep text shorter than speech
        text = torch.randint(1, N_SYMBOLS, (batch, int(chars.max())))
        for i, c in enumerate(chars):
            text[i, c:] = 0
        mels = torch.randn(batch, int(frames.max()), N_MELS)
        out.append(Batch(text, torch.as_tensor(chars.copy()), mels, torch.as_tensor(frames)))
    return out


def ours(sizes: Sizes, r: int, graphed: bool = False
         ) -> tuple[torch.nn.Module, Callable[[torch.nn.Module, Batch], torch.Tensor]]:
    o = [f"model.reduction_factor={r}", f"model.encoder.embedding_dim={sizes.embedding}",
         f"model.encoder.conv_channels={sizes.encoder}", f"model.encoder.lstm_dim={sizes.encoder}",
         f"model.decoder.prenet_dims=[{sizes.prenet},{sizes.prenet}]",
         f"model.decoder.attention_rnn_dim={sizes.attention_rnn}",
         f"model.decoder.decoder_rnn_dim={sizes.decoder_rnn}",
         f"model.attention.dim={sizes.attention_dim}", f"model.postnet.channels={sizes.postnet}",
         "data.features=-", "run.dir=-"]
    train = compose_config("train", o, inject={"audio": {"n_mels": N_MELS}})
    cfg = model_config(train.model)
    model = Tacotron2(cfg, N_SYMBOLS)
    # The shipped bucket steps (configs/trainer/default.yaml), switched on.
    graphs = CudaGraphsConfig(**{**train.trainer.cuda_graphs, "enabled": True})
    decode = GraphedDecoder(model.decoder, r, graphs) if graphed else None

    def loss(m: torch.nn.Module, b: Batch) -> torch.Tensor:
        out = m(b.text, b.text_lengths, b.mels, b.mel_lengths, decode=decode)
        return tacotron2_loss(out, b.mels, b.mel_lengths, b.text_lengths, cfg, 0)[0]

    return model, loss


def torchaudio_model(sizes: Sizes) -> tuple[torch.nn.Module, Callable[[torch.nn.Module, Batch], torch.Tensor]]:
    model = torchaudio.models.Tacotron2(
        mask_padding=False, n_mels=N_MELS, n_symbol=N_SYMBOLS, symbol_embedding_dim=sizes.embedding,
        encoder_embedding_dim=sizes.encoder, decoder_rnn_dim=sizes.decoder_rnn,
        attention_rnn_dim=sizes.attention_rnn, attention_hidden_dim=sizes.attention_dim,
        prenet_dim=sizes.prenet, postnet_embedding_dim=sizes.postnet)

    def loss(m: torch.nn.Module, b: Batch) -> torch.Tensor:
        # NVIDIA/torchaudio recipe: MSE before and after the postnet + BCE on the gate.
        mel_t = b.mels.transpose(1, 2)  # (B, n_mels, T)
        before, after, gate, _ = m(b.text, b.text_lengths, mel_t, b.mel_lengths)
        gate_target = F.one_hot(b.mel_lengths - 1, b.mels.shape[1]).float()
        with torch.autocast(device_type=b.mels.device.type, enabled=False):
            return (F.mse_loss(before.float(), mel_t) + F.mse_loss(after.float(), mel_t)
                    + F.binary_cross_entropy_with_logits(gate.float(), gate_target))

    return model, loss


def frames_per_second(build: tuple[torch.nn.Module, Callable], batches: list[Batch],
                      device: torch.device, precision: str, warm_all: bool = False
                      ) -> tuple[float, float]:
    """Mel frames / step seconds, and the untimed warm-up's seconds. Warm-up is
    ``batches[0]`` (timed: the rest), or with ``warm_all`` every batch (timed: all again)."""
    model, loss_fn = build
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    warm = batches if warm_all else batches[:1]
    timed = batches if warm_all else batches[1:]
    frames, seconds, warmup = 0, 0.0, 0.0
    for i, batch in enumerate([*warm, *timed]):
        b = batch.to(device)
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32"):
            loss = loss_fn(model, b)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        sync(device)
        if i < len(warm):
            warmup += time.perf_counter() - t0
        else:
            frames += int(b.mel_lengths.sum())
            seconds += time.perf_counter() - t0
    return frames / seconds, warmup


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_cpu(args: argparse.Namespace) -> dict[str, object]:
    if args.cpu_threads > 0:
        torch.set_num_threads(args.cpu_threads)
    batches = make_batches(args.steps + 1, args.cpu_batch, args.cpu_max_frames, seed=0)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    result: dict[str, object] = {"batch": args.cpu_batch, "sizes": SMALL.__dict__,
                                 "mean_frames": mean_frames(batches),
                                 "threads": torch.get_num_threads()}
    for name, build in [("ours_r1", lambda: ours(SMALL, 1)), ("torchaudio_r1", lambda: torchaudio_model(SMALL)),
                        ("ours_r2", lambda: ours(SMALL, 2))]:
        fps, _ = frames_per_second(build(), batches, cpu, "fp32")
        print(f"cpu {name}: {fps:.0f} mel frames/s", file=sys.stderr)
        result[f"{name}_frames_per_s"] = round(fps, 1)
    result["ours_vs_torchaudio_r1"] = round(result["ours_r1_frames_per_s"] / result["torchaudio_r1_frames_per_s"], 3)
    return result


def mean_frames(batches: list[Batch]) -> float:
    return round(float(np.mean([b.mel_lengths.float().mean() for b in batches])), 1)


def measure_row(row: Row, sizes: Sizes, batches: list[Batch], device: torch.device
                ) -> tuple[float | None, float | None]:
    """(frames/s, warm-up seconds) of one row; (None, None) when it runs out of memory."""
    torch.manual_seed(0)
    build = torchaudio_model(sizes) if row.model == "torchaudio" else ours(sizes, row.r, row.graphed)
    try:
        return frames_per_second(build, batches, device, row.precision, warm_all=row.graphed)
    except torch.OutOfMemoryError:
        return None, None
    finally:
        del build
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run_rows(rows: list[Row], sizes: Sizes, device: torch.device, steps: int, max_frames: int,
             batch_of: Callable[[int], int]) -> dict[str, object]:
    """Every row on ``device``; batches per batch size are drawn once and shared by its rows."""
    batches = {b: make_batches(steps + 1, batch_of(b), max_frames, seed=1)
               for b in sorted({row.batch for row in rows})}
    result: dict[str, object] = {"mean_frames": {f"b{b}": mean_frames(v) for b, v in batches.items()}}
    fps_of, warmups = {}, {}
    for row in rows:
        if row.graphed and device.type != "cuda":
            continue  # CUDA graphs need CUDA (--smoke on a CPU)
        fps, warmup = measure_row(row, sizes, batches[row.batch], device)
        fps_of[row.name] = None if fps is None else round(fps, 1)
        if row.graphed:
            warmups[row.name] = None if warmup is None else round(warmup, 1)
        shown = "out of memory" if fps is None else f"{fps:.0f} mel frames/s"
        print(f"{device.type} {row.name}: {shown}", file=sys.stderr, flush=True)
    result["frames_per_s"] = fps_of
    result["warmup_s"] = warmups
    result["targets"] = targets(fps_of)
    return result


def _best(fps_of: dict[str, float | None], prefix: str, model: str) -> float | None:
    """Best frames/s over precisions (and eager/graphed) of ``b{batch}_*_{model}...`` rows."""
    values = [v for k, v in fps_of.items()
              if v is not None and k.startswith(prefix) and f"_{model}" in k]
    return max(values) if values else None


def targets(fps_of: dict[str, float | None]) -> dict[str, object]:
    """Issue 11's goals: b128 r=1 >= 2x torchaudio at its best precision; b256 r=1 >= 100k;
    b256 r=2 above r=1."""
    ours_r1, ta_r1 = _best(fps_of, "b128_", "ours_r1"), _best(fps_of, "b128_", "torchaudio_r1")
    b256_r1, b256_r2 = _best(fps_of, "b256_", "ours_r1"), _best(fps_of, "b256_", "ours_r2")
    ratio = None if ours_r1 is None or ta_r1 is None else round(ours_r1 / ta_r1, 2)
    return {"b128_ours_r1_over_torchaudio_best": ratio,
            "b128_ratio_met": None if ratio is None else ratio >= 2.0,
            "b256_ours_r1_best": b256_r1,
            "b256_r1_100k_met": None if b256_r1 is None else b256_r1 >= 100_000,
            "b256_ours_r2_best": b256_r2,
            "b256_r2_above_r1": None if None in (b256_r1, b256_r2) else b256_r2 > b256_r1}


def run_gpu(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device("cuda")
    set_tf32(True, device)
    result: dict[str, object] = {"device": torch.cuda.get_device_name(),
                                 "capability": list(torch.cuda.get_device_capability()),
                                 "sizes": FULL.__dict__, "tf32": True, "set": args.gpu_set}
    result.update(run_rows(GPU_SETS[args.gpu_set], FULL, device, args.steps, 1000, lambda b: b))
    return result


def run_smoke(args: argparse.Namespace) -> dict[str, object]:
    """The CUDA part's rows on the CPU at tiny sizes and batches (graph rows skipped)."""
    small_batch = {128: 2, 256: 3}
    result: dict[str, object] = {"sizes": TINY.__dict__}
    result.update(run_rows(GPU_SETS[args.gpu_set], TINY, torch.device("cpu"), 1, 24,
                           lambda b: small_batch[b]))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (after 1 warm-up)")
    parser.add_argument("--cpu-batch", type=int, default=4)
    parser.add_argument("--cpu-max-frames", type=int, default=300)
    parser.add_argument("--cpu-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--gpu-set", choices=sorted(GPU_SETS), default="full")
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA part even with a GPU")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU part")
    parser.add_argument("--smoke", action="store_true", help="only the CUDA part's code, on the CPU, tiny")
    args = parser.parse_args()
    results: dict[str, object] = {"bench": "train_tacotron2", "torch": torch.__version__}
    if args.smoke:
        results["smoke"] = run_smoke(args)
    else:
        if not args.no_cpu:
            results["cpu"] = run_cpu(args)
        if torch.cuda.is_available() and not args.no_gpu:
            results["cuda"] = run_gpu(args)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
