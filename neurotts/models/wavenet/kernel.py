"""Binding of the C kernel for CPU WaveNet generation (``csrc/wavenet_cpu.c``, built and
loaded by :mod:`neurotts.models.wavenet.cpu_kernel`).

The kernel runs a whole block of samples per call: residual layers, skip/head, the sampling
choice and the embedding of the chosen sample as the next input, with the past taps of a
dilation-d layer computed once per d samples. At batch 1 the same arithmetic on torch ops
spends about as long in per-op overhead as in arithmetic. The conditioning is upsampled and
the noise drawn in torch, a block at a time; the kernel projects the conditioning per layer.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from neurotts.models.wavenet.cpu_kernel import WnModel
from neurotts.models.wavenet.model import WaveNet, dilations, silence_input
from neurotts.models.wavenet.steps import matmul_weights


class KernelWeights:
    """The model's operands in the C kernel's layout (:mod:`neurotts.models.wavenet.cpu_kernel`):
    matrices ``(in, out)`` packed into 32-wide panels by ``wn_pack``, or with ``bf16`` rounded
    to bfloat16 and packed by ``wn_pack_bf16`` (in a buffer of the float32 size, so offsets
    are the same), shared read-only by every :class:`KernelStep` of one generation call."""

    def __init__(self, lib: ctypes.CDLL, model: WaveNet, bf16: bool = False):
        cfg, w = model.cfg, matmul_weights(model)
        self.lib, self.bf16 = lib, bf16
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
        # (C_cond, L*G) -> one (C_cond, G) matrix per layer: the kernel projects a window of
        # conditioning rows per layer as it goes.
        self.w_cond = self._pack(w.w_cond.view(-1, n_layers, g).transpose(0, 1))  # (L, C, G)
        self.b_cond = w.b_cond.float().contiguous()  # (L*G,)

    def _pack(self, weights: torch.Tensor) -> torch.Tensor:
        """(..., I, O) matrices -> the packed layout, each matrix packed on its own so they
        keep their offsets."""
        src = weights.float().contiguous()
        dst = torch.zeros_like(src)
        i, o = src.shape[-2:]
        pack = self.lib.wn_pack_bf16 if self.bf16 else self.lib.wn_pack
        for a, b in zip(src.view(-1, i, o), dst.view(-1, i, o), strict=True):
            pack(i, o, ctypes.c_void_p(a.data_ptr()), ctypes.c_void_p(b.data_ptr()))
        return dst


class KernelStep:
    """Buffers for the C kernel, which runs a whole block of samples per call for ``batch``
    utterances; the upsampled conditioning and the noise come from torch.

    Same arithmetic as :class:`~neurotts.models.wavenet.steps.CachedStep` (scales folded into
    the weights) plus amortised past taps, with rings stored time-major in one flat buffer.
    Unlike there, the conditioning projection runs in the kernel, per layer and window."""

    def __init__(self, weights: KernelWeights, model: WaveNet, batch: int, steps: int,
                 block: int, record: bool):
        cfg, w = model.cfg, weights
        self.lib, self.w, self.batch = w.lib, w, batch
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
        self.z = torch.empty(batch, n_layers * g // 2, **f32)
        self.hidden = torch.empty(batch, s, **f32)
        self.hidden2 = torch.empty(batch, s, **f32)
        self.out = torch.empty(batch, n_out, **f32)
        self.cond_block = torch.zeros(block, batch, cfg.cond_channels, **f32)
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
            cfg.cond_channels, int(w.bf16), cfg.log_scale_min,
            *[ptr(t, ctypes.c_int64) for t in (self.dil, self.ring_len_t, self.ring_off,
                                               self.past_off)],
            *[ptr(t) for t in (self.rings, self.past, w.w_taps, w.w_res, w.b_res, w.w_skip,
                               w.b_skip, w.w_h1, w.b_h1, w.w_h2, w.b_h2, w.w_in, w.b_in,
                               w.w_cond, w.b_cond, self.z, self.hidden, self.hidden2)],
        )
        rows = self.lib.wn_scratch_rows(ctypes.byref(self.spec))
        self.xs, self.ys = (ctypes.c_void_p * rows)(), (ctypes.c_void_p * rows)()

    def fill_block(self, cond: torch.Tensor, gumbel: torch.Tensor, logistic: torch.Tensor) -> None:
        """A block of ``n`` steps: ``cond`` (B, C_cond, n) -> ``cond_block[:n]`` (n, B, C_cond)
        as it is (the kernel projects it), and the block's noise."""
        n = cond.shape[-1]
        self.cond_block[:n].copy_(cond.permute(2, 0, 1))
        self.gumbel_block[:n].copy_(gumbel)
        self.logistic_block[:n].copy_(logistic)

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


class KernelGroup:
    """The batch split into up to ``threads`` contiguous groups of utterances, each run by
    the kernel in a thread of its own (ctypes releases the GIL, and utterances never
    interact). The noise is drawn for the whole batch and sliced, so the audio does not
    depend on the thread count."""

    def __init__(self, lib: ctypes.CDLL, model: WaveNet, batch: int, steps: int, block: int,
                 record: bool, threads: int, bf16: bool = False):
        weights = KernelWeights(lib, model, bf16)
        bounds = [round(i * batch / threads) for i in range(threads + 1)]
        self.slices = [slice(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        self.parts = [KernelStep(weights, model, sl.stop - sl.start, steps, block, record)
                      for sl in self.slices]
        self.pool = (ThreadPoolExecutor(len(self.parts), thread_name_prefix="wavenet")
                     if len(self.parts) > 1 else None)

    def _each(self, fn: Callable[[int, KernelStep], object]) -> None:
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
        def work(i: int, part: KernelStep) -> None:
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
