"""CUDA graphs for Tacotron 2's teacher-forced decoder (``trainer.cuda_graphs``).

The decoder loop is bound by kernel launches, not by the GPU: every step runs a few dozen small
kernels forward and backward, hundreds of steps per batch, and the host cannot issue them as
fast as an H100 finishes them. A CUDA graph replays a recorded sequence without host work.

What is captured: the decoder's forward and backward (``torch.cuda.make_graphed_callables``),
one pair per padded batch shape ``(B, T_text cap, T_mel cap, autocast dtype)``, the first time a
shape appears (one eager warm-up pass, its memory released, then the capture). The encoder, the postnet, the loss
and the optimizer stay eager: a few dozen launches per batch against tens of thousands.

Padding: text is padded to a multiple of ``text_step`` symbols (masked: exactly zero attention),
mels to a multiple of ``frame_step`` frames and of r (the decoder is causal, so extra steps at the
end never change earlier ones), and the outputs are cut back. Losses and gradients are then
those of the unpadded batch up to rounding; only the random masks (prenet dropout, zoneout)
differ, since how many are drawn depends on the padded shape. With steps of 1 nothing is padded
and a graphed step draws the same random numbers as an eager one (capture happens inside
``fork_rng``, and a replay takes its Philox offsets where eager kernels would).

Pitfalls designed around:

* pytorch#181723: a graphed callable's backward returns its static gradient buffers, and
  autograd may keep such a buffer as a parameter's ``.grad``; the next replay overwrites it,
  which corrupts gradient accumulation. Parameters enter the graph through :class:`_FreshGrad`,
  whose backward hands autograd a copy.
* A graph is replayed once per forward and once per backward, never per decoder step, and its
  backward always runs before the next batch's forward (one graphed call in flight). That is
  what lets all shapes share one memory pool: a replay may overwrite another shape's static
  buffers, which only carry meaning during that shape's own call.
* pytorch#169545 (``torch.compile(mode="reduce-overhead")`` with gradient accumulation) and
  pytorch#97155 (compiling an 800-step unrolled loop): torch.compile is not used.
* Autocast's weight cache cannot live inside a graph: capture runs under an autocast of the same
  dtype with the cache off; the decoder casts its large per-step weights once per call itself.

Not supported: DDP (torchrun) and CPU. Validation and synthesis run eagerly (no_grad / eval).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neurotts.config import ConfigError
from neurotts.training.config import CudaGraphsConfig

Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# (batch, text cap, frame cap, autocast dtype or None)
ShapeKey = tuple[int, int, int, torch.dtype | None]


class _FreshGrad(torch.autograd.Function):
    """Identity on the parameters whose backward gives autograd copies of the incoming
    gradients (the graph's static buffers), never the buffers themselves (pytorch#181723)."""

    @staticmethod
    def forward(ctx, *params):  # noqa: ANN001, ANN205
        return tuple(p.view_as(p) for p in params)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):  # noqa: ANN001, ANN205
        return tuple(None if g is None else g.clone() for g in grads)


def fresh_grads(params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return _FreshGrad.apply(*params)


def bucket_caps(text_len: int, n_frames: int, r: int, cfg: CudaGraphsConfig) -> tuple[int, int]:
    """Padded ``(T_text, T_mel)`` of a batch: multiples of ``text_step`` and of
    ``lcm(frame_step, r)``, the latter so the decoder's steps stay whole."""
    frame_step = math.lcm(cfg.frame_step, r)
    return (math.ceil(text_len / cfg.text_step) * cfg.text_step,
            math.ceil(n_frames / frame_step) * frame_step)


def pad_inputs(memory: torch.Tensor, mask: torch.Tensor, mels: torch.Tensor, text_cap: int,
               frame_cap: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """memory ``(B, T_text, D)``, mask ``(B, T_text)``, mels ``(B, T_mel, n_mels)`` padded to
    the caps with zeros (memory, mels) and False (mask)."""
    pad_text = text_cap - memory.shape[1]
    return (F.pad(memory, (0, 0, 0, pad_text)), F.pad(mask, (0, pad_text), value=False),
            F.pad(mels, (0, 0, 0, frame_cap - mels.shape[1])))


def cut_outputs(outputs: Outputs, text_len: int, n_frames: int, r: int) -> Outputs:
    """The decoder's padded outputs cut back to the batch's own ``T_text`` and ``T_mel``."""
    frames, stop, alignments = outputs
    return (frames[:, :n_frames], stop[:, :n_frames],
            alignments[:, : n_frames // r, :text_len])


def _warm_up(run: Callable[..., Outputs], sample: tuple[torch.Tensor, ...]) -> None:
    """One eager forward and backward on a side stream (as torch's capture recipe does), so
    lazy initialisation (cuBLAS/cuDNN handles, workspaces) happens before the capture."""
    inputs = [t for t in sample if t.requires_grad]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        outputs = [o for o in run(*sample) if o.requires_grad]
        torch.autograd.grad(outputs, inputs, [torch.ones_like(o) for o in outputs],
                            allow_unused=True)
    torch.cuda.current_stream().wait_stream(stream)
    del outputs


@dataclass
class GraphStats:
    captured: int = 0  # shapes captured
    replays: int = 0  # training calls served by a graph
    eager: int = 0  # training calls run eagerly because max_graphs shapes were taken


class GraphedDecoder:
    """A ``decode`` function for :meth:`Tacotron2.forward` that replays a CUDA graph of
    ``decoder`` for the batch's padded shape, capturing it the first time. Calls without
    gradients or in eval mode run the decoder eagerly."""

    def __init__(self, decoder: nn.Module, r: int, cfg: CudaGraphsConfig):
        self.decoder, self.r, self.cfg = decoder, r, cfg
        self.graphs: dict[ShapeKey, Callable[..., Outputs]] = {}
        self.pool: object | None = None  # one CUDA memory pool for every shape's graphs
        self.stats = GraphStats()

    def __call__(self, memory: torch.Tensor, mask: torch.Tensor, mels: torch.Tensor) -> Outputs:
        """Same arguments and results as ``Decoder.forward``."""
        if not (self.decoder.training and torch.is_grad_enabled()):
            return self.decoder(memory, mask, mels)
        if not memory.is_cuda:
            raise ConfigError(f"trainer.cuda_graphs.enabled=true needs a CUDA GPU; this run "
                              f"trains on {memory.device.type}")
        text_len, n_frames = memory.shape[1], mels.shape[1]
        text_cap, frame_cap = bucket_caps(text_len, n_frames, self.r, self.cfg)
        amp = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        key = (memory.shape[0], text_cap, frame_cap, amp)
        padded = pad_inputs(memory, mask, mels, text_cap, frame_cap)
        graphed = self.graphs.get(key)
        if graphed is None:
            if len(self.graphs) >= self.cfg.max_graphs:
                self.stats.eager += 1
                return self.decoder(memory, mask, mels)
            graphed = self._capture(key, padded)
        self.stats.replays += 1
        params = fresh_grads(self._params())
        return cut_outputs(graphed(*padded, *params), text_len, n_frames, self.r)

    def _params(self) -> tuple[torch.Tensor, ...]:
        return tuple(p for p in self.decoder.parameters() if p.requires_grad)

    def _capture(self, key: ShapeKey, padded: tuple[torch.Tensor, ...]) -> Callable[..., Outputs]:
        """Warm up and capture forward and backward for ``key``; the random draws of warm-up
        and capture are taken from a forked RNG, so the training stream does not see them."""
        memory, mask, mels = padded
        amp = key[3]

        def run(memory: torch.Tensor, mask: torch.Tensor, mels: torch.Tensor,
                *params: torch.Tensor) -> Outputs:
            del params  # graph inputs so that their gradients are outputs of the graph
            with torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None,
                                cache_enabled=False):
                return self.decoder(memory, mask, mels)

        # Static inputs: copies of this batch (a leaf for memory, whose gradient is needed),
        # and the parameters themselves, which the optimizer updates in place.
        sample = (memory.detach().clone().requires_grad_(memory.requires_grad), mask.clone(),
                  mels.detach().clone(), *self._params())
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        with torch.random.fork_rng(devices=[memory.device]), \
                torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None,
                               cache_enabled=False):
            _warm_up(run, sample)
            # The warm-up's activations go back to the device before the capture allocates its
            # own pool: peak memory is one pass's, not two.
            torch.cuda.empty_cache()
            graphed = torch.cuda.make_graphed_callables(run, sample, num_warmup_iters=0,
                                                        allow_unused_input=True, pool=self.pool)
        torch.cuda.empty_cache()
        self.graphs[key] = graphed
        self.stats.captured += 1
        return graphed
