"""The CPU attention kernel (kernels.c): built once with the system C compiler, loaded with ctypes.

Eager PyTorch spends most of the attention time in ~25 elementwise passes over the
score matrix and in thousands of tiny batched matmuls when decoding; the C kernel makes
one pass per query row. It computes the same integers as the PyTorch reference path
(tests/test_kernels.py compares them; the golden vectors pin both), so an archive never
depends on which one ran. Without a compiler the engine uses the reference path.

The shared library is cached under $XDG_CACHE_HOME/lmzip/kernels/, keyed by the source,
the flags, the compiler and the CPU's feature flags (it is built for this CPU).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("kernels.c")
# No -ffast-math (it reorders float operations); no FMA contraction (a*b+c must round twice).
# errno and trap flags only permit vectorizing and if-converting: values are unchanged.
FLAGS = [
    *("-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math"),
    *("-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"),
]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\n".join([SOURCE.read_text(), " ".join(FLAGS), version, platform.machine(), _cpu_flags()]).encode()
    ).hexdigest()[:24]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmzip" / "kernels"
    target = base / f"attention-{key}.so"
    if target.is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=base)
    os.close(fd)
    try:
        subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], check=True, capture_output=True)
        os.replace(tmp, target)  # atomic: concurrent builders each install a complete file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it cannot be built (then the reference path runs)."""
    if os.environ.get("LMZIP_NO_KERNELS"):
        return None
    cc = _compiler()
    if cc is None or platform.system() != "Linux" and platform.system() != "Darwin":
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except (OSError, subprocess.CalledProcessError):
        return None
    i64, ptr, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
    lib.attend.argtypes = [i64] * 9 + [ptr, f32] + [ptr] * 10
    lib.attend.restype = None
    lib.weights.argtypes = [i64] * 7 + [ptr, f32] + [ptr] * 8
    lib.weights.restype = None
    return lib


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="lmzip-attn")


def _parallel(fn, total: int, min_per_thread: int = 16) -> None:
    """fn(lo, hi) over [0, total) split across the torch thread count (ctypes drops the GIL)."""
    threads = max(1, min(torch.get_num_threads(), total // min_per_thread))
    if threads == 1:
        fn(0, total)
        return
    bounds = [total * i // threads for i in range(threads + 1)]
    for f in [_pool().submit(fn, bounds[i], bounds[i + 1]) for i in range(threads)]:
        f.result()


def attend(
    q: torch.Tensor,  # [B, KVH, G*T, D] int8, rows ordered (g, t)
    qsc: torch.Tensor,  # [B, KVH, G*T] float32: query scale * log2(e) / sqrt(D)
    qpos: torch.Tensor,  # [B, T] int64
    vmax: torch.Tensor,  # [B, KVH, T] float32
    k: torch.Tensor,  # [B, KVH, L, D] int8
    ks: torch.Tensor,  # [B, KVH, L] float32
    v: torch.Tensor,  # [B, KVH, L, D] int8
    vs: torch.Tensor,  # [B, KVH, L] float32
    kpos: torch.Tensor,  # [B, L] int64
    window: int,
    bits: int,
    coef: torch.Tensor,  # the 4 exp2 polynomial coefficients, float32
    mass: float,
) -> torch.Tensor:
    """Attention output [B, T, KVH * G * D] float32, the integers of ExactLlama._attend.

    One query per sequence (decoding): one C pass per query row. More (scoring): q.k and
    u.v as int8 GEMMs around the C weights; u < 2**17 enters the GEMM as three base-128
    digits, recombined exactly in int32 (every partial sum stays below L * 127 * 127).
    """
    lib = library()
    assert lib is not None
    b, kvh, rows, d = q.shape
    t = qpos.shape[1]
    group = rows // t
    n_keys = k.shape[2]
    q, qsc, qpos, vmax, k, ks, v, vs, kpos = (x.contiguous() for x in (q, qsc, qpos, vmax, k, ks, v, vs, kpos))
    consts = [coef.data_ptr(), ctypes.c_float(mass)]
    if t == 1:
        out = torch.empty(b, t, kvh * rows * d, dtype=torch.float32)
        ptrs = consts + [x.data_ptr() for x in (q, qsc, qpos, vmax, k, ks, v, vs, kpos, out)]
        _parallel(lambda lo, hi: lib.attend(lo, hi, kvh, group, t, n_keys, d, window, bits, *ptrs), b * kvh * rows)
        return out
    out = torch.empty(b, t, kvh, group, d, dtype=torch.float32)
    digits = torch.empty(3 * rows, n_keys, dtype=torch.int8)
    unit = vmax / torch.full_like(vmax, mass)  # as the reference: one float32 division
    for i in range(b):
        for h in range(kvh):
            scores = torch._int_mm(q[i, h], k[i, h].t()).contiguous()
            ptrs = [scores, qsc[i, h], qpos[i], vmax[i, h], ks[i, h], vs[i, h], kpos[i], digits]
            lib.weights(0, rows, group, t, n_keys, window, bits, *consts, *(x.data_ptr() for x in ptrs))
            acc = torch._int_mm(digits, v[i, h]).view(3, rows, d)
            acc = acc[2].mul(128).add_(acc[1]).mul_(128).add_(acc[0])  # exact: < 2**24
            res = acc.float().view(group, t, d).mul_(unit[i, h].view(1, t, 1))
            out[i, :, h] = res.transpose(0, 1)
    return out.view(b, t, -1)
