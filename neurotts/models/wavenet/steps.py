"""WaveNet generation on torch ops: the per-sample step and its CUDA graph.

One step does O(layers) work per sample instead of recomputing the receptive field:

* Each layer keeps a ring buffer of its last ``(K-1)*d + 1`` inputs. A step gathers the K taps
  ``x[t-(K-1)d], ..., x[t]`` with one ``index_select`` and applies the whole dilated conv as one
  ``addmm`` ``(B, K*R) @ (K*R, G)`` whose bias operand is the precomputed conditioning.
* Every layer's 1x1 conditioning projection (plus the dilated conv's bias) is applied for a
  block of samples in ONE matmul with the layers' weights concatenated
  (:meth:`CachedStep.fill_block`; the C kernel instead projects per layer as it goes).
* The residual output of layer l is written straight into layer l+1's ring slot; the sqrt(1/2)
  residual scale and sqrt(1/layers) skip scale are folded into the weights.
* Skip connections are not summed per layer: each layer's gated activation is written into
  its slice of one ``(B, layers*G/2)`` buffer, and all skip 1x1 convs are one matmul at the end.
* Every intermediate lives in a preallocated buffer (``out=``), so a step allocates nothing;
  each matmul is bound once to its buffers (a matrix-vector product when B = 1).

On the CPU this is the fallback of the C kernel (:mod:`neurotts.models.wavenet.kernel`),
which also amortises the past taps of dilated layers over d samples; here every step gathers
all K taps. On CUDA the step is captured once in a CUDA graph (``step_indexed`` keeps all
step-dependent positions in device tensors) and replayed per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace

import torch

from neurotts.models.wavenet.model import WaveNet, dilations, pick_sample, silence_input

SQRT_HALF = math.sqrt(0.5)


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


def matmul_weights(model: WaveNet) -> SimpleNamespace:
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


class CachedStep:
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
        vars(self).update(vars(matmul_weights(model)))
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

    def _bind_matmuls(self) -> None:
        """Every per-step matmul reads and writes fixed buffers, so bind each once."""
        self.mm_dilated = [_affine(self.cond_views[i], self.taps_flat, self.w_taps[i], self.gate)
                           for i in range(self.n_layers)]
        self.mm_res = [_affine(self.b_res[i], self.z_views[i], self.w_res[i], self.res)
                       for i in range(self.n_layers - 1)]
        self.mm_skip = _affine(self.b_skip, self.z, self.w_skip, self.hidden)
        self.mm_head1 = _affine(self.b_h1, self.hidden, self.w_h1, self.hidden2)
        self.mm_head2 = _affine(self.b_h2, self.hidden2, self.w_h2, self.out)

    def reset(self) -> None:
        """Empty history; the first input is the silence sample."""
        for ring in self.rings:
            ring.zero_()
        self.t_dev.zero_()
        self.j_dev.zero_()
        self._write_input(self.first, 0)

    def fill_block(self, cond: torch.Tensor, gumbel: torch.Tensor, logistic: torch.Tensor) -> None:
        """Precompute a block of ``n`` steps: ``cond`` (B, C_cond, n) through every layer's
        conditioning projection at once -> ``cond_block[:n]`` (n, B, layers*G), and the
        block's noise."""
        n = cond.shape[-1]
        flat = cond.permute(2, 0, 1).reshape(n * self.batch, -1)  # (n*B, C_cond)
        torch.addmm(self.b_cond, flat, self.w_cond, out=self.cond_block[:n].view(n * self.batch, -1))
        self.gumbel_block[:n].copy_(gumbel)
        self.logistic_block[:n].copy_(logistic)
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

    def _layers(self, t: int | None) -> None:
        """All residual layers for one step; ``t`` None means positions from ``t_dev``."""
        for i in range(self.n_layers):
            n = self.ring_len[i]
            if t is None:
                rows = self.tap_table[i].index_select(0, torch.remainder(self.t_dev, n))
                torch.index_select(self.rings[i], 1, rows.view(-1), out=self.taps)
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
                torch.add(self.res, self.x_now, alpha=SQRT_HALF, out=slot)

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
        self._layers(t)
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


class GraphedStep:
    """A CUDA graph of :meth:`CachedStep.step_indexed`, replayed once per sample."""

    def __init__(self, cache: CachedStep, warmup: int = 3):
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


def run_block(cache: CachedStep, graph: GraphedStep | None, mode: str, start: int,
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
