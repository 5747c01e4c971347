"""Process group set-up for ``torchrun``, the few collectives the engine needs, and how an
error reaches every rank.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) everything here is a no-op
on a single process. Under ``torchrun --nproc_per_node=N`` each process joins a group (nccl
when training on CUDA, gloo on CPU) and takes the GPU of its ``LOCAL_RANK``.

Errors: a rank that gives up while the others wait in a collective hangs the job, so an
error raised on one rank must be raised on all. Decisions only rank 0 takes (the lock, the
checkpoint to resume, every write) run through :func:`on_main`, which raises rank 0's error
on every rank; checks every rank makes alike run inside :func:`raised_alike`. In both, rank
0 raises the original error (and the CLI prints it) and the others a
:class:`~neurotts.training.errors.SharedError` that the CLI does not print.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from neurotts.config import ConfigError
from neurotts.errors import UserError
from neurotts.training.errors import SharedError

T = TypeVar("T")


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


def rank_device(choice: str, local_rank: int) -> torch.device:
    """This process's device: the GPU of its ``LOCAL_RANK`` when CUDA is chosen or available."""
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
    device = rank_device(device_choice, local_rank)
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


def on_main(fn: Callable[[], T], env: DistEnv, default: T | None = None) -> T | None:
    """Run ``fn`` on rank 0 only; its result there, ``default`` elsewhere. An error it raises
    that a user can act on (a :class:`UserError`, or a failed write) is raised on every rank
    (the original on rank 0, a :class:`SharedError` elsewhere), so that no rank waits in a
    collective for a rank that gave up."""
    result, error = default, None
    if env.is_main:
        try:
            result = fn()
        except (UserError, OSError) as exc:
            error = exc
    # (message, exit code): what the other ranks need to exit alike, whatever rank 0 raised.
    shared = from_main(None if error is None else (str(error), exit_code(error)), env)
    if error is not None:
        raise error
    if shared is not None:
        raise SharedError(*shared)
    return result


def exit_code(exc: Exception) -> int:
    """The exit code the CLI gives ``exc``: its class's for a user error, 1 otherwise."""
    return exc.exit_code if isinstance(exc, UserError) else 1


@contextlib.contextmanager
def raised_alike(env: DistEnv) -> Iterator[None]:
    """Around checks every rank makes on the same data (feature files, the checkpoint to
    resume): an error raised inside is raised alike on every rank, so rank 0 raises it as it
    is and the others as a :class:`SharedError`, which the CLI does not print; under torchrun
    the message appears once. Errors whose class declares ``every_rank`` pass unchanged."""
    try:
        yield
    except UserError as exc:
        if env.is_main or exc.every_rank:
            raise
        raise SharedError(str(exc), exc.exit_code) from exc
