"""Would a one-step ONNX graph of the WaveNet vocoder beat neurotts's C kernel on the CPU?

The default WaveNet (configs/model/wavenet.yaml, random weights: speed does not depend on them)
as one generation step in an ONNX graph, the way a runtime would have to run it: the previous
sample's class, this sample's upsampled conditioning ``(B, C_cond)`` and one FIFO of past
residual inputs per layer ``(B, R, (K-1) d)`` in; logits (and the FIFOs, shifted) out. It is
timed at batch 1 in onnxruntime against :func:`neurotts.models.wavenet_generate.generate` with
the C kernel (``mode="kernel"``) on the same model. The step computes the same arithmetic as
the kernel's step (dilated taps, gate, residual and skip products, head); drawing the sample
from the logits is left out of the graph's time, which only flatters it.

Progress goes to stderr; stdout is one JSON line.
Usage: ``python bench/wavenet_step_probe.py [--threads 1] [--samples 2000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from neurotts.models.wavenet import cpu_kernel
from neurotts.models.wavenet.generate import generate
from neurotts.models.wavenet.model import WaveNet, WaveNetConfig
from neurotts.models.wavenet.options import GenerateOptions


class OneStep(nn.Module):
    """previous class ``(B,)``, cond ``(B, C_cond)``, FIFOs -> logits ``(B, C_out)``, FIFOs."""

    def __init__(self, model: WaveNet):
        super().__init__()
        self.model = model

    def forward(self, previous: torch.Tensor, cond: torch.Tensor, *fifos: torch.Tensor):  # noqa: ANN201
        x = self.model.input(previous)  # (B, R)
        skips = 0
        shifted = []
        for layer, fifo in zip(self.model.layers, fifos, strict=True):
            d = layer.dilation
            taps = [fifo[:, :, j * d] for j in range(layer.kernel_size - 1)] + [x]  # K x (B, R)
            w = layer.dilated.weight  # (G, R, K)
            gate = sum(tap @ w[:, :, j].t() for j, tap in enumerate(taps)) + layer.dilated.bias
            gate = gate + cond @ layer.cond.weight[:, :, 0].t()  # (B, G)
            a, b = gate.chunk(2, dim=1)
            z = torch.tanh(a) * torch.sigmoid(b)
            shifted.append(torch.cat([fifo[:, :, 1:], x.unsqueeze(-1)], dim=2))
            skips = skips + z @ layer.skip.weight[:, :, 0].t() + layer.skip.bias
            x = (x + z @ layer.res.weight[:, :, 0].t() + layer.res.bias) * 0.7071067811865476
        h = torch.relu(skips * (1.0 / len(self.model.layers)) ** 0.5)
        h = torch.relu(h @ self.model.head[1].weight[:, :, 0].t() + self.model.head[1].bias)
        return (h @ self.model.head[3].weight[:, :, 0].t() + self.model.head[3].bias, *shifted)


def onnx_rate(model: WaveNet, samples: int, threads: int, folder: Path) -> float:
    cfg = model.cfg
    fifos = [torch.zeros(1, cfg.residual_channels, (cfg.kernel_size - 1) * layer.dilation)
             for layer in model.layers]
    names = [f"fifo.{i}" for i in range(len(fifos))]
    path = folder / "wavenet_step.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(OneStep(model).eval(), (torch.zeros(1, dtype=torch.long),
                          torch.zeros(1, cfg.cond_channels), *fifos), str(path),
                          input_names=["previous", "cond", *names],
                          output_names=["logits", *(f"next.{n}" for n in names)],
                          opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"previous": np.zeros(1, np.int64), "cond": np.zeros((1, cfg.cond_channels), np.float32),
             **{n: f.numpy() for n, f in zip(names, fifos, strict=True)}}
    cond = np.random.default_rng(0).standard_normal((samples, 1, cfg.cond_channels)).astype(np.float32)
    t0 = time.perf_counter()
    for t in range(samples):
        feeds["cond"] = cond[t]
        logits, *new = session.run(None, feeds)
        feeds["previous"] = logits.argmax(axis=1)
        feeds.update(zip(names, new, strict=True))
    return samples / (time.perf_counter() - t0)


def kernel_rate(model: WaveNet, samples: int, threads: int) -> float | None:
    if cpu_kernel.load() is None:
        return None
    torch.set_num_threads(threads)
    mels = torch.randn(1, samples // model.cfg.hop_length + 1, model.cfg.n_mels)
    generate(model, mels, None, GenerateOptions(mode="kernel"), max_samples=256)  # build and warm up
    t0 = time.perf_counter()
    generate(model, mels, None, GenerateOptions(mode="kernel"), max_samples=samples)
    return samples / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig(n_mels=80, hop_length=256)).eval()  # the shipped sizes
    with tempfile.TemporaryDirectory() as tmp:
        print("onnxruntime one-step graph ...", file=sys.stderr)
        onnx = onnx_rate(model, args.samples, args.threads, Path(tmp))
    print("C kernel ...", file=sys.stderr)
    kernel = kernel_rate(model, args.samples, args.threads)
    print(json.dumps({"bench": "wavenet_step_probe", "threads": args.threads,
                      "samples": args.samples, "onnxruntime_step_samples_per_s": round(onnx, 1),
                      "c_kernel_samples_per_s": None if kernel is None else round(kernel, 1),
                      "kernel_over_onnx": None if kernel is None else round(kernel / onnx, 2)}))


if __name__ == "__main__":
    main()
