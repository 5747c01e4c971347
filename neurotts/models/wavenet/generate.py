"""Sample-by-sample WaveNet generation: the public API and the naive baseline.

:func:`generate` is cached incremental generation for a batch of utterances, O(layers) work
per sample instead of recomputing the receptive field. It picks one of two back ends:

* the C kernel on the CPU (:mod:`neurotts.models.wavenet.kernel`, built on first use by
  :mod:`neurotts.models.wavenet.cpu_kernel`), one call per block of samples;
* torch ops (:mod:`neurotts.models.wavenet.steps`): the CPU fallback when no C compiler is
  available (mode ``views``), and on CUDA a step captured once in a CUDA graph and replayed
  per sample (mode ``graph``).

Both precompute the conditioning for a block of samples in one matmul and draw the sampling
noise per block, from one generator, so every back end samples the same audio for a seed.

Naive generation (:func:`generate_naive`) runs the teacher-forced network over the last
``receptive_field`` samples for every new sample: the benchmark's baseline.

Temperature: sampling draws ``argmax(logits + T * gumbel)`` (equivalent to sampling from
``softmax(logits / T)``) and, for MoL, ``mean + T * scale * logistic``; ``temperature=0`` is the
argmax option (most likely class; for MoL the mean of the most likely component).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from neurotts.audio import mu_law_decode
from neurotts.models.layers import sequence_mask
from neurotts.models.wavenet import cpu_kernel
from neurotts.models.wavenet.kernel import KernelGroup
from neurotts.models.wavenet.model import WaveNet, dilations, draw_noise, pick_sample, silence_input
from neurotts.models.wavenet.options import MODES, PRECISIONS, GenerateOptions
from neurotts.models.wavenet.steps import CachedStep, GraphedStep, run_block

# Upper bound on the floats one block of per-step inputs holds: the conditioning as the step
# reads it and the sampling noise (128 MiB in fp32).
_BLOCK_FLOATS = 32 * 2**20


@dataclass
class Generated:
    """Result of generation."""

    audio: torch.Tensor  # (B, T) float in [-1, 1], zero past each item's length
    samples: torch.Tensor  # (B, T) as generated: mu-law classes (long) or floats
    lengths: torch.Tensor  # (B,) samples per item
    outputs: torch.Tensor | None  # (B, C_out, T) per-step logits / MoL params when recorded


@contextmanager
def _intra_op_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it alone)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _eval_mode(model: WaveNet) -> Iterator[None]:
    """Generation never uses dropout; the caller's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _lengths(
    model: WaveNet, mels: torch.Tensor, mel_lengths: torch.Tensor | None, max_samples: int | None
) -> tuple[torch.Tensor, int]:
    """Per-item sample counts ``(B,)`` (on the mels' device) and the number of steps to run."""
    hop = model.cfg.hop_length
    if mel_lengths is None:
        mel_lengths = torch.full((mels.shape[0],), mels.shape[1], dtype=torch.long)
    lengths = mel_lengths.to(device=mels.device, dtype=torch.long) * hop
    steps = int(lengths.max())
    if max_samples is not None:
        steps = min(steps, max_samples)
        lengths = lengths.clamp(max=steps)
    return lengths, steps


def _finish(model: WaveNet, samples: torch.Tensor, lengths: torch.Tensor,
            outputs: torch.Tensor | None) -> Generated:
    """``samples`` (T, B) classes or floats -> :class:`Generated` with padding zeroed."""
    samples = samples.t().contiguous()  # (B, T)
    audio = samples
    if model.cfg.output == "mulaw":
        audio = mu_law_decode(audio, model.cfg.mu_law_channels)
    audio = audio.float().contiguous()
    audio = audio * sequence_mask(lengths, audio.shape[1])
    if outputs is not None:
        outputs = outputs.permute(1, 2, 0).contiguous()  # (T, B, C) -> (B, C, T)
    return Generated(audio=audio, samples=samples, lengths=lengths, outputs=outputs)


def naive_step(model: WaveNet, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Output for the last of ``inputs`` (B, W) given ``cond`` (B, C_cond, W): the whole
    network over the window, of which only the last column is kept -> ``(B, C_out)``."""
    return model.forward_upsampled(inputs, cond)[:, :, -1]


def generate_naive(
    model: WaveNet,
    mels: torch.Tensor,
    mel_lengths: torch.Tensor | None = None,
    options: GenerateOptions | None = None,
    *,
    max_samples: int | None = None,
    record: bool = False,
    generator: torch.Generator | None = None,
    step_threads: int | None = None,
    speakers: torch.Tensor | None = None,
) -> Generated:
    """Baseline: the full network over the last ``receptive_field`` inputs for each sample.

    ``mels`` (B, T_frames, n_mels); ``mel_lengths`` (B,) frames. Exact (the window covers the
    whole receptive field), and O(receptive_field) work per sample. Arguments as for
    :func:`generate` (of ``options`` only the temperature counts: this is one back end of its
    own); ``step_threads`` defaults to the caller's setting, since a full window is enough
    work to share between threads.
    """
    temperature = (options or GenerateOptions()).temperature
    if mels.device.type != "cpu":
        step_threads = None
    with _eval_mode(model), _intra_op_threads(step_threads):
        lengths, steps = _lengths(model, mels, mel_lengths, max_samples)
        cond = model.upsample(mels, mel_lengths, speakers)[..., :steps]  # (B, C_cond, steps)
        batch, rf = mels.shape[0], model.receptive_field
        gumbel, logistic = draw_noise(model, steps, batch, temperature, generator, mels.device)
        first = silence_input(model.cfg).to(mels.device)
        inputs = first.expand(batch, steps + 1).clone()  # (B, steps + 1): previous samples
        if model.cfg.output == "mol":
            inputs = inputs.to(cond.dtype)
        recorded = []
        for t in range(steps):
            lo = max(0, t + 1 - rf)
            out = naive_step(model, inputs[:, lo:t + 1], cond[:, :, lo:t + 1])
            inputs[:, t + 1] = pick_sample(model, out, gumbel[t], logistic[t])
            if record:
                recorded.append(out)
        outputs = torch.stack(recorded) if record else None
        return _finish(model, inputs[:, 1:].t(), lengths, outputs)


def _block_size(batch: int, width: int, steps: int, multiple: int) -> int:
    """Steps per block of per-step inputs (``width`` floats per step and utterance), bounded
    in memory, and a multiple of the largest dilation when there are enough steps (so no
    amortised window straddles blocks). The audio does not depend on it: the noise is one
    stream however it is cut."""
    block = max(1, min(steps, 2048, max(64, _BLOCK_FLOATS // (batch * width))))
    return block if block < multiple else block // multiple * multiple


def _backend(model: WaveNet, mels: torch.Tensor, mode: str, precision: str
             ) -> tuple[str, ctypes.CDLL | None]:
    """The mode :func:`generate` runs (``auto`` resolved) and the C kernel it needs, or a
    ValueError saying why the requested mode or precision cannot run here."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    cpu_fp32 = mels.device.type == "cpu" and model.head[-1].weight.dtype == torch.float32
    lib = cpu_kernel.load() if mode in ("auto", "kernel") and cpu_fp32 else None
    if mode == "auto":
        if mels.device.type == "cuda":
            mode = "graph"
        else:
            mode = "kernel" if lib is not None else "views"
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "graph" and mels.device.type != "cuda":
        raise ValueError("mode='graph' needs the model and mels on a CUDA device")
    if mode == "kernel" and not cpu_fp32:
        raise ValueError("mode='kernel' needs a float32 model and mels on the CPU")
    if mode == "kernel" and lib is None:
        raise ValueError("mode='kernel': the CPU kernel could not be built or is disabled "
                         "(see the warning above, or NEUROTTS_CPU_KERNEL)")
    if precision == "bf16" and (mode != "kernel" or not cpu_kernel.has_bf16()):
        raise ValueError(f"precision='bf16' runs in the C kernel on CPUs with AVX512-BF16; "
                         f"this generation runs mode={mode!r}"
                         + (" on a CPU without it" if mode == "kernel" else ""))
    return mode, lib


def generate(
    model: WaveNet,
    mels: torch.Tensor,
    mel_lengths: torch.Tensor | None = None,
    options: GenerateOptions | None = None,
    *,
    max_samples: int | None = None,
    record: bool = False,
    generator: torch.Generator | None = None,
    step_threads: int | None = 1,
    speakers: torch.Tensor | None = None,
) -> Generated:
    r"""Cached incremental generation for a batch of utterances.

    ``mels`` (B, T_frames, n_mels) on the device to run on; ``mel_lengths`` (B,) frames (items
    shorter than the longest are generated to the end and zeroed past their length);
    ``max_samples`` stops early (benchmarks); ``record`` keeps each step's output (B, C_out, T).
    ``options`` (none: the defaults) give the temperature, the back end and the precision;
    their fold settings are for :func:`~neurotts.models.wavenet.fold.generate_folded`.
    ``options.mode``: "kernel" (the C kernel; float32 on CPU), "views" (torch ops, Python-side
    positions), "indexed" (torch ops, device-side positions), "graph" (CUDA graph of "indexed";
    CUDA only), "auto" (graph on CUDA; on CPU the kernel when it is available, else views).
    ``step_threads``: torch intra-op threads during the per-sample loop of the torch-op modes
    on CPU (for the kernel see ``options.kernel_threads``). Step ops take
    microseconds, so waking a thread pool costs more than it saves, and on a shared CPU a
    descheduled worker stalls every op; the batched conditioning pass keeps the caller's
    setting. ``None`` leaves the setting alone throughout. ``options.kernel_threads``: threads for
    the C kernel, each taking a share of the utterances (default: torch's intra-op thread
    count, at most one per utterance); the audio does not depend on it. ``options.precision``:
    "fp32", or "bf16" (the C kernel only, on CPUs with AVX512-BF16: weights and the rows
    they multiply rounded to bfloat16, sums and everything between the products in
    float32; about 1.7x faster, and the samples drawn differ from fp32's). ``speakers`` (B,)
    long ids, for a multi-speaker vocoder: the speaker enters through the upsampled
    conditioning (see :mod:`.model`), which every mode reads, so all modes take it.
    """
    options = options or GenerateOptions()
    mode, lib = _backend(model, mels, options.mode, options.precision)
    if mels.device.type != "cpu":
        step_threads = None
    with _eval_mode(model):
        lengths, steps = _lengths(model, mels, mel_lengths, max_samples)
        cond = model.upsample(mels, mel_lengths, speakers)[..., :steps]  # (B, C_cond, steps)
        batch = mels.shape[0]
        # Per step and utterance: the kernel reads the upsampled conditioning (it projects it
        # itself), the torch steps every layer's projection; both read the noise.
        cfg = model.cfg
        cond_width = cfg.cond_channels if mode == "kernel" else cfg.layers * cfg.gate_channels
        noise_width = (cfg.mu_law_channels if cfg.output == "mulaw" else cfg.n_mixtures) + 1
        block = _block_size(batch, cond_width + noise_width, steps, max(dilations(cfg)))
        if mode == "kernel":
            threads = max(1, min(batch, options.kernel_threads or torch.get_num_threads()))
            cache = KernelGroup(lib, model, batch, max(steps, 1), block, record, threads,
                                bf16=options.precision == "bf16")
        else:
            cache = CachedStep(model, batch, max(steps, 1), block, record, mels.device)
        graph = GraphedStep(cache) if mode == "graph" else None
        cache.reset()
        try:
            for start in range(0, steps, block):
                n = min(block, steps - start)
                gumbel, logistic = draw_noise(model, n, batch, options.temperature, generator,
                                              mels.device)
                if mode == "kernel":
                    cache.fill_and_run(cond[..., start:start + n], gumbel, logistic, start)
                    continue
                cache.fill_block(cond[..., start:start + n], gumbel, logistic)
                with _intra_op_threads(step_threads):
                    run_block(cache, graph, mode, start, n)
        finally:
            if mode == "kernel":
                cache.close()
        samples = cache.samples[:steps]
        outputs = cache.outputs[:steps] if cache.outputs is not None else None
        return _finish(model, samples, lengths, outputs)
