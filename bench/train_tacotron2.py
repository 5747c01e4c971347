"""Tacotron 2 training throughput: ours vs ``torchaudio.models.Tacotron2``, same sizes and batch.

Measures output mel frames per second of whole training steps (forward, loss, backward, AdamW
update, gradient clipping) on random batches whose text lengths are drawn from the real
LJSpeech transcripts (../shared/data/ljspeech-texts, uniform 20-180 if absent) and whose mel
lengths follow LJSpeech's speaking rate (~5.8 frames of hop 256 per character).

* CPU, always: small sizes (128/256-wide, r=1 for both models, and ours at its default r=2
  too), batch 4, clips capped at ``--cpu-max-frames`` so it finishes in a few minutes.
* CUDA, when available: the paper's sizes (both libraries' defaults), batch 128, precision
  fp32 (TF32 matmuls, as NVIDIA's fp32 figures) and AMP in fp16 (with loss scaling) and bf16.

Prints progress to stderr and ONE JSON line (the results) last on stdout.
Usage: python bench/train_tacotron2.py [--steps 3] [--cpu-batch 4] [--gpu-batch 128]
"""

from __future__ import annotations

import argparse
import json
import math
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


def ours(sizes: Sizes, r: int) -> tuple[torch.nn.Module, Callable[[torch.nn.Module, Batch], torch.Tensor]]:
    o = [f"model.reduction_factor={r}", f"model.encoder.embedding_dim={sizes.embedding}",
         f"model.encoder.conv_channels={sizes.encoder}", f"model.encoder.lstm_dim={sizes.encoder}",
         f"model.decoder.prenet_dims=[{sizes.prenet},{sizes.prenet}]",
         f"model.decoder.attention_rnn_dim={sizes.attention_rnn}",
         f"model.decoder.decoder_rnn_dim={sizes.decoder_rnn}",
         f"model.attention.dim={sizes.attention_dim}", f"model.postnet.channels={sizes.postnet}",
         "data.features=-", "run.dir=-"]
    cfg = model_config(compose_config("train", o, inject={"audio": {"n_mels": N_MELS}}).model)
    model = Tacotron2(cfg, N_SYMBOLS)

    def loss(m: torch.nn.Module, b: Batch) -> torch.Tensor:
        out = m(b.text, b.text_lengths, b.mels, b.mel_lengths)
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
                      device: torch.device, precision: str) -> float:
    """Mean over ``batches[1:]`` (the first is warm-up) of mel frames / step seconds."""
    model, loss_fn = build
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    frames, seconds = 0, 0.0
    for i, batch in enumerate(batches):
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
        if i > 0:
            frames += int(b.mel_lengths.sum())
            seconds += time.perf_counter() - t0
    return frames / seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_cpu(args: argparse.Namespace) -> dict[str, object]:
    batches = make_batches(args.steps + 1, args.cpu_batch, args.cpu_max_frames, seed=0)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    result: dict[str, object] = {"batch": args.cpu_batch, "sizes": SMALL.__dict__,
                                 "mean_frames": float(np.mean([b.mel_lengths.float().mean() for b in batches])),
                                 "threads": torch.get_num_threads()}
    for name, build in [("ours_r1", lambda: ours(SMALL, 1)), ("torchaudio_r1", lambda: torchaudio_model(SMALL)),
                        ("ours_r2", lambda: ours(SMALL, 2))]:
        fps = frames_per_second(build(), batches, cpu, "fp32")
        print(f"cpu {name}: {fps:.0f} mel frames/s", file=sys.stderr)
        result[f"{name}_frames_per_s"] = round(fps, 1)
    result["ours_vs_torchaudio_r1"] = round(result["ours_r1_frames_per_s"] / result["torchaudio_r1_frames_per_s"], 3)
    return result


def run_gpu(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    batches = make_batches(args.steps + 1, args.gpu_batch, 1000, seed=1)
    result: dict[str, object] = {"device": torch.cuda.get_device_name(), "batch": args.gpu_batch,
                                 "sizes": FULL.__dict__,
                                 "mean_frames": float(np.mean([b.mel_lengths.float().mean() for b in batches]))}
    for precision in ("fp32", "fp16", "bf16"):
        for name, build in [("ours_r1", lambda: ours(FULL, 1)), ("torchaudio_r1", lambda: torchaudio_model(FULL)),
                            ("ours_r2", lambda: ours(FULL, 2))]:
            torch.manual_seed(0)
            try:
                fps = frames_per_second(build(), batches, device, precision)
            except torch.OutOfMemoryError:
                fps = math.nan
            torch.cuda.empty_cache()
            print(f"cuda {precision} {name}: {fps:.0f} mel frames/s", file=sys.stderr)
            result[f"{precision}_{name}_frames_per_s"] = None if math.isnan(fps) else round(fps, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (after 1 warm-up)")
    parser.add_argument("--cpu-batch", type=int, default=4)
    parser.add_argument("--cpu-max-frames", type=int, default=300)
    parser.add_argument("--gpu-batch", type=int, default=128)
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA part even with a GPU")
    args = parser.parse_args()
    results: dict[str, object] = {"bench": "train_tacotron2", "torch": torch.__version__,
                                  "cpu": run_cpu(args)}
    if torch.cuda.is_available() and not args.no_gpu:
        results["cuda"] = run_gpu(args)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
