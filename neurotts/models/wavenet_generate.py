"""Sample-by-sample WaveNet generation: a cached generator and the naive baseline.

Cached generation (:func:`generate`) does O(layers) work per sample instead of recomputing the
receptive field:

* The conditioning is upsampled once for the whole batch, and every layer's 1x1 conditioning
  projection (plus the dilated conv's bias) is applied for a block of samples in ONE matmul
  with the layers' weights concatenated, ``(n*B, C_cond) @ (C_cond, layers*G)``.
* Each layer keeps a ring buffer of its last ``(K-1)*d + 1`` inputs. A step gathers the K taps
  ``x[t-(K-1)d], ..., x[t]`` with one ``index_select`` and applies the whole dilated conv as one
  ``addmm`` ``(B, K*R) @ (K*R, G)`` whose bias operand is the precomputed conditioning.
* The residual output of layer l is written straight into layer l+1's ring slot; the sqrt(1/2)
  residual scale and sqrt(1/layers) skip scale are folded into the weights.
* Skip connections are not summed per layer: each layer's gated activation is written into
  its slice of one ``(B, layers*G/2)`` buffer, and all skip 1x1 convs are one matmul at the end.
* Every intermediate lives in a preallocated buffer (``out=``), so a step allocates nothing;
  each matmul is bound once to its buffers (a matrix-vector product when B = 1).
* On CPU the step loop runs on one intra-op thread (see ``step_threads``).
* Sampling noise (Gumbel for the categorical choice, logistic for MoL) is drawn per block.

On CPU the same per-sample arithmetic runs by default in a small C kernel
(``csrc/wavenet_cpu.c``, built on first use by :mod:`neurotts.models.cpu_kernel`), one call per
block of samples: at batch 1 the torch-op loop spends about as long in per-op overhead as in
arithmetic. The torch-op path (mode ``views``) is the fallback when no C compiler is available.

On CUDA the step can be captured once in a CUDA graph (:class:`_CachedStep` in ``indexed``
mode, which keeps all step-dependent positions in device tensors) and replayed per sample.

Naive generation (:func:`generate_naive`) runs the teacher-forced network over the last
``receptive_field`` samples for every new sample: the benchmark's baseline.

Temperature: sampling draws ``argmax(logits + T * gumbel)`` (equivalent to sampling from
``softmax(logits / T)``) and, for MoL, ``mean + T * scale * logistic``; ``temperature=0`` is the
argmax option (most likely class; for MoL the mean of the most likely component).
"""

from __future__ import annotations

import ctypes
import itertools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from neurotts.audio import mu_law_decode
from neurotts.models import cpu_kernel
from neurotts.models.wavenet import WaveNet, WaveNetConfig, dilations, silence_input

SQRT_HALF = math.sqrt(0.5)
# Upper bound on the floats in one block of precomputed conditioning (128 MiB in fp32).
_COND_BLOCK_FLOATS = 32 * 2**20


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


def draw_noise(
    model: WaveNet, steps: int, batch: int, temperature: float, generator: torch.Generator | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise for ``steps`` samples: Gumbel ``(steps, B, K)`` and logistic ``(steps, B)``, both
    already multiplied by ``temperature`` (K = classes for mu-law, mixtures for MoL)."""
    cfg = model.cfg
    k = cfg.mu_law_channels if cfg.output == "mulaw" else cfg.n_mixtures
    dtype = model.head[-1].weight.dtype
    if temperature == 0.0:
        return (torch.zeros(steps, batch, k, device=device, dtype=dtype),
                torch.zeros(steps, batch, device=device, dtype=dtype))
    tiny = torch.finfo(dtype).tiny
    u = torch.rand(steps, batch, k + 1, generator=generator, device=device, dtype=dtype)
    u = u.clamp(min=tiny, max=1.0 - torch.finfo(dtype).eps)
    gumbel = -torch.log(-torch.log(u[..., :k]))
    logistic = torch.log(u[..., k]) - torch.log1p(-u[..., k])
    return gumbel * temperature, logistic * temperature


def pick_sample(model: WaveNet, out: torch.Tensor, gumbel: torch.Tensor,
                logistic: torch.Tensor) -> torch.Tensor:
    """One step's output ``(B, C_out)`` + noise -> next sample ``(B,)``: a class or a float."""
    cfg = model.cfg
    if cfg.output == "mulaw":
        return torch.argmax(out + gumbel, dim=1)
    m = cfg.n_mixtures
    k = torch.argmax(out[:, :m] + gumbel, dim=1, keepdim=True)  # (B, 1)
    mean = out[:, m:2 * m].gather(1, k)
    log_scale = out[:, 2 * m:].gather(1, k).clamp(min=cfg.log_scale_min)
    x = mean + torch.exp(log_scale) * logistic[:, None]
    return x.clamp(-1.0, 1.0).squeeze(1)


def _finish(model: WaveNet, samples: torch.Tensor, lengths: torch.Tensor,
            outputs: torch.Tensor | None) -> Generated:
    """``samples`` (T, B) classes or floats -> :class:`Generated` with padding zeroed."""
    samples = samples.t().contiguous()  # (B, T)
    audio = samples
    if model.cfg.output == "mulaw":
        audio = mu_law_decode(audio, model.cfg.mu_law_channels)
    audio = audio.float().contiguous()
    valid = torch.arange(audio.shape[1], device=audio.device)[None, :] < lengths[:, None]
    audio = audio * valid
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
    temperature: float = 1.0,
    max_samples: int | None = None,
    record: bool = False,
    generator: torch.Generator | None = None,
    step_threads: int | None = None,
) -> Generated:
    """Baseline: the full network over the last ``receptive_field`` inputs for each sample.

    ``mels`` (B, T_frames, n_mels); ``mel_lengths`` (B,) frames. Exact (the window covers the
    whole receptive field), and O(receptive_field) work per sample. Arguments as for
    :func:`generate`; ``step_threads`` defaults to the caller's setting, since a full window
    is enough work to share between threads.
    """
    if mels.device.type != "cpu":
        step_threads = None
    with _eval_mode(model), _intra_op_threads(step_threads):
        lengths, steps = _lengths(model, mels, mel_lengths, max_samples)
        cond = model.upsample(mels, mel_lengths)[..., :steps]  # (B, C_cond, steps)
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


def _affine(bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
            out: torch.Tensor) -> Callable[[], object]:
    """``out = bias + x @ weight`` on fixed buffers, as a call with no arguments.

    ``x`` (B, I), ``weight`` (I, O), ``bias`` (O,) or (B, O), ``out`` (B, O). With one row a
    matrix-vector product on the contiguous transpose (O, I) is ~15% faster than a 1-row GEMM,
    and the step is bound by reading the weights.
    """
    if x.shape[0] == 1:
        w_t, x1, out1 = weight.t().contiguous(), x[0], out[0]
        b1 = bias[0] if bias.dim() == 2 else bias
        return lambda: torch.addmv(b1, w_t, x1, out=out1)
    return lambda: torch.addmm(bias, x, weight, out=out)


def _matmul_weights(model: WaveNet) -> SimpleNamespace:
    """Conv weights -> matmul operands laid out ``(in, out)``, with the constant scales folded
    in: ``w_taps`` per layer (K*R, G), tap k multiplying x[t-(K-1-k)d]; ``w_cond`` (C_cond,
    layers*G) with ``b_cond`` the dilated convs' biases; ``w_res``/``b_res`` per layer scaled
    by sqrt(1/2); ``w_skip`` (layers*G/2, S) and the summed ``b_skip`` scaled by
    sqrt(1/layers); the head's two 1x1 convs; the input embedding table (mu-law) or the input
    1x1 conv (MoL)."""
    layers = model.layers
    scale_skip = math.sqrt(1.0 / len(layers))
    w = SimpleNamespace()
    # Conv1d weight (G, R, K) -> (K, R, G) -> (K*R, G).
    w.w_taps = [ly.dilated.weight.permute(2, 1, 0).reshape(-1, ly.dilated.out_channels)
                .contiguous() for ly in layers]
    w.w_cond = torch.cat([ly.cond.weight[:, :, 0].t() for ly in layers], dim=1)
    w.b_cond = torch.cat([ly.dilated.bias for ly in layers])  # (layers*G,)
    w.w_res = [(ly.res.weight[:, :, 0].t() * SQRT_HALF).contiguous() for ly in layers]
    w.b_res = [ly.res.bias * SQRT_HALF for ly in layers]
    w.w_skip = torch.cat([ly.skip.weight[:, :, 0].t() for ly in layers]) * scale_skip
    w.b_skip = torch.stack([ly.skip.bias for ly in layers]).sum(0) * scale_skip
    conv1, conv2 = model.head[1], model.head[3]
    w.w_h1, w.b_h1 = conv1.weight[:, :, 0].t().contiguous(), conv1.bias
    w.w_h2, w.b_h2 = conv2.weight[:, :, 0].t().contiguous(), conv2.bias
    if isinstance(model.input, torch.nn.Embedding):
        w.w_in, w.b_in = model.input.weight, None  # (classes, R) table
    else:
        w.w_in, w.b_in = model.input.weight[:, :, 0].t(), model.input.bias  # (1, R)
    return w


class _BlockInputs:
    """Per-block inputs shared by both step implementations: subclasses provide ``batch``,
    ``w_cond``/``b_cond`` and the ``cond_block``, ``gumbel_block``, ``logistic_block``
    buffers."""

    def fill_block(self, cond: torch.Tensor, gumbel: torch.Tensor, logistic: torch.Tensor) -> None:
        """Precompute a block of ``n`` steps: ``cond`` (B, C_cond, n) through every layer's
        conditioning projection at once -> ``cond_block[:n]`` (n, B, layers*G), and the
        block's noise."""
        n = cond.shape[-1]
        flat = cond.permute(2, 0, 1).reshape(n * self.batch, -1)  # (n*B, C_cond)
        torch.addmm(self.b_cond, flat, self.w_cond, out=self.cond_block[:n].view(n * self.batch, -1))
        self.gumbel_block[:n].copy_(gumbel)
        self.logistic_block[:n].copy_(logistic)


class _CachedStep(_BlockInputs):
    """Rearranged weights, ring buffers and scratch buffers for one-sample steps.

    Two equivalent step implementations share the buffers:
    * ``step(t, j)`` (CPU / eager): ring positions are Python ints, every slot is a
      precomputed view, so each op writes in place with no indexing overhead;
    * ``step_indexed()`` (CUDA graphs): positions come from device counters ``t_dev`` and
      ``j_dev`` that the step itself advances, so one captured graph serves every sample.
    """

    def __init__(self, model: WaveNet, batch: int, steps: int, block: int, record: bool,
                 device: torch.device):
        cfg = model.cfg
        self.model, self.batch, self.record = model, batch, record
        self.mulaw = cfg.output == "mulaw"
        self.n_layers, self.k = cfg.layers, cfg.kernel_size
        self.half = cfg.gate_channels // 2
        # Weights as matmul operands, one attribute each (w_taps, w_res, b_res, ...).
        vars(self).update(vars(_matmul_weights(model)))
        dtype = self.w_cond.dtype
        r, g, n_out = cfg.residual_channels, cfg.gate_channels, model.head[-1].out_channels
        new = dict(device=device, dtype=dtype)
        # Per-layer rings of past layer inputs: (B, (K-1)d + 1, R); zeros = causal padding.
        self.ring_len = [(self.k - 1) * d + 1 for d in dilations(cfg)]
        self.rings = [torch.zeros(batch, n, r, **new) for n in self.ring_len]
        self.ring_views = [[ring[:, i] for i in range(ring.shape[1])] for ring in self.rings]
        # tap_table[l][p]: ring positions of x[t-(K-1)d], ..., x[t] when t % len == p.
        self.tap_table = [
            torch.tensor([[(p - (self.k - 1 - i) * d) % n for i in range(self.k)]
                          for p in range(n)], device=device)
            for d, n in zip(dilations(cfg), self.ring_len, strict=True)
        ]
        self.tap_rows = [list(table) for table in self.tap_table]  # (K,) views, CPU path
        self.taps = torch.empty(batch, self.k, r, **new)
        self.taps_flat = self.taps.view(batch, self.k * r)  # (B, K*R)
        self.x_now = self.taps[:, self.k - 1]  # (B, R): the current input is the newest tap
        self.gate = torch.empty(batch, g, **new)
        self.gate_a, self.gate_b = self.gate[:, :self.half], self.gate[:, self.half:]
        self.act_a = torch.empty(batch, self.half, **new)
        self.act_b = torch.empty(batch, self.half, **new)
        self.z = torch.empty(batch, self.n_layers * self.half, **new)  # all gated activations
        self.z_views = [self.z[:, i * self.half:(i + 1) * self.half] for i in range(self.n_layers)]
        self.res = torch.empty(batch, r, **new)
        self.hidden = torch.empty(batch, cfg.skip_channels, **new)
        self.hidden2 = torch.empty(batch, cfg.skip_channels, **new)
        self.out = torch.empty(batch, n_out, **new)
        # Per-block inputs (filled between blocks, read by index inside a step).
        self.cond_block = torch.zeros(block, batch, self.n_layers * g, **new)
        self.cond_t = torch.empty(1, batch, self.n_layers * g, **new)
        self.cond_t0 = self.cond_t[0]  # (B, layers*G)
        self.cond_views = [self.cond_t[0, :, i * g:(i + 1) * g] for i in range(self.n_layers)]
        n_noise = cfg.mu_law_channels if self.mulaw else cfg.n_mixtures
        self.gumbel_block = torch.zeros(block, batch, n_noise, **new)
        self.logistic_block = torch.zeros(block, batch, **new)
        self.samples = torch.zeros(steps, batch, device=device,
                                   dtype=torch.long if self.mulaw else dtype)
        self.outputs = torch.zeros(steps, batch, n_out, **new) if record else None
        self.t_dev = torch.zeros(1, dtype=torch.long, device=device)
        self.j_dev = torch.zeros(1, dtype=torch.long, device=device)
        self.first = silence_input(cfg).to(device).expand(batch)
        self._bind_matmuls()
        self._init_past(cfg, batch, block, new)

    def _bind_matmuls(self) -> None:
        """Every per-step matmul reads and writes fixed buffers, so bind each once."""
        self.mm_dilated = [_affine(self.cond_views[i], self.taps_flat, self.w_taps[i], self.gate)
                           for i in range(self.n_layers)]
        self.mm_res = [_affine(self.b_res[i], self.z_views[i], self.w_res[i], self.res)
                       for i in range(self.n_layers - 1)]
        self.mm_skip = _affine(self.b_skip, self.z, self.w_skip, self.hidden)
        self.mm_head1 = _affine(self.b_h1, self.hidden, self.w_h1, self.hidden2)
        self.mm_head2 = _affine(self.b_h2, self.hidden2, self.w_h2, self.out)

    def _init_past(self, cfg: WaveNetConfig, batch: int, block: int, new: dict) -> None:
        """Amortised past taps (CPU path). For a layer of dilation d, the taps x[t-(K-1)d] ...
        x[t-d] of the next d samples are all known at a multiple of d, so their contribution
        (plus the conditioning) is one (d*B, (K-1)R) @ ((K-1)R, G) product every d samples
        instead of d matrix-vector products: the step reads those weights once per d samples,
        and batch-1 generation is bound by reading weights."""
        r, g = cfg.residual_channels, cfg.gate_channels
        dil = dilations(cfg)
        # Blocks of conditioning must not split a window of d steps.
        self.amortise = [d > 1 and block % d == 0 for d in dil]
        self.w_now = [w[(self.k - 1) * r:] .contiguous() for w in self.w_taps]  # (R, G)
        self.w_now_t = [w.t().contiguous() for w in self.w_now]  # (G, R) for addmv
        self.w_past = [w[: (self.k - 1) * r].contiguous() for w in self.w_taps]  # ((K-1)R, G)
        self.past = [torch.empty(d, batch, g, **new) if a else None
                     for d, a in zip(dil, self.amortise, strict=True)]
        self.past_taps = [torch.empty(batch, d * (self.k - 1), r, **new) if a else None
                          for d, a in zip(dil, self.amortise, strict=True)]
        self.past_index: list[dict[int, torch.Tensor]] = [{} for _ in dil]

    def _fill_past(self, i: int, t: int, j: int) -> None:
        """past[i][q] = cond(t+q) + sum of the past taps of sample t+q, for q < d."""
        d, n, k = self.past[i].shape[0], self.ring_len[i], self.k
        p = t % n
        idx = self.past_index[i].get(p)
        if idx is None:  # ring rows of x[t+q-(K-1-c)d], q-major then tap c
            idx = torch.tensor([(t + q - (k - 1 - c) * d) % n for q in range(d) for c in range(k - 1)],
                               device=self.past[i].device)
            self.past_index[i][p] = idx
        torch.index_select(self.rings[i], 1, idx, out=self.past_taps[i])
        taps = self.past_taps[i].view(self.batch, d, -1).transpose(0, 1)  # (d, B, (K-1)R)
        g = self.past[i].shape[-1]
        cond = self.cond_block[j:j + d, :, i * g:(i + 1) * g]  # (d, B, G)
        torch.baddbmm(cond, taps, self.w_past[i].expand(d, -1, -1), out=self.past[i])

    def reset(self) -> None:
        """Empty history; the first input is the silence sample."""
        for ring in self.rings:
            ring.zero_()
        self.t_dev.zero_()
        self.j_dev.zero_()
        self._write_input(self.first, 0)

    def fill_block(self, cond: torch.Tensor, gumbel: torch.Tensor, logistic: torch.Tensor) -> None:
        super().fill_block(cond, gumbel, logistic)
        self.j_dev.zero_()  # the indexed step reads block rows from this counter

    def _write_input(self, sample: torch.Tensor, t: int | None) -> None:
        """Embed ``sample`` (B,) into layer 0's ring at step ``t`` (device counter if None)."""
        if t is not None:
            slot = self.ring_views[0][t % self.ring_len[0]]
            if self.mulaw:
                torch.index_select(self.w_in, 0, sample, out=slot)
            else:
                torch.addmm(self.b_in, sample[:, None], self.w_in, out=slot)
            return
        x = self.w_in[sample] if self.mulaw else torch.addmm(self.b_in, sample[:, None], self.w_in)
        pos = torch.remainder(self.t_dev, self.ring_len[0])
        self.rings[0].index_copy_(1, pos, x[:, None])

    def _layers(self, t: int | None, j: int | None = None) -> None:
        """All residual layers for one step; ``t`` None means positions from ``t_dev``;
        ``j`` is the row of the conditioning block (the amortised past taps need it)."""
        for i in range(self.n_layers):
            n = self.ring_len[i]
            x_now = self.x_now
            if t is None:
                rows = self.tap_table[i].index_select(0, torch.remainder(self.t_dev, n))
                torch.index_select(self.rings[i], 1, rows.view(-1), out=self.taps)
                self.mm_dilated[i]()
            elif self.amortise[i] and j is not None:
                d = self.past[i].shape[0]
                if t % d == 0:
                    self._fill_past(i, t, j)
                x_now = self.ring_views[i][t % n]  # (B, R)
                if self.batch == 1:
                    torch.addmv(self.past[i][t % d, 0], self.w_now_t[i], x_now[0], out=self.gate[0])
                else:
                    torch.addmm(self.past[i][t % d], x_now, self.w_now[i], out=self.gate)
            else:
                torch.index_select(self.rings[i], 1, self.tap_rows[i][t % n], out=self.taps)
                # Whole dilated conv + conditioning + bias: (B, K*R) @ (K*R, G) + cond.
                self.mm_dilated[i]()
            torch.tanh(self.gate_a, out=self.act_a)
            torch.sigmoid(self.gate_b, out=self.act_b)
            torch.mul(self.act_a, self.act_b, out=self.z_views[i])  # (B, G/2)
            if i + 1 == self.n_layers:
                break  # the last layer's residual output is never used
            self.mm_res[i]()
            if t is None:
                nxt = torch.add(self.res, self.x_now, alpha=SQRT_HALF)
                pos = torch.remainder(self.t_dev, self.ring_len[i + 1])
                self.rings[i + 1].index_copy_(1, pos, nxt[:, None])
            else:
                slot = self.ring_views[i + 1][t % self.ring_len[i + 1]]
                torch.add(self.res, x_now, alpha=SQRT_HALF, out=slot)

    def _head(self) -> None:
        """Skips of all layers in one matmul, then ReLU-1x1-ReLU-1x1 -> ``self.out``."""
        self.mm_skip()
        self.hidden.relu_()
        self.mm_head1()
        self.hidden2.relu_()
        self.mm_head2()

    def step(self, t: int, j: int) -> None:
        """Sample ``t`` (block row ``j``) with Python-side positions (CPU / eager)."""
        self.cond_t0.copy_(self.cond_block[j])
        self._layers(t, j)
        self._head()
        sample = pick_sample(self.model, self.out, self.gumbel_block[j], self.logistic_block[j])
        self.samples[t].copy_(sample)
        if self.outputs is not None:
            self.outputs[t].copy_(self.out)
        if t + 1 < self.samples.shape[0]:
            self._write_input(sample, t + 1)

    def step_indexed(self) -> None:
        """One sample at ``t_dev`` / block row ``j_dev``, advancing both: graph-capturable."""
        torch.index_select(self.cond_block, 0, self.j_dev, out=self.cond_t)
        self._layers(None)
        self._head()
        gumbel = self.gumbel_block.index_select(0, self.j_dev)[0]
        logistic = self.logistic_block.index_select(0, self.j_dev)[0]
        sample = pick_sample(self.model, self.out, gumbel, logistic)
        # Clamp keeps warm-up steps past the end in bounds; real steps never need it.
        row = self.t_dev.clamp(max=self.samples.shape[0] - 1)
        self.samples.index_copy_(0, row, sample[None])
        if self.outputs is not None:
            self.outputs.index_copy_(0, row, self.out[None])
        self.t_dev.add_(1)
        self.j_dev.add_(1)
        self._write_input(sample, None)


class _GraphedStep:
    """A CUDA graph of :meth:`_CachedStep.step_indexed`, replayed once per sample."""

    def __init__(self, cache: _CachedStep, warmup: int = 3):
        # Warm-up outside the graph (on a side stream, as capture requires) so cuBLAS handles
        # and workspaces exist before capture; it advances the state, so reset afterwards.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                cache.step_indexed()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            cache.step_indexed()  # recorded, not executed
        cache.reset()

    def replay(self) -> None:
        self.graph.replay()


class _KernelWeights:
    """The model's operands in the C kernel's layout (:mod:`neurotts.models.cpu_kernel`):
    matrices ``(in, out)`` packed into 32-wide panels by ``wn_pack``, shared read-only by
    every :class:`_KernelStep` of one generation call."""

    def __init__(self, lib: ctypes.CDLL, model: WaveNet):
        cfg, w = model.cfg, _matmul_weights(model)
        self.lib = lib
        n_layers, k, r, g = cfg.layers, cfg.kernel_size, cfg.residual_channels, cfg.gate_channels
        self.w_taps = self._pack(torch.stack(w.w_taps).view(n_layers, k, r, g))
        self.w_res = self._pack(torch.stack(w.w_res))  # (L, G/2, R)
        self.b_res = torch.stack(w.b_res).float().contiguous()  # (L, R)
        self.w_skip, self.b_skip = self._pack(w.w_skip), w.b_skip.float().contiguous()
        self.w_h1, self.b_h1 = self._pack(w.w_h1), w.b_h1.float().contiguous()
        self.w_h2, self.b_h2 = self._pack(w.w_h2), w.b_h2.float().contiguous()
        self.w_in = w.w_in.float().contiguous()
        self.b_in = (w.b_in.float().contiguous() if w.b_in is not None
                     else torch.zeros(r, dtype=torch.float32))
        self.w_cond, self.b_cond = w.w_cond, w.b_cond

    def _pack(self, weights: torch.Tensor) -> torch.Tensor:
        """(..., I, O) matrices -> the packed layout, each matrix packed on its own so they
        keep their offsets."""
        src = weights.float().contiguous()
        dst = torch.empty_like(src)
        i, o = src.shape[-2:]
        for a, b in zip(src.view(-1, i, o), dst.view(-1, i, o), strict=True):
            self.lib.wn_pack(i, o, ctypes.c_void_p(a.data_ptr()), ctypes.c_void_p(b.data_ptr()))
        return dst


class _KernelStep(_BlockInputs):
    """Buffers for the C kernel, which runs a whole block of samples per call for ``batch``
    utterances; the conditioning projection and the noise stay in torch.

    Same arithmetic as :class:`_CachedStep`'s CPU path (amortised past taps, scales folded
    into the weights), with rings stored time-major in one flat buffer."""

    def __init__(self, weights: _KernelWeights, model: WaveNet, batch: int, steps: int,
                 block: int, record: bool):
        from neurotts.models.cpu_kernel import WnModel

        cfg, w = model.cfg, weights
        self.lib, self.w, self.batch = w.lib, w, batch
        self.w_cond, self.b_cond = w.w_cond, w.b_cond
        self.mulaw = cfg.output == "mulaw"
        n_layers, k, r, g = cfg.layers, cfg.kernel_size, cfg.residual_channels, cfg.gate_channels
        s, n_out = cfg.skip_channels, model.head[-1].out_channels
        n_noise = cfg.mu_law_channels if self.mulaw else cfg.n_mixtures
        dil = dilations(cfg)
        self.ring_len = [(k - 1) * d + 1 for d in dil]

        def offsets(sizes: list[int]) -> torch.Tensor:
            return torch.tensor([0, *itertools.accumulate(sizes)][:-1], dtype=torch.long)

        f32 = dict(dtype=torch.float32)
        self.dil = torch.tensor(dil, dtype=torch.long)
        self.ring_len_t = torch.tensor(self.ring_len, dtype=torch.long)
        self.ring_off = offsets([n * batch * r for n in self.ring_len])
        self.past_off = offsets([d * batch * g for d in dil])
        self.rings = torch.zeros(sum(self.ring_len) * batch * r, **f32)
        self.past = torch.zeros(sum(dil) * batch * g, **f32)
        self.gate = torch.empty(batch, g, **f32)
        self.z = torch.empty(batch, n_layers * g // 2, **f32)
        self.hidden = torch.empty(batch, s, **f32)
        self.hidden2 = torch.empty(batch, s, **f32)
        self.out = torch.empty(batch, n_out, **f32)
        self.cond_block = torch.zeros(block, batch, n_layers * g, **f32)
        self.gumbel_block = torch.zeros(block, batch, n_noise, **f32)
        self.logistic_block = torch.zeros(block, batch, **f32)
        self.values = torch.zeros(steps, batch, **f32)  # classes as floats for mu-law
        self.outputs = torch.zeros(steps, batch, n_out, **f32) if record else None
        self.first = silence_input(cfg).expand(batch)

        def ptr(t: torch.Tensor, kind=ctypes.c_float):
            return ctypes.cast(t.data_ptr(), ctypes.POINTER(kind))

        # The struct holds raw pointers: every tensor it names is kept alive by self or w.
        self.spec = WnModel(
            batch, n_layers, k, r, g, s, n_out, int(self.mulaw), cfg.n_mixtures, n_noise, steps,
            cfg.log_scale_min,
            *[ptr(t, ctypes.c_int64) for t in (self.dil, self.ring_len_t, self.ring_off,
                                               self.past_off)],
            *[ptr(t) for t in (self.rings, self.past, w.w_taps, w.w_res, w.b_res, w.w_skip,
                               w.b_skip, w.w_h1, w.b_h1, w.w_h2, w.b_h2, w.w_in, w.b_in,
                               self.gate, self.z, self.hidden, self.hidden2)],
        )
        rows = self.lib.wn_scratch_rows(ctypes.byref(self.spec))
        self.xs, self.ys = (ctypes.c_void_p * rows)(), (ctypes.c_void_p * rows)()

    @property
    def samples(self) -> torch.Tensor:
        return self.values.long() if self.mulaw else self.values

    def reset(self) -> None:
        """Empty history; the first input is the silence sample, embedded at ring slot 0."""
        self.rings.zero_()
        slot = self.rings[: self.ring_len[0] * self.batch * self.w.w_in.shape[1]]
        slot = slot.view(self.ring_len[0], self.batch, -1)[0]  # (B, R)
        if self.mulaw:
            slot.copy_(self.w.w_in[self.first])
        else:
            slot.copy_(self.w.b_in + self.first[:, None].float() * self.w.w_in)

    def run(self, start: int, n: int) -> None:
        """Samples ``start .. start + n - 1`` of the block just filled."""
        outputs = self.outputs.data_ptr() if self.outputs is not None else None
        self.lib.wn_run(ctypes.byref(self.spec), start, n, self.cond_block.data_ptr(),
                        self.gumbel_block.data_ptr(), self.logistic_block.data_ptr(),
                        self.values.data_ptr(), outputs, self.xs, self.ys, self.out.data_ptr())


class _KernelGroup:
    """The batch split into up to ``threads`` contiguous groups of utterances, each run by
    the kernel in a thread of its own (ctypes releases the GIL, and utterances never
    interact). The noise is drawn for the whole batch and sliced, so the audio does not
    depend on the thread count."""

    def __init__(self, lib: ctypes.CDLL, model: WaveNet, batch: int, steps: int, block: int,
                 record: bool, threads: int):
        weights = _KernelWeights(lib, model)
        bounds = [round(i * batch / threads) for i in range(threads + 1)]
        self.slices = [slice(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        self.parts = [_KernelStep(weights, model, sl.stop - sl.start, steps, block, record)
                      for sl in self.slices]
        self.pool = (ThreadPoolExecutor(len(self.parts), thread_name_prefix="wavenet")
                     if len(self.parts) > 1 else None)

    def _each(self, fn: Callable[[int, _KernelStep], object]) -> None:
        if self.pool is None:
            fn(0, self.parts[0])
        else:
            list(self.pool.map(fn, range(len(self.parts)), self.parts))

    def reset(self) -> None:
        for part in self.parts:
            part.reset()

    def fill_and_run(self, cond: torch.Tensor, gumbel: torch.Tensor, logistic: torch.Tensor,
                     start: int) -> None:
        """One block: ``cond`` (B, C_cond, n) and its noise, ``start`` its first sample."""
        def work(i: int, part: _KernelStep) -> None:
            sl = self.slices[i]
            with torch.inference_mode():  # thread-local: the pool threads need it too
                part.fill_block(cond[sl], gumbel[:, sl], logistic[:, sl])
            part.run(start, cond.shape[-1])

        self._each(work)

    @property
    def samples(self) -> torch.Tensor:
        return torch.cat([part.samples for part in self.parts], dim=1)

    @property
    def outputs(self) -> torch.Tensor | None:
        if self.parts[0].outputs is None:
            return None
        return torch.cat([part.outputs for part in self.parts], dim=1)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _block_size(batch: int, width: int, steps: int, multiple: int) -> int:
    """Steps per block of precomputed conditioning, bounded in memory, and a multiple of the
    largest dilation when there are enough steps (so no amortised window straddles blocks)."""
    block = max(1, min(steps, 2048, max(64, _COND_BLOCK_FLOATS // (batch * width))))
    return block if block < multiple else block // multiple * multiple


def generate(
    model: WaveNet,
    mels: torch.Tensor,
    mel_lengths: torch.Tensor | None = None,
    temperature: float = 1.0,
    max_samples: int | None = None,
    record: bool = False,
    generator: torch.Generator | None = None,
    mode: str = "auto",
    step_threads: int | None = 1,
    kernel_threads: int | None = None,
) -> Generated:
    """Cached incremental generation for a batch of utterances.

    ``mels`` (B, T_frames, n_mels) on the device to run on; ``mel_lengths`` (B,) frames (items
    shorter than the longest are generated to the end and zeroed past their length);
    ``max_samples`` stops early (benchmarks); ``record`` keeps each step's output (B, C_out, T).
    ``mode``: "kernel" (the C kernel; float32 on CPU), "views" (torch ops, Python-side
    positions), "indexed" (torch ops, device-side positions), "graph" (CUDA graph of "indexed";
    CUDA only), "auto" (graph on CUDA; on CPU the kernel when it is available, else views).
    ``step_threads``: torch intra-op threads during the per-sample loop of the torch-op modes
    on CPU (for the kernel see ``kernel_threads``). Step ops take
    microseconds, so waking a thread pool costs more than it saves, and on a shared CPU a
    descheduled worker stalls every op; the batched conditioning pass keeps the caller's
    setting. ``None`` leaves the setting alone throughout. ``kernel_threads``: threads for
    the C kernel, each taking a share of the utterances (default: torch's intra-op thread
    count, at most one per utterance); the audio does not depend on it.
    """
    cpu_fp32 = mels.device.type == "cpu" and model.head[-1].weight.dtype == torch.float32
    lib = cpu_kernel.load() if mode in ("auto", "kernel") and cpu_fp32 else None
    if mode == "auto":
        if mels.device.type == "cuda":
            mode = "graph"
        else:
            mode = "kernel" if lib is not None else "views"
    if mode not in ("kernel", "views", "indexed", "graph"):
        raise ValueError(f"mode={mode!r}: expected auto, kernel, views, indexed or graph")
    if mode == "graph" and mels.device.type != "cuda":
        raise ValueError("mode='graph' needs the model and mels on a CUDA device")
    if mode == "kernel" and not cpu_fp32:
        raise ValueError("mode='kernel' needs a float32 model and mels on the CPU")
    if mode == "kernel" and lib is None:
        raise ValueError("mode='kernel': the CPU kernel could not be built or is disabled "
                         "(see the warning above, or NEUROTTS_CPU_KERNEL)")
    if mels.device.type != "cpu":
        step_threads = None
    with _eval_mode(model):
        lengths, steps = _lengths(model, mels, mel_lengths, max_samples)
        cond = model.upsample(mels, mel_lengths)[..., :steps]  # (B, C_cond, steps)
        batch = mels.shape[0]
        block = _block_size(batch, model.cfg.layers * model.cfg.gate_channels, steps,
                            max(dilations(model.cfg)))
        if mode == "kernel":
            threads = max(1, min(batch, kernel_threads or torch.get_num_threads()))
            cache = _KernelGroup(lib, model, batch, max(steps, 1), block, record, threads)
        else:
            cache = _CachedStep(model, batch, max(steps, 1), block, record, mels.device)
        graph = _GraphedStep(cache) if mode == "graph" else None
        cache.reset()
        try:
            for start in range(0, steps, block):
                n = min(block, steps - start)
                gumbel, logistic = draw_noise(model, n, batch, temperature, generator,
                                              mels.device)
                if mode == "kernel":
                    cache.fill_and_run(cond[..., start:start + n], gumbel, logistic, start)
                    continue
                cache.fill_block(cond[..., start:start + n], gumbel, logistic)
                with _intra_op_threads(step_threads):
                    _run_block(cache, graph, mode, start, n)
        finally:
            if mode == "kernel":
                cache.close()
        samples = cache.samples[:steps]
        outputs = cache.outputs[:steps] if cache.outputs is not None else None
        return _finish(model, samples, lengths, outputs)


def _run_block(cache: _CachedStep, graph: _GraphedStep | None, mode: str, start: int,
               n: int) -> None:
    """Steps ``start .. start + n - 1`` of the block just filled."""
    if graph is not None:
        for _ in range(n):
            graph.replay()
    elif mode == "indexed":
        for _ in range(n):
            cache.step_indexed()
    else:
        for j in range(n):
            cache.step(start + j, j)
