"""Optimiser, learning-rate schedule, mixed precision and weight averaging."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch
from torch import nn

from neurotts.config import ConfigError
from neurotts.training.config import OptimizerConfig, ScheduleConfig


def freeze(model: nn.Module, prefixes: list[str]) -> int:
    """Set ``requires_grad=False`` on every parameter under one of the module ``prefixes``
    (``encoder``, ``decoder.attention``); returns how many values were frozen. A prefix that
    matches no parameter raises :class:`FineTuneError` listing the top-level modules."""
    from neurotts.training.errors import FineTuneError

    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(f"{prefix}.") for n in names):
            tops = ", ".join(name for name, _ in model.named_children())
            raise FineTuneError(f"trainer.freeze: {prefix!r} names no module of this model; its "
                                f"top-level modules are {tops} (a dotted prefix such as "
                                "encoder.embedding also works)")
    frozen = 0
    for name, param in model.named_parameters():
        if any(name == p or name.startswith(f"{p}.") for p in prefixes):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on weight matrices and conv kernels only (not biases, norm gains,
    or other vectors), the usual choice for small recurrent models. Frozen parameters
    (``requires_grad=False``, see :func:`freeze`) are left out: no update, no decay."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps)


def lr_factor(step: int, cfg: ScheduleConfig, base_lr: float, max_steps: int) -> float:
    """Multiplier of the base lr at ``step`` (0-based count of optimizer steps taken)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    floor = min(cfg.min_lr / base_lr, 1.0)
    after = step - cfg.warmup_steps
    if cfg.decay == "exponential":
        return max(cfg.gamma ** (after / cfg.decay_steps), floor)
    if cfg.decay == "cosine":
        span = max(max_steps - cfg.warmup_steps, 1)
        cos = 0.5 * (1.0 + math.cos(math.pi * min(after / span, 1.0)))
        return floor + (1.0 - floor) * cos
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, base_lr: float,
                    max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    # A closure (not a callable object): LambdaLR then saves only its counters, which
    # keeps the checkpoint loadable with weights_only=True.
    def factor(step: int) -> float:
        return lr_factor(step, cfg, base_lr, max_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# What ``precision=auto`` picks per model on GPUs with TF32/bf16 tensor cores (compute
# capability 8.0+, Ampere and later), from bench/train_tacotron2.py on one H200 (torch 2.11,
# batch 128, paper sizes, mel frames/s): Tacotron 2 at r=1 ran 29.7k in fp32 with TF32 against
# 20.2k under bf16 autocast (torchaudio's Tacotron2: 31.3k against 26.0k); its decoder loop is
# bound by kernel launches, and autocast only adds casts to each step. Measured before the
# decoder restructuring and without CUDA graphs: `make bench-gpu` re-measures every precision,
# eager and graphed, and this table should follow it. Models not listed keep bf16.
AUTO_PRECISION = {"tacotron2": "fp32"}


def auto_precision(model: str, capability: tuple[int, int] | None) -> str:
    """``precision=auto`` for ``model`` on a CUDA device of compute ``capability`` (None: no
    GPU). Without TF32/bf16 tensor cores (before 8.0) fp32 is slow and bf16 absent: fp16."""
    if capability is None:
        return "fp32"
    if capability < (8, 0):
        return "fp16"
    return AUTO_PRECISION.get(model, "bf16")


def resolve_precision(choice: str, device: torch.device, model: str) -> str:
    """``auto`` -> :func:`auto_precision` for this device and model; explicit choices are
    checked against the device."""
    if choice == "auto":
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        return auto_precision(model, capability)
    if choice == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("trainer.precision=bf16: this GPU has no bf16; use fp16 or auto")
    return choice


def set_tf32(enabled: bool, device: torch.device) -> None:
    """On CUDA, run fp32 matmuls, convolutions and cuDNN RNNs on TF32 tensor cores (fp32 range
    and accumulation, 10-bit mantissa inputs) or in IEEE fp32. Global, like torch's own flags;
    only torch's per-backend API is used (mixing it with the legacy ``allow_tf32`` flags makes
    later reads of either raise). Under autocast it affects the ops kept in fp32."""
    if device.type != "cuda":
        return
    mode = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode
    torch.backends.cudnn.rnn.fp32_precision = mode


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Autocast for the forward pass; a disabled one (a no-op) for fp32."""
    dtype = _DTYPES.get(precision, torch.bfloat16)
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=precision in _DTYPES)


def build_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling is needed for fp16 only (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[name].lerp_(value, 1.0 - self.decay)
            else:
                self.shadow[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            self.shadow[name].copy_(value)
