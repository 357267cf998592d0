"""Exact, platform-independent numerics for the LM engine.

Every value that reaches the range coder must be identical on every machine, batch
size, thread count and device. The rules this module follows:

* Matrix products are integer products: int8 x int8 -> int32 with ``torch._int_mm``,
  or fp32 GEMMs whose inputs are small integers so that every partial sum stays below
  2**24 and is therefore exact in any summation order.
* Reductions are either order-independent (max) or run on integers (sums).
* Elementwise float work uses only single, correctly rounded IEEE operations
  (+ - * / sqrt, rounding, comparisons), each as its own kernel: no FMA, no fusion.
* Transcendentals never come from libm, SLEEF or CUDA intrinsics: sigmoid and cos/sin
  are lookup tables computed here with exact integer arithmetic (Python ints); exp is
  a fixed float32 polynomial on a range-reduced argument with an exact power of two.

Bump NUMERICS_VERSION whenever anything here or in model.py changes the integers.
"""

from __future__ import annotations

from functools import lru_cache

import torch

NUMERICS_VERSION = 4

FREQ_BITS = 24  # frequency tables sum to exactly 2**FREQ_BITS
SIGMOID_STEPS_PER_UNIT = 256
SIGMOID_RANGE = 16  # sigmoid table covers [-16, 16]; beyond that it saturates
SIGMOID_SCALE_BITS = 24
FP32_EXACT_K = 1024  # int8 x int8 dot products over <= 1024 terms stay below 2**24

# ---------------------------------------------------------------------------
# Deterministic transcendental tables, from exact fixed-point integer arithmetic.
# ---------------------------------------------------------------------------

_FIX = 96  # working precision in bits for the table generators


def _fix_exp_neg(x_num: int, x_den: int) -> int:
    """round(2**_FIX * exp(-x_num/x_den)) for x >= 0, by range reduction and Taylor series."""
    one = 1 << _FIX
    # exp(-x) = exp(-x / 2**s) ** (2**s) with x / 2**s < 1/2.
    s = 0
    while x_num > x_den * (1 << s) // 2:
        s += 1
    y = -((x_num << _FIX) // (x_den << s))  # -x / 2**s in fixed point
    term, total, n = one, one, 1
    while term != 0:
        term = term * y // (one * n)
        total += term
        n += 1
    for _ in range(s):
        total = total * total >> _FIX
    return total


def _fix_cos_sin(theta_num: int, theta_den: int) -> tuple[int, int]:
    """(cos, sin) of theta in [0, 1] as 2**_FIX fixed point, by Taylor series."""
    one = 1 << _FIX
    x = (theta_num << _FIX) // theta_den
    cos, sin = 0, 0
    term, n = one, 0  # term = x**n / n!
    while term != 0:
        sign = -1 if (n // 2) % 2 else 1
        if n % 2 == 0:
            cos += sign * term
        else:
            sin += sign * term
        n += 1
        term = term * x // (one * n)
    return cos, sin


def _round_shift(value: int, shift: int) -> int:
    return (value + (1 << (shift - 1))) >> shift


# 2**-f on [0, 1) by a fixed degree-3 polynomial (relative error < 1.4e-4, which costs
# ~1e-8 bits per token), Horner form. The constants are part of the numerics: any
# machine evaluating them with IEEE float32 multiply and add, each rounded on its own,
# gets the same bits.
EXP2_POLY = (
    float.fromhex("0x1.ffee22p-1"),
    float.fromhex("-0x1.61a202p-1"),
    float.fromhex("0x1.d65ca6p-3"),
    float.fromhex("-0x1.3ec378p-5"),
)
LOG2E_F32 = float.fromhex("0x1.715476p+0")


def exp2_neg_scaled(y: torch.Tensor, bits: int) -> torch.Tensor:
    """round(2**bits * 2**-y) for y >= 0 (+inf allowed -> 0), as float32 integers. Overwrites y.

    Range reduction 2**-(n + f) with an exact power of two built from its bit pattern, so
    no gather, no libm and no int64 copies are needed on this hot path.
    """
    y = y.clamp_(max=float(bits + 2))  # beyond: the result rounds to 0
    n = y.floor()
    f = y.sub_(n)  # exact, in [0, 1)
    c0, c1, c2, c3 = EXP2_POLY
    p = f * c3
    p.add_(c2).mul_(f).add_(c1).mul_(f).add_(c0)
    power = n.to(torch.int32).neg_().add_(127 + bits).bitwise_left_shift_(23).view(torch.float32)
    return p.mul_(power).round_()  # 2**(bits - n) is exact; n <= bits + 2 keeps it normal


def attention_exp_bits(window: int) -> int:
    """Scale of the attention exp table: window * 2**bits <= 2**24, so fp32 sums stay exact."""
    return 24 - max(0, (window - 1).bit_length())


@lru_cache(maxsize=None)
def sigmoid_table() -> torch.Tensor:
    """float32 table of sigmoid(i/256 - 16) rounded to 2**-24 (exactly representable)."""
    one = 1 << _FIX
    n = 2 * SIGMOID_RANGE * SIGMOID_STEPS_PER_UNIT
    values = []
    for i in range(n + 1):
        x = i - SIGMOID_RANGE * SIGMOID_STEPS_PER_UNIT  # x / 256
        e = _fix_exp_neg(abs(x), SIGMOID_STEPS_PER_UNIT)  # exp(-|x|)
        s = (one << _FIX) // (one + e)  # sigmoid(|x|)
        if x < 0:
            s = one - s
        values.append(_round_shift(s, _FIX - SIGMOID_SCALE_BITS))
    return torch.tensor(values, dtype=torch.float64).div_(1 << SIGMOID_SCALE_BITS).float()


def _fix_ln_ratio(z: int) -> int:
    """2 atanh(z) = ln((1 + z) / (1 - z)) in fixed point, for a fixed-point 0 <= z < 1/2."""
    z2 = z * z >> _FIX
    term, total, n = z, 0, 1
    while term != 0:
        total += term // n
        term = term * z2 >> _FIX
        n += 2
    return 2 * total


def _fix_pow_neg(base: float, exponent_num: int, exponent_den: int) -> int:
    """2**_FIX * base**(-num/den) via exp(-(num/den) * ln(base)), on the float's exact value."""
    b_num, b_den = float(base).as_integer_ratio()
    one = 1 << _FIX
    # ln(b) = ln(m) + k ln 2 with m in [1, 2); ln(m) = 2 atanh((m-1)/(m+1)), ln 2 = 2 atanh(1/3)
    k = 0
    while b_num >= 2 * b_den:
        b_den *= 2
        k += 1
    ln_m = _fix_ln_ratio(((b_num - b_den) << _FIX) // (b_num + b_den))
    ln_b = ln_m + k * _fix_ln_ratio(one // 3)
    x = ln_b * exponent_num // exponent_den  # fixed-point exponent, >= 0
    return _fix_exp_neg(x, one)


class RopeTable:
    """float32 (cos, sin) tables [positions, head_dim // 2] for RoPE, exact to the last bit.

    Frequency i rotates by theta**(-2i/head_dim) radians per position. cos/sin of one
    step come from an integer Taylor series; later positions from exact fixed-point
    angle addition (error ~positions * 2**-96, far below float32's last bit). The table
    grows on demand from its fixed-point state, so growing never recomputes a row and a
    row never depends on the table's size.
    """

    def __init__(self, theta: float, head_dim: int) -> None:
        one = 1 << _FIX
        half = head_dim // 2
        # per frequency: (cos, sin) of one step, and of the next position to append
        self._steps = [_fix_cos_sin(_fix_pow_neg(theta, 2 * i, head_dim), one) for i in range(half)]
        self._next = [(one, 0)] * half
        self.cos = self.sin = torch.zeros(0, half)

    def grow(self, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) with at least ``positions`` rows."""
        count = positions - self.cos.shape[0]
        if count <= 0:
            return self.cos, self.sin
        cos_cols, sin_cols = [], []
        for i, ((c1, s1), (c, s)) in enumerate(zip(self._steps, self._next, strict=True)):
            cs, ss = [], []
            for _ in range(count):
                cs.append(_round_shift(c, _FIX - 52))
                ss.append(_round_shift(s, _FIX - 52))
                c, s = (c * c1 - s * s1) >> _FIX, (s * c1 + c * s1) >> _FIX
            self._next[i] = (c, s)
            cos_cols.append(cs)
            sin_cols.append(ss)
        # |values| <= 2**52: exact in float64, then one correctly rounded step to float32
        unit = float(1 << 52)
        cos = torch.tensor(cos_cols, dtype=torch.float64).t().div_(unit).float()
        sin = torch.tensor(sin_cols, dtype=torch.float64).t().div_(unit).float()
        self.cos = torch.cat([self.cos, cos]).contiguous()
        self.sin = torch.cat([self.sin, sin]).contiguous()
        return self.cos, self.sin


@lru_cache(maxsize=None)
def rope_table(theta: float, head_dim: int) -> RopeTable:
    """The process's one growing RoPE table for (theta, head_dim): models share its rows."""
    return RopeTable(theta, head_dim)
