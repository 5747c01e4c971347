"""Build and load the C kernel for CPU WaveNet generation (``csrc/wavenet_cpu.c``).

The kernel is plain C with no Python or torch headers, so it compiles in well under a second
with the system C compiler (``$CC``, else ``cc``/``gcc``). It is built on first use for this
machine (``-O3 -march=native``) into a cache directory and reused afterwards; the cache key
covers the source, the compiler and its flags, and the CPU, so a shared home directory on
different machines never loads a library built for another CPU. ``$NEUROTTS_CPU_KERNEL_CFLAGS``
adds flags after the defaults (e.g. ``-mno-avx512f`` to build the AVX2 code path on an
AVX-512 machine, or ``-march=x86-64-v3`` for a library several CPU models share).

Cache directory: ``$NEUROTTS_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurotts``, else
``~/.cache/neurotts``. Set ``NEUROTTS_CPU_KERNEL=0`` to never build or use it (generation
then runs on torch ops). When no compiler is found or the build fails, :func:`load` returns
``None`` and says why once, and callers fall back to torch ops.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "wavenet_cpu.c"
FLAGS = ["-O3", "-march=native", "-std=gnu11", "-fPIC", "-shared", "-fno-math-errno",
         "-fno-trapping-math"]

_i64, _f32p, _i64p = ctypes.c_int64, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int64)


class WnModel(ctypes.Structure):
    """Mirror of ``wn_model`` in the C source (field order and types must match)."""

    _fields_ = [
        *[(name, _i64) for name in ("batch", "layers", "k", "r", "g", "s", "n_out", "mulaw",
                                    "n_mix", "n_noise", "steps", "n_cond", "bf16")],
        ("log_scale_min", ctypes.c_float),
        *[(name, _i64p) for name in ("dil", "ring_len", "ring_off", "past_off")],
        *[(name, _f32p) for name in ("rings", "past", "w_taps", "w_res", "b_res", "w_skip",
                                     "b_skip", "w_h1", "b_h1", "w_h2", "b_h2", "w_in", "b_in",
                                     "w_cond", "b_cond", "z", "hidden", "hidden2")],
    ]


def enabled() -> bool:
    return os.environ.get("NEUROTTS_CPU_KERNEL", "1").strip().lower() not in ("0", "false", "no")


def has_bf16() -> bool:
    """Whether the kernel is available and was built with bfloat16 products (AVX512-BF16:
    AMD Zen 4, Intel Cooper Lake, Sapphire Rapids and later)."""
    lib = load()
    return lib is not None and bool(lib.wn_has_bf16())


def flags() -> list[str]:
    """Compiler flags: :data:`FLAGS`, then any in ``$NEUROTTS_CPU_KERNEL_CFLAGS``."""
    return FLAGS + shlex.split(os.environ.get("NEUROTTS_CPU_KERNEL_CFLAGS", ""))


def cache_dir() -> Path:
    if os.environ.get("NEUROTTS_CACHE_DIR"):
        return Path(os.environ["NEUROTTS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "neurotts"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_signature() -> str:
    """What identifies this CPU's instruction set: the model and flags lines on Linux."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "\n".join(sorted(set(keep)))
    except OSError:
        return platform.processor() + platform.machine()


def _build(compiler: str, target: Path) -> None:
    """Compile into a temporary file beside ``target``, then rename it into place, so a
    concurrent process never loads a half-written library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *flags(), str(SOURCE), "-o", tmp, "-lm"],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {SOURCE.name}: {proc.stderr.strip()[-800:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@cache
def load() -> ctypes.CDLL | None:
    """The compiled kernel, building it if needed; ``None`` when disabled or unavailable."""
    if not enabled():
        return None
    compiler = _compiler()
    if compiler is None:
        log.warning("no C compiler found ($CC, cc, gcc, clang): CPU WaveNet generation uses "
                    "torch ops (about 5x slower at batch 1)")
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
        key = hashlib.sha256("\0".join([SOURCE.read_text(), compiler, version, " ".join(flags()),
                                        _cpu_signature()]).encode()).hexdigest()[:16]
        target = cache_dir() / "kernels" / f"wavenet_cpu-{key}.so"
        if not target.exists():
            _build(compiler, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        log.warning("CPU WaveNet kernel unavailable, generation uses torch ops: %s", err)
        return None
    lib.wn_run.restype = ctypes.c_int
    lib.wn_run.argtypes = [ctypes.POINTER(WnModel), _i64, _i64, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.c_void_p, ctypes.c_void_p]
    lib.wn_pack.restype = None
    lib.wn_pack.argtypes = [_i64, _i64, ctypes.c_void_p, ctypes.c_void_p]
    lib.wn_gate.restype = None
    lib.wn_gate.argtypes = [_i64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.wn_gemm.restype = None
    lib.wn_gemm.argtypes = [_i64, ctypes.c_void_p, _i64, ctypes.c_void_p, _i64, ctypes.c_void_p,
                            _i64]
    lib.wn_pack_bf16.restype = None
    lib.wn_pack_bf16.argtypes = [_i64, _i64, ctypes.c_void_p, ctypes.c_void_p]
    lib.wn_has_bf16.restype = ctypes.c_int
    lib.wn_has_bf16.argtypes = []
    lib.wn_scratch_rows.restype = _i64
    lib.wn_scratch_rows.argtypes = [ctypes.POINTER(WnModel)]
    return lib
