"""WaveNet generation speed: naive baseline vs cached generator (samples per second).

Default WaveNet config (configs/model/wavenet.yaml resolved with configs/audio/ljspeech.yaml),
random weights. Prints progress lines, then ONE JSON line last.

* naive: steady-state rate of the baseline step (the whole network over a full
  receptive-field window per sample, as ``generate_naive`` does once past the first
  ``receptive_field`` samples), measured with 1 and 2 intra-op threads; the faster counts,
  so the speed-up is not flattered by a thread setting that suits one path only.
* cached: ``generate`` end to end (conditioning upsampling and projection included) for a few
  thousand samples at batch 1 and 16, in its default CPU mode (the C kernel when it can be
  built; ``cpu_cached_mode`` says which ran), and at batch 1 also on torch ops alone
  (``cpu_cached_torch_b1``, the fallback without a C compiler).
* GPU (when CUDA is present): cached generation without and with the CUDA graph, batch 1/16/64.
* utterance: one ``--utterance-seconds`` (5 s) utterance generated folded with the shipped
  synth config's ``vocoder`` settings (``fold=auto``), end to end, as ``neurotts synth`` runs
  it: ``cpu_utterance_samples_per_s`` and ``cpu_utterance_rtf`` (wall / audio seconds), with
  ``cpu_utterance_over_b1`` against ``cpu_cached_b1`` of the same run, and the segments
  used; on CUDA ``gpu_utterance_samples_per_s`` / ``gpu_utterance_rtf``.

* ceiling: the arithmetic the default model needs per sample (``flops_per_sample``); the
  float32 rate of the kernel's own matrix product with its operands in cache, on all kernel
  threads (``cpu_kernel_product_gflops``: no generation with this kernel can sustain more)
  and of a large torch matmul (``cpu_sgemm_gflops``); the rate the folded utterance
  sustains; and what 8x the batch-1 rate would need (``cpu_8x_b1_needs_gflops``). A target
  above the in-cache product rate is out of reach at this precision, whatever the folding.
* bf16 (CPUs with AVX512-BF16): the same utterance with ``precision=bf16``
  (``cpu_utterance_bf16_*``, and its ratio to the float32 ``cpu_cached_b1``), bf16 batch 1
  (``cpu_cached_b1_bf16``) and the bf16 product rate (``cpu_kernel_product_bf16_gflops``).

Each figure is the best of ``--repeats`` runs: other jobs share this CPU, and the best run is
the one least disturbed by them. Reference (design notes): r9y9's cached generation of a 3.7M
parameter, 24-layer model runs ~32 samples/s on 2 threads here, its naive pass ~5 samples/s.

Usage: python bench/wavenet_generate.py [--samples-b1 3000] [--samples-b16 1000] [--repeats 3]
                                        [--output mulaw|mol] [--utterance-seconds 5]
                                        [--only-utterance]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import torch
from omegaconf import OmegaConf

from neurotts.config import CONFIG_DIR
from neurotts.models.wavenet import cpu_kernel
from neurotts.models.wavenet.fold import fold_plans, generate_folded
from neurotts.models.wavenet.generate import generate, naive_step
from neurotts.models.wavenet.model import WaveNet, WaveNetConfig
from neurotts.models.wavenet.options import GenerateOptions


def default_config(output: str | None = None) -> WaveNetConfig:
    """The shipped WaveNet (the config's defaults) for configs/audio/ljspeech.yaml."""
    audio = OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml")
    cfg = WaveNetConfig(n_mels=audio.n_mels, hop_length=audio.hop_length)
    return dataclasses.replace(cfg, output=output) if output else cfg


def flops_per_sample(model: WaveNet) -> int:
    """Multiply-adds x 2 of one generated sample (batch 1, amortised taps included): every
    layer's dilated conv, conditioning projection and skip 1x1, all but the last layer's
    residual 1x1, and the two head 1x1 convs."""
    cfg = model.cfg
    n_layers, k, r, g, s = (cfg.layers, cfg.kernel_size, cfg.residual_channels,
                            cfg.gate_channels, cfg.skip_channels)
    h, n_out = g // 2, model.head[-1].out_channels
    macs = (n_layers * (k * r * g + cfg.cond_channels * g + h * s) + (n_layers - 1) * h * r
            + s * s + s * n_out)
    return 2 * macs


def sgemm_gflops(repeats: int, n: int = 2048) -> float:
    """GFLOP/s of one n x n float32 matmul on torch's threads (MKL: near the FMA peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def kernel_product_gflops(repeats: int, threads: int, reps: int = 400, bf16: bool = False
                          ) -> float | None:
    """GFLOP/s of the C kernel's product (8 rows x 3072 in x 128 out: the skip product at
    batch 8, weights in L2) run ``reps`` times in each of ``threads`` threads at once; each
    call is long enough (6 MFLOP) that ctypes and the GIL cost little."""
    import ctypes
    from concurrent.futures import ThreadPoolExecutor

    lib = cpu_kernel.load()
    if lib is None:
        return None
    rows, n_in, n_out = 8, 3072, 128
    w = torch.randn(n_in, n_out) * 1e-3
    packed = torch.empty_like(w)
    pack = lib.wn_pack_bf16 if bf16 else lib.wn_pack
    pack(n_in, n_out, ctypes.c_void_p(w.data_ptr()), ctypes.c_void_p(packed.data_ptr()))
    xs = [torch.randn(rows, n_in) * 1e-3 for _ in range(threads)]
    ys = [torch.zeros(rows, n_out) for _ in range(threads)]

    def work(i: int) -> None:
        x, y = ctypes.c_void_p(xs[i].data_ptr()), ctypes.c_void_p(ys[i].data_ptr())
        wp = ctypes.c_void_p(packed.data_ptr())
        for _ in range(reps):
            lib.wn_gemm(rows, x, n_in, wp, n_out, y, int(bf16))

    with ThreadPoolExecutor(threads) as pool:
        secs = best_seconds(lambda: list(pool.map(work, range(threads))), repeats)
    return threads * reps * 2 * rows * n_in * n_out / secs / 1e9


def best_seconds(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive_rate(model: WaveNet, batch: int, steps: int, repeats: int) -> tuple[float, int]:
    """Steady-state naive samples/s and the thread count that gave it."""
    rf = model.receptive_field
    if model.cfg.output == "mulaw":
        inputs = torch.randint(0, model.cfg.mu_law_channels, (batch, rf))
    else:
        inputs = torch.rand(batch, rf) * 2 - 1
    cond = torch.randn(batch, model.cfg.cond_channels, rf)
    before, results = torch.get_num_threads(), []
    with torch.inference_mode():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            secs = best_seconds(lambda: [naive_step(model, inputs, cond) for _ in range(steps)],
                                repeats)
            results.append((batch * steps / secs, threads))
    torch.set_num_threads(before)
    return max(results)


def cached_rate(model: WaveNet, batch: int, samples: int, repeats: int, device: str = "cpu",
                mode: str = "auto", precision: str = "fp32") -> float:
    hop = model.cfg.hop_length
    mels = torch.randn(batch, samples // hop + 1, model.cfg.n_mels, device=device)

    def run() -> None:
        generate(model, mels, None, GenerateOptions(mode=mode, precision=precision),
                 max_samples=samples)
        if device == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously: time their completion

    return batch * samples / best_seconds(run, repeats)


def gpu_rates(model: WaveNet, samples: int, repeats: int) -> dict[str, float]:
    gpu = model.to("cuda")
    out: dict[str, float] = {"gpu_name": torch.cuda.get_device_name()}
    for batch in (1, 16, 64):
        for mode, key in (("views", "eager"), ("graph", "graph")):
            rate = cached_rate(gpu, batch, samples, repeats, device="cuda", mode=mode)
            out[f"gpu_{key}_b{batch}"] = round(rate, 1)
            print(f"gpu {key} batch {batch}: {rate:.0f} samples/s", flush=True)
    model.to("cpu")
    return out


def utterance_rate(model: WaveNet, seconds: float, sample_rate: int, repeats: int,
                   device: str, precision: str = "fp32") -> dict[str, float]:
    """One utterance of random mels, folded with the shipped synth settings: samples/s, RTF
    and the number of segments it was cut into (keys ``{cpu,gpu}_utterance[_bf16]_*``)."""
    shipped = OmegaConf.load(CONFIG_DIR / "synth.yaml").vocoder
    options = GenerateOptions(temperature=shipped.temperature, fold=shipped.fold,
                              overlap_ms=shipped.overlap_ms, fade=shipped.fade,
                              precision=precision)
    hop = model.cfg.hop_length
    frames = round(seconds * sample_rate / hop)
    mels = torch.randn(1, frames, model.cfg.n_mels, device=device)

    def run() -> None:
        generate_folded(model, mels, None, options, sample_rate)
        if device == "cuda":
            torch.cuda.synchronize()

    secs = best_seconds(run, repeats)
    segments = fold_plans(model, [frames], options, sample_rate, mels.device)[0]
    key = ("cpu" if device == "cpu" else "gpu") + ("_utterance" if precision == "fp32"
                                                   else f"_utterance_{precision}")
    print(f"{key} ({frames * hop / sample_rate:.2f} s, {len(segments)} segments): "
          f"{frames * hop / secs:.0f} samples/s", flush=True)
    return {f"{key}_samples_per_s": round(frames * hop / secs, 1),
            f"{key}_rtf": round(secs / (frames * hop / sample_rate), 3),
            f"{key}_segments": len(segments),
            f"{key}_seconds": round(frames * hop / sample_rate, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-b1", type=int, default=3000)
    parser.add_argument("--samples-b16", type=int, default=1000)
    parser.add_argument("--naive-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", choices=["mulaw", "mol"], default=None,
                        help="output distribution (default: the shipped config's, mu-law)")
    parser.add_argument("--utterance-seconds", type=float, default=5.0)
    parser.add_argument("--only-utterance", action="store_true",
                        help="skip naive and batch-16 figures; batch 1 (the baseline) and the "
                             "utterance are measured in turns")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = default_config(args.output)
    model = WaveNet(cfg).eval()
    sample_rate = OmegaConf.load(CONFIG_DIR / "audio" / "ljspeech.yaml").sample_rate
    result: dict[str, object] = {
        "params": sum(p.numel() for p in model.parameters()),
        "receptive_field": model.receptive_field,
        "layers": cfg.layers,
        "output": cfg.output,
        "torch_threads": torch.get_num_threads(),
    }
    result["load_avg_1m_start"] = round(os.getloadavg()[0], 2)
    if not args.only_utterance:
        result.update(cpu_baselines(model, args, sample_rate))
        result.update(utterance_rate(model, args.utterance_seconds, sample_rate, args.repeats,
                                     "cpu"))
    else:
        # Batch 1 and the utterance taken in turns, best of each: on a shared machine the
        # load moves between minutes, and both figures should see the same spells of it.
        rounds = [(cached_rate(model, 1, args.samples_b1, 1),
                   utterance_rate(model, args.utterance_seconds, sample_rate, 1, "cpu"))
                  for _ in range(args.repeats)]
        result["cpu_cached_b1"] = round(max(b1 for b1, _ in rounds), 1)
        result.update(max((u for _, u in rounds), key=lambda u: u["cpu_utterance_samples_per_s"]))
    result["cpu_utterance_over_b1"] = round(
        result["cpu_utterance_samples_per_s"] / result["cpu_cached_b1"], 2)
    flops = flops_per_sample(model)
    result["flops_per_sample"] = flops
    product = kernel_product_gflops(args.repeats, torch.get_num_threads())
    result["cpu_kernel_product_gflops"] = round(product, 1) if product else None
    result["cpu_sgemm_gflops"] = round(sgemm_gflops(args.repeats), 1)
    result["cpu_utterance_gflops"] = round(result["cpu_utterance_samples_per_s"] * flops / 1e9, 1)
    result["cpu_8x_b1_needs_gflops"] = round(8 * result["cpu_cached_b1"] * flops / 1e9, 1)
    if cpu_kernel.has_bf16():
        result.update(utterance_rate(model, args.utterance_seconds, sample_rate, args.repeats,
                                     "cpu", precision="bf16"))
        result["cpu_cached_b1_bf16"] = round(
            cached_rate(model, 1, args.samples_b1, args.repeats, precision="bf16"), 1)
        result["cpu_utterance_bf16_over_b1"] = round(
            result["cpu_utterance_bf16_samples_per_s"] / result["cpu_cached_b1"], 2)
        bf16_product = kernel_product_gflops(args.repeats, torch.get_num_threads(), bf16=True)
        result["cpu_kernel_product_bf16_gflops"] = round(bf16_product, 1)
    if torch.cuda.is_available():
        if not args.only_utterance:
            result.update(gpu_rates(model, args.samples_b1, args.repeats))
        result.update(utterance_rate(model.to("cuda"), args.utterance_seconds, sample_rate,
                                     args.repeats, "cuda"))
        model.to("cpu")
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


def cpu_baselines(model: WaveNet, args: argparse.Namespace, sample_rate: int
                  ) -> dict[str, object]:
    """Naive vs cached (kernel and torch ops) rates at batch 1 and 16 on the CPU."""
    result: dict[str, object] = {}
    for batch in (1, 16):
        rate, threads = naive_rate(model, batch, args.naive_steps, args.repeats)
        result[f"cpu_naive_b{batch}"], result[f"cpu_naive_b{batch}_threads"] = round(rate, 2), threads
        print(f"cpu naive batch {batch}: {rate:.1f} samples/s ({threads} threads)", flush=True)
    result["cpu_cached_mode"] = "kernel" if cpu_kernel.load() is not None else "views"
    result["cpu_kernel_threads"] = torch.get_num_threads()  # used from batch 2 up
    for batch, samples in ((1, args.samples_b1), (16, args.samples_b16)):
        rate = cached_rate(model, batch, samples, args.repeats)
        result[f"cpu_cached_b{batch}"] = round(rate, 1)
        print(f"cpu cached batch {batch} ({result['cpu_cached_mode']}): {rate:.0f} samples/s",
              flush=True)
    rate = cached_rate(model, 1, args.samples_b1, args.repeats, mode="views")
    result["cpu_cached_torch_b1"] = round(rate, 1)
    print(f"cpu cached batch 1 (torch ops): {rate:.0f} samples/s", flush=True)
    result["cpu_cached_over_naive"] = round(result["cpu_cached_b1"] / result["cpu_naive_b1"], 1)
    result["cpu_cached_torch_over_naive"] = round(rate / result["cpu_naive_b1"], 1)
    result["cpu_cached_over_naive_b16"] = round(
        result["cpu_cached_b16"] / result["cpu_naive_b16"], 1)
    result["cpu_cached_b1_realtime_factor"] = round(sample_rate / result["cpu_cached_b1"], 1)
    return result


if __name__ == "__main__":
    main()
