"""The CPU kernels, built once with the system C compiler and loaded with ctypes.

kernels.c is the attention (one pass per query row; for scoring, the softmax between two
int8 GEMMs); step.c is a whole decoding step (embedding, layers, output head) in one
call, because eager PyTorch spends a decoding step in ~2,000 tiny operator calls. Both
compute the same integers as the PyTorch reference path (tests/test_kernels.py compares
them; the golden vectors pin both), so an archive never depends on which one ran.
Without a compiler the engine uses the reference path.

The shared library is cached under $XDG_CACHE_HOME/lmzip/kernels/, keyed by the sources,
the flags, the compiler and the CPU's feature flags (it is built for this CPU); a new
build deletes the others that have not been used for a month. It is
built with OpenMP where the compiler has it (the runtime torch itself loaded, libgomp),
else single-threaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import operator
import os
import platform
import shutil
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import torch

from lmzip.engine import numerics

SOURCES = [Path(__file__).with_name(name) for name in ("kernels.c", "step.c")]
# No -ffast-math (it reorders float operations); no FMA contraction (a*b+c must round twice).
# errno and trap flags only permit vectorizing and if-converting: values are unchanged.
FLAGS = [
    *("-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math"),
    *("-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"),
]
AVX2_MARCH = "-march=haswell"  # AVX2 and FMA, no AVX-512: the AVX2 paths on any x86-64 CPU that has them
TOP_KEYS = 8  # kernels.c TOP: room per row for the keys with attention weight >= 2**14 (at most 7)
UNUSED_DAYS = 30  # builds of other versions unused this long are deleted at the next build


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


def _build(cc: str, flags: list[str]) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    sources = "\n".join(src.read_text() for src in SOURCES)
    key = hashlib.sha256(
        "\n".join([sources, " ".join(flags), version, platform.machine(), _cpu_flags()]).encode()
    ).hexdigest()[:24]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmzip" / "kernels"
    target = base / f"kernels-{key}.so"
    if target.is_file():
        with contextlib.suppress(OSError):
            os.utime(target)  # its mtime says when it was last used (see _prune)
        return target
    base.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=base)
    os.close(fd)
    try:
        command = [cc, *flags, "-o", tmp, *map(str, SOURCES), "-lm"]
        try:
            subprocess.run([*command, "-fopenmp"], check=True, capture_output=True)
        except subprocess.CalledProcessError:  # no OpenMP (e.g. Apple clang): one thread, same integers
            subprocess.run(command, check=True, capture_output=True)
        os.replace(tmp, target)  # atomic: concurrent builders each install a complete file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _prune(base, keep=target)
    return target


def _prune(base: Path, keep: Path) -> None:
    """Delete the builds of other sources, flags or compilers not used for UNUSED_DAYS.

    A build happens when lmzip (or the compiler) changes, so that is when old ones pile
    up. A process still running an old build keeps its mapping; an old lmzip that needs
    its build again rebuilds it.
    """
    cutoff = time.time() - UNUSED_DAYS * 86400
    for old in base.glob("*.so"):
        with contextlib.suppress(OSError):
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink()


_errors: dict[tuple[bool, bool, bool], str] = {}  # (portable, profile, avx2) -> why library(...) is None


def build_error(portable: bool = False, build: bool = True, profile: bool = False) -> str | None:
    """Why the kernels are unavailable (one line), or None when they loaded or were turned
    off on purpose (LMZIP_NO_KERNELS); build=False: None too if no build was tried yet.
    The CLI reports it under -v; tests fail on it in CI (tests/strict.py)."""
    if build:
        library(portable, profile)
    return _errors.get((portable, profile, False))


def use_amx(want: bool) -> bool:
    """Turn step.c's AMX tile path on or off (it is on where the CPU has amx_int8 and the
    kernel grants tile state, unless LMZIP_AMX=0); returns whether it is now in use. Both
    paths give the same integers (tests/test_kernels.py); only the speed differs."""
    lib = library()
    return bool(lib.set_amx(int(want))) if lib is not None else False


PRODUCT_PATHS = ("plain C", "AVX2", "AVX-512 VNNI", "AMX")


def product_path() -> str:
    """The unit step.c's int8 products run on now (one of PRODUCT_PATHS), "none" without kernels."""
    lib = library()
    return PRODUCT_PATHS[lib.product_path()] if lib is not None else "none"


def amx_in_use() -> bool:
    """Whether step.c's products of a few rows or more run on AMX tiles now (use_amx)."""
    lib = library()
    return bool(lib.amx_in_use()) if lib is not None else False


@lru_cache(maxsize=4)
def library(portable: bool = False, profile: bool = False, avx2: bool = False) -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be built (then the reference path
    runs, with the same integers; build_error() says why).

    portable=True builds without -march=native: the plain C paths instead of the AVX-512
    ones, which tests compare with the reference (they must give the same integers).
    profile=True builds with -DLMZIP_PROFILE: step_rows also clocks its phases
    (step_profile; scripts/step_profile.py), the same integers otherwise.
    avx2=True builds for AVX2 without AVX-512 (AVX2_MARCH), the paths such a CPU runs,
    which tests compare too on a CPU that has AVX-512 (x86-64 CPUs with AVX2 only).
    """
    if os.environ.get("LMZIP_NO_KERNELS"):
        return None
    key = (portable, profile, avx2)
    cc = _compiler()
    if platform.system() not in ("Linux", "Darwin"):
        _errors[key] = f"no kernels for {platform.system()}"
        return None
    if cc is None:
        _errors[key] = "no C compiler (cc, gcc or clang; or set CC)"
        return None
    march = "" if portable else AVX2_MARCH if avx2 else "-march=native"
    flags = [march if f == "-march=native" else f for f in FLAGS if march or f != "-march=native"]
    flags += ["-DLMZIP_PROFILE"] if profile else []
    try:
        lib = ctypes.CDLL(str(_build(cc, flags)))
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        _errors[key] = f"{cc} failed (exit {e.returncode})" + (f": {detail[-1][:200]}" if detail else "")
        return None
    except OSError as e:
        _errors[key] = f"{cc}: {e}"
        return None
    i64, ptr, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
    lib.attend.argtypes = [i64] * 9 + [ptr, f32] + [ptr] * 10
    lib.attend.restype = None
    lib.weights.argtypes = [i64] * 5 + [ptr, f32] + [ptr] * 9
    lib.weights.restype = None
    lib.weighted_sum.argtypes = [i64] * 3 + [ptr] * 4 + [f32, ptr, i64]
    lib.weighted_sum.restype = None
    lib.token_bounds.argtypes = [i64] * 3 + [ptr, f32] + [ptr] * 5
    lib.token_bounds.restype = None
    lib.mixed_find.argtypes = [i64, i64, ptr, f32] + [ptr] * 10
    lib.mixed_find.restype = None
    f64 = ctypes.c_double
    lib.rows_rms_quantize.argtypes = [i64, i64, ptr, ptr, f64, i64, ptr, ptr]
    lib.rows_quantize.argtypes = [i64, i64, ptr, i64, ptr, ptr]
    lib.rows_combine.argtypes = [i64, i64, ptr, i64, ptr, ptr, ptr, ptr]
    lib.rows_gate_up.argtypes = [i64, i64, ptr, i64, ptr, ptr, ptr, ptr, f32, i64, i64, ptr, ptr]
    lib.rows_qkv.argtypes = [i64] * 4 + [ptr, i64] + [ptr] * 5 + [f32] + [ptr] * 6
    for name in (
        "rows_rms_quantize",
        "rows_quantize",
        "rows_combine",
        "rows_gate_up",
        "rows_qkv",
    ):
        getattr(lib, name).restype = None
    lib.step_rows.argtypes = [ctypes.POINTER(ModelStruct), i64] + [ptr] * 6
    lib.step_profile.argtypes = [ptr]
    lib.step_profile.restype = i64
    lib.step_rows.restype = ctypes.c_int
    lib.commit_vmax.argtypes = [ctypes.POINTER(ModelStruct), i64, ptr, ptr, i64, ptr]
    lib.commit_vmax.restype = None
    lib.linear_product.argtypes = [ptr, i64, ptr, ptr]
    lib.linear_product.restype = None
    lib.amx_product_count.restype = ctypes.c_int64
    lib.set_amx.argtypes = [ctypes.c_int]
    lib.set_amx.restype = ctypes.c_int
    lib.amx_in_use.restype = ctypes.c_int
    lib.set_amx(os.environ.get("LMZIP_AMX", "1") != "0")
    return lib


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

    One query per sequence (decoding): one C pass per query position. More (scoring): q.k
    and u.v as int8 GEMMs around the C weights; u < 2**17 enters the GEMM as two base-128
    digits of its low 14 bits, and its high part (at most 7 keys per row) is added in C,
    all recombined exactly in int32 (every partial sum stays below 2**24).
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
        out = torch.empty(b, t, kvh * group * d, dtype=torch.float32)
        ptrs = consts + [x.data_ptr() for x in (q, qsc, qpos, vmax, k, ks, v, vs, kpos, out)]
        lib.attend(b, kvh, group, t, n_keys, n_keys, d, window, bits, *ptrs)
        return out
    out = torch.empty(b, t, kvh, group, d, dtype=torch.float32)
    digits = torch.empty(2 * rows, n_keys, dtype=torch.int8)
    top = torch.empty(rows, TOP_KEYS, dtype=torch.int32)
    for i in range(b):
        for h in range(kvh):
            scores = int_mm(q[i, h], k[i, h])
            ptrs = [scores, qsc[i, h], qpos[i], vmax[i, h], ks[i, h], vs[i, h], kpos[i], digits, top]
            lib.weights(group, t, n_keys, window, bits, *consts, *(x.data_ptr() for x in ptrs))
            acc = int_mm(digits, v[i, h].t())
            ptrs = [acc, top, v[i, h], vmax[i, h]]
            lib.weighted_sum(
                group, t, d, *(x.data_ptr() for x in ptrs), *consts[1:], out[i, :, h].data_ptr(), kvh * group * d
            )
    return out.view(b, t, -1)


# Row operations of the scoring path (step.c): quantized activations come out as int8
# [M, K] (hi) then [M, K] (lo) when split, ready for torch._int_mm.


def _quantized(rows: int, width: int, split: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty((2 if split else 1) * rows, width, dtype=torch.int8), torch.empty(rows, 1)


def rms_quantize(x: torch.Tensor, weight: torch.Tensor, eps: float, split: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """model.rms_norm_quantized: (int8 rows, scale [M, 1])."""
    x = x.contiguous()
    q, scale = _quantized(*x.shape, split)
    library().rows_rms_quantize(*x.shape, x.data_ptr(), weight.data_ptr(), eps, split, q.data_ptr(), scale.data_ptr())
    return q, scale


def quantize(x: torch.Tensor, split: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """model.quantize_activation: (int8 rows, scale [M, 1])."""
    x = x.contiguous()
    q, scale = _quantized(*x.shape, split)
    library().rows_quantize(*x.shape, x.data_ptr(), split, q.data_ptr(), scale.data_ptr())
    return q, scale


def combine(acc: torch.Tensor, split: bool, x_scale: torch.Tensor, w_scale: torch.Tensor, bias) -> torch.Tensor:  # noqa: ANN001
    """model.linear after the product: acc [M or 2M, N] int32 -> float32 [M, N]."""
    acc = acc.contiguous()
    rows, n = acc.shape[0] // (2 if split else 1), acc.shape[1]
    y = torch.empty(rows, n)
    library().rows_combine(
        rows, n, acc.data_ptr(), split, x_scale.contiguous().data_ptr(), w_scale.data_ptr(),
        None if bias is None else bias.data_ptr(), y.data_ptr(),
    )  # fmt: skip
    return y


def gate_up(acc: torch.Tensor, x_scale: torch.Tensor, layer, table: torch.Tensor, split: bool):  # noqa: ANN001, ANN201
    """The gate_up product acc [M or 2M, 2I] -> model.linear's scaling, silu_times, and the
    down projection's quantized rows: (int8 rows, scale [M, 1])."""
    acc = acc.contiguous()
    rows, inter = x_scale.shape[0], acc.shape[1] // 2
    q, scale = _quantized(rows, inter, split)
    steps = numerics.SIGMOID_STEPS_PER_UNIT
    library().rows_gate_up(
        rows, inter, acc.data_ptr(), acc.shape[0] != rows, x_scale.contiguous().data_ptr(), layer.scale.data_ptr(),
        None if layer.bias is None else layer.bias.data_ptr(), table.data_ptr(), float(steps),
        numerics.SIGMOID_RANGE * steps, split, q.data_ptr(), scale.data_ptr(),
    )  # fmt: skip
    return q, scale


def qkv(acc, x_scale, layer, cos, sin, heads: int, kv_heads: int, score_unit: float):  # noqa: ANN001, ANN201
    """The qkv product acc [M or 2M, (H + 2 KVH) D] -> model.linear's scaling, RoPE (cos, sin
    [M, D/2]) and int8 rows per head: q [M, H, D] and q scale * score_unit [M, H], k and v
    [M, KVH, D] with their scales [M, KVH, 1]."""
    acc = acc.contiguous()
    rows = x_scale.shape[0]
    d = acc.shape[1] // (heads + 2 * kv_heads)
    q = torch.empty(rows, heads, d, dtype=torch.int8)
    k, v = (torch.empty(rows, kv_heads, d, dtype=torch.int8) for _ in range(2))
    qsc = torch.empty(rows, heads)
    ks, vs = torch.empty(rows, kv_heads, 1), torch.empty(rows, kv_heads, 1)
    cos, sin = cos.contiguous(), sin.contiguous()
    library().rows_qkv(
        rows, heads, kv_heads, d, acc.data_ptr(), acc.shape[0] != rows, x_scale.contiguous().data_ptr(),
        layer.scale.data_ptr(), None if layer.bias is None else layer.bias.data_ptr(), cos.data_ptr(), sin.data_ptr(),
        score_unit, q.data_ptr(), qsc.data_ptr(), k.data_ptr(), ks.data_ptr(), v.data_ptr(), vs.data_ptr(),
    )  # fmt: skip
    return q, qsc, k, ks, v, vs


def token_bounds(
    logits: torch.Tensor, tokens: torch.Tensor | None = None, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token, CF, f) per row of logits [M, V], the integers of frequencies.Frequencies: for the
    given tokens (coding), or for the tokens whose interval holds the targets (decoding)."""
    lib = library()
    assert lib is not None and (tokens is None) != (targets is None)
    logits = logits.float().contiguous()
    rows, vocab = logits.shape
    out = torch.empty(3, rows, dtype=torch.int64)
    if tokens is not None:
        out[0] = tokens
    given = (targets if targets is not None else out[0]).to(torch.int64).contiguous()
    coef = torch.tensor(numerics.EXP2_POLY, dtype=torch.float32)
    lib.token_bounds(
        rows, vocab, int(targets is not None), coef.data_ptr(), numerics.LOG2E_F32, logits.data_ptr(),
        given.data_ptr(), out[0].data_ptr(), out[1].data_ptr(), out[2].data_ptr(),
    )  # fmt: skip
    return out[0], out[1], out[2]


def mixed_find(
    logits: torch.Tensor,
    targets: torch.Tensor,
    spreads: torch.Tensor,
    starts: torch.Tensor,
    cand: torch.Tensor,
    boosts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token, mixed low, mixed f, model f) per row of logits [M, V] for the targets, with
    the model's table scaled to spreads[r] and candidates cand/boosts[starts[r]:starts[r + 1]]
    boosted (lmzip/memory.py): the integers of frequencies.mixed_find_reference."""
    lib = library()
    assert lib is not None
    logits = logits.float().contiguous()
    rows, vocab = logits.shape
    out = torch.empty(4, rows, dtype=torch.int64)
    args = [x.to(torch.int64).contiguous() for x in (targets, spreads, starts, cand, boosts)]
    coef = torch.tensor(numerics.EXP2_POLY, dtype=torch.float32)
    lib.mixed_find(
        rows, vocab, coef.data_ptr(), numerics.LOG2E_F32, logits.data_ptr(), *(a.data_ptr() for a in args),
        out[0].data_ptr(), out[1].data_ptr(), out[2].data_ptr(), out[3].data_ptr(),
    )  # fmt: skip
    return out[0], out[1], out[2], out[3]


# ---------------------------------------------------------------------------
# The decoding step (step.c): weights packed once, the cache used in place
# ---------------------------------------------------------------------------

i64, f32, f64, vp = ctypes.c_int64, ctypes.c_float, ctypes.c_double, ctypes.c_void_p


class LinearStruct(ctypes.Structure):
    _fields_ = [("packed", vp), ("wsum", vp), ("scale", vp), ("bias", vp), ("n", i64), ("k", i64), ("split", i64)]


class LayerStruct(ctypes.Structure):
    _fields_ = [
        *[(name, vp) for name in ("attn_norm", "mlp_norm")],
        *[(name, LinearStruct) for name in ("qkv", "o", "gate_up", "down")],
        *[(name, vp) for name in ("k", "v", "ks", "vs", "vmax")],
    ]


class ModelStruct(ctypes.Structure):
    _fields_ = [
        *[(name, i64) for name in ("hidden", "heads", "kv_heads", "head_dim", "inter", "vocab", "layers")],
        *[(name, i64) for name in ("window", "exp_bits", "batch", "ring")],
        ("eps", f64),
        *[(name, f32) for name in ("score_unit", "attn_mass", "sigmoid_steps")],
        ("sigmoid_offset", i64),
        *[(name, vp) for name in ("exp_coef", "sigmoid", "emb", "emb_scale", "final_norm", "cos", "sin")],
        ("head", LinearStruct),
        ("pos", vp),
        ("layer", ctypes.POINTER(LayerStruct)),
    ]


def pack_linear(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 [N, K] -> (VNNI blocks [N16/16, K/4, 16, 4], channel sums [N16]); N16 pads N to 16."""
    n, k = weight.shape
    padded = torch.zeros((n + 15) // 16 * 16, k, dtype=torch.int8)
    padded[:n] = weight
    packed = padded.view(-1, 16, k // 4, 4).permute(0, 2, 1, 3).contiguous()
    return packed, padded.sum(dim=1, dtype=torch.int32)


# step.c's phases, in its order (PHASE_QKV ... PHASE_OTHER), as step_profile reports them.
STEP_PHASES = (
    "qkv product", "o product", "gate_up product", "down product", "head product",
    "products -> float", "norms", "q/k/v rows", "attention", "o rows", "silu rows", "other",
)  # fmt: skip


def step_profile(lib: ctypes.CDLL) -> tuple[int, dict[str, float]]:
    """(step_rows calls, seconds per phase) since the last call, and start again; needs
    the kernels built with profile=True (else ValueError)."""
    if lib.step_profile_phases() != len(STEP_PHASES):
        raise ValueError("step.c and STEP_PHASES list different phases")
    seconds = (ctypes.c_double * len(STEP_PHASES))()
    steps = lib.step_profile(seconds)
    if steps < 0:
        raise ValueError("these kernels were built without LMZIP_PROFILE: library(profile=True)")
    return steps, dict(zip(STEP_PHASES, seconds, strict=True))


def amx_product_count() -> int:
    """How many linear-layer products this process ran on AMX tiles (tests: the path ran)."""
    lib = library()
    return int(lib.amx_product_count()) if lib is not None else 0


def linear_product(struct: LinearStruct, x: torch.Tensor) -> torch.Tensor:
    """x [M, K] int8 times the packed weights of ``struct`` transposed: exact int32 [M, N],
    through step.c's linear-layer product (the path in use: product_path())."""
    lib = library()
    assert lib is not None
    unsigned = torch.bitwise_xor(x.contiguous().view(torch.uint8), 0x80)  # the step's input side
    n16 = (struct.n + 15) // 16 * 16
    acc = torch.empty(x.shape[0], n16, dtype=torch.int32)
    lib.linear_product(ctypes.byref(struct), x.shape[0], unsigned.data_ptr(), acc.data_ptr())
    return acc if n16 == struct.n else acc[:, : struct.n].contiguous()


def int_product(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x [M, K] int8 times weight [N, K] int8 transposed, packed for this call (linear_product)."""
    packed, wsum = pack_linear(weight)
    n, k = weight.shape
    return linear_product(LinearStruct(packed.data_ptr(), wsum.data_ptr(), None, None, n, k, 0), x)


def int_mm(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """int8 [M, K] x int8 [N, K]^T -> exact int32 [M, N]: torch._int_mm, or step.c's
    product where torch's is a plain loop (product_path() "AVX2"; K padded to 4s)."""
    if product_path() != "AVX2":
        return torch._int_mm(a, b_t.t())
    if a.shape[1] % 4:
        pad = (0, 4 - a.shape[1] % 4)
        a, b_t = torch.nn.functional.pad(a, pad), torch.nn.functional.pad(b_t, pad)
    return int_product(b_t, a)


def step_supported(config) -> bool:  # noqa: ANN001
    """The C step handles any Llama shape whose layer inputs are whole groups of 4 bytes."""
    ins = (config.hidden_size, config.intermediate_size, config.num_heads * config.dim_per_head)
    return library() is not None and all(k % 4 == 0 for k in ins) and config.dim_per_head % 2 == 0


class StepKernel:
    """step.c for one ExactLlama: its weights packed once (about the int8 weights' size again)."""

    def __init__(self, model, split: frozenset[str], attn_mass: float, score_unit: float) -> None:  # noqa: ANN001
        cfg, w = model.config, model.w
        self.model = model
        self.keep: list[torch.Tensor] = []  # the packed weights the structs point into
        self._bound: tuple[torch.Tensor, ...] | None = None  # the cache tensors self.layers points at
        self.linears: dict[int, LinearStruct] = {}  # id(QLinear) -> its packed struct (product)

        def linear(layer, name: str) -> LinearStruct:  # noqa: ANN001  (a QLinear)
            packed, wsum = pack_linear(layer.weight)
            self.keep += [packed, wsum]
            n, k = layer.weight.shape
            bias = None if layer.bias is None else layer.bias.data_ptr()
            struct = LinearStruct(packed.data_ptr(), wsum.data_ptr(), layer.scale.data_ptr(), bias, n, k, name in split)
            self.linears[id(layer)] = struct
            return struct

        self.layers = (LayerStruct * cfg.num_layers)()
        for i, lw in enumerate(w.layers):
            self.layers[i] = LayerStruct(
                lw.attn_norm.data_ptr(),
                lw.mlp_norm.data_ptr(),
                *(linear(getattr(lw, name), name) for name in ("qkv", "o", "gate_up", "down")),
            )
        steps = numerics.SIGMOID_STEPS_PER_UNIT
        self.struct = ModelStruct(
            cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.dim_per_head, cfg.intermediate_size,
            cfg.vocab_size, cfg.num_layers, model.window, model.exp_bits, 0, 0, cfg.norm_eps,
            score_unit, attn_mass, float(steps), numerics.SIGMOID_RANGE * steps,
            model.exp_coef.data_ptr(), model.sigmoid.data_ptr(), w.embedding.weight.data_ptr(),
            w.embedding.scale.data_ptr(), w.final_norm.data_ptr(), 0, 0,
            linear(w.lm_head, "lm_head"), 0, self.layers,
        )  # fmt: skip

    def product(self, layer, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001  (a QLinear of the model)
        """x [M, K] int8 times the layer's weight transposed, on the weights packed here."""
        return linear_product(self.linears[id(layer)], x)

    def _bind(self, cache) -> ModelStruct:  # noqa: ANN001
        """The struct pointing at ``cache`` (its ring size included) and the current RoPE tables.
        The layers' pointers are set again only when the cache holds other tensors than at
        the last call (a decoder calls this twice a step with the same cache; under cProfile,
        decoding the first 16 KiB of alice29.txt spent 0.88 s in 8,811 calls setting the 150
        pointers every time, 0.13 s now)."""
        s = self.struct
        tensors = (*cache.k, *cache.v, *cache.k_scale, *cache.v_scale, *cache.vmax, cache.pos)
        bound = self._bound
        if bound is None or len(bound) != len(tensors) or not all(map(operator.is_, bound, tensors)):
            for i, layer in enumerate(self.layers):
                layer.k, layer.v = cache.k[i].data_ptr(), cache.v[i].data_ptr()
                layer.ks, layer.vs, layer.vmax = (
                    t.data_ptr() for t in (cache.k_scale[i], cache.v_scale[i], cache.vmax[i])
                )
            self._bound = tensors  # kept alive here, so an identical object is the same tensor
        s.batch, s.ring, s.pos = cache.pos.shape[0], cache.pos.shape[1], cache.pos.data_ptr()
        s.cos, s.sin = self.model.cos.data_ptr(), self.model.sin.data_ptr()  # grown by the caller
        return s

    def run_rows(self, cache, slots: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor, logits: bool):  # noqa: ANN001, ANN201
        """(hidden [M, H], logits [M, V] or None, row_vmax [layers, M, KVH]) for M rows: row r
        appends tokens[r] at positions[r] to cache row slots[r] (step.c step_rows). The
        cache's vmax stays as it was until ``commit``."""
        cfg = self.model.config
        s = self._bind(cache)
        slots, tokens, positions = (t.to(torch.int64).contiguous() for t in (slots, tokens, positions))
        rows = tokens.shape[0]
        hidden = torch.empty(rows, cfg.hidden_size)
        out = torch.empty(rows, cfg.vocab_size) if logits else None
        row_vmax = torch.empty(cfg.num_layers, rows, cfg.num_kv_heads)
        status = library().step_rows(  # type: ignore[union-attr]
            ctypes.byref(s), rows, slots.data_ptr(), tokens.data_ptr(), positions.data_ptr(), hidden.data_ptr(),
            None if out is None else out.data_ptr(), row_vmax.data_ptr(),
        )  # fmt: skip
        if status != 0:
            raise MemoryError("out of memory in the decoding step")
        return hidden, out, row_vmax

    def commit(self, cache, slots: torch.Tensor, rows: torch.Tensor, row_vmax: torch.Tensor) -> None:  # noqa: ANN001
        """Cache row slots[i] keeps the value-scale maximum after row rows[i] of the last run_rows."""
        s = self._bind(cache)
        slots, rows = slots.to(torch.int64).contiguous(), rows.to(torch.int64).contiguous()
        library().commit_vmax(  # type: ignore[union-attr]
            ctypes.byref(s), slots.shape[0], slots.data_ptr(), rows.data_ptr(), row_vmax.shape[1], row_vmax.data_ptr()
        )

    def run(self, cache, tokens: torch.Tensor, positions: torch.Tensor, logits: bool):  # noqa: ANN001, ANN201
        """(hidden [B, H], logits [B, V] or None) after one step of every cache row (cache updated)."""
        slots = torch.arange(cache.pos.shape[0])
        hidden, out, row_vmax = self.run_rows(cache, slots, tokens, positions, logits)
        self.commit(cache, slots, slots, row_vmax)
        return hidden, out
