"""Process group set-up for ``torchrun``, and the few collectives the engine needs.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) everything here is a no-op
on a single process. Under ``torchrun --nproc_per_node=N`` each process joins a group (nccl
when training on CUDA, gloo on CPU) and takes the GPU of its ``LOCAL_RANK``.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from neurotts.config import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value is None else int(value)


def pick_device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("trainer.device=cuda but no CUDA GPU is visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device_choice: str) -> DistEnv:
    """Join the process group if launched by torchrun; pick this process's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = pick_device(device_choice, local_rank)
    if world_size > 1 and "TORCHELASTIC_RUN_ID" in os.environ:
        # torchrun starts each worker in a session of its own, so a signal to torchrun's
        # process group reaches torchrun only, and torchrun dies at once of one it does not
        # handle (SIGUSR1) or of kill -9, leaving its workers training on. Asking the kernel
        # for a SIGTERM when torchrun dies turns that into a normal stop with a checkpoint.
        signal_on_parent_death(signal.SIGTERM)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                device_id=device if device.type == "cuda" else None)
    return DistEnv(rank, local_rank, world_size, device)


def local_world_size() -> int:
    """Processes of this job on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without)."""
    return _env_int("LOCAL_WORLD_SIZE", 1)


def signal_on_parent_death(sig: signal.Signals) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits (Linux only; a
    no-op elsewhere). If the parent is already gone, send it now."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
    if os.getppid() != parent:  # died before the request was in place
        os.kill(os.getpid(), sig)


def teardown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj`` on every rank (used for per-rank RNG states in checkpoints)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank when ``flag`` is true on any rank (one scalar all-reduce)."""
    return max_over_ranks([int(flag)], env)[0] > 0


def max_over_ranks(values: list[int], env: DistEnv) -> list[int]:
    """Element-wise maximum of small non-negative integers over all ranks (one all-reduce),
    so that every rank takes the same decision (stop, save) from per-rank observations."""
    if not env.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [int(v) for v in tensor.tolist()]


def from_main(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank (a decision only rank 0 can take, e.g. the lock)."""
    if not env.distributed:
        return obj
    box = [obj if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
