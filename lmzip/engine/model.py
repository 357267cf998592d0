"""A Llama-family transformer in exact integer arithmetic (see numerics.py for the rules).

One forward function serves both paths: ``prefill`` runs whole sequences from position
0, ``step`` appends one token per sequence to a KV cache. Every per-token quantity is
computed row by row and attention only ever sees keys at positions <= the query's, so
a sequence's integers never depend on the batch, the padding or the path taken.

Weights are int8 with one scale per output channel; activations are quantized per
token (15 bits, as two int8 halves) right before each matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from lmzip.engine import kernels as native
from lmzip.engine import numerics
from lmzip.engine.frequencies import frequencies, mixed_find_reference

INT8_MAX = 127
# Attention weights are integers whose sum stays below 2**17, so that sum(u * v) over
# any number of keys with |v| <= 127 stays below 2**24 and is exact in fp32.
ATTN_MASS = float(2**17 - 2**8)
ROPE_GROWTH = 1024  # positions added to the RoPE tables at a time
QUERY_BLOCK = 64  # prefill attention works on blocks of this many queries (measured)
# Inputs of these projections get 15-bit activations; the others int8 (measured in docs/benchmarks.md).
SPLIT = frozenset({"qkv", "gate_up", "down", "lm_head"})


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    rope_theta: float
    norm_eps: float
    qkv_bias: bool = False
    head_dim: int = 0  # as converted: 0 = hidden_size // num_heads (use dim_per_head)

    # The fields are hashed into the model identity as they are (loader.model_hash), so
    # head_dim keeps its 0 and the derived size has a name of its own.
    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QLinear:
    """int8 weight [out, in] with a float32 scale per output channel (and optional bias)."""

    weight: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None = None

    @staticmethod
    def quantize(w: torch.Tensor, bias: torch.Tensor | None = None) -> QLinear:
        """Canonical int8 quantization of a float weight [out, in], round half to even."""
        w = w.float()
        amax = w.abs().amax(dim=1)
        amax = torch.where(amax > 0, amax, torch.ones_like(amax))
        scale = amax / torch.full_like(amax, INT8_MAX)
        q = (w / scale[:, None]).round_().clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
        return QLinear(q.contiguous(), scale.contiguous(), None if bias is None else bias.float().contiguous())


@dataclass
class LayerWeights:
    attn_norm: torch.Tensor
    qkv: QLinear
    o: QLinear
    mlp_norm: torch.Tensor
    gate_up: QLinear
    down: QLinear


@dataclass
class ModelWeights:
    config: LlamaConfig
    embedding: QLinear  # [vocab, hidden]; also the output head (tied)
    layers: list[LayerWeights]
    final_norm: torch.Tensor
    lm_head: QLinear  # may be the embedding itself


# ---------------------------------------------------------------------------
# Exact building blocks
# ---------------------------------------------------------------------------


def _int_matmul_intmm(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """int8 [M, K] x int8 [N, K]^T -> int32 [M, N] with torch._int_mm (exact)."""
    m = a.shape[0]
    if a.is_cuda and m <= 16:  # cuBLASLt int8 GEMM needs more than 16 rows
        pad = torch.zeros(17 - m, a.shape[1], dtype=a.dtype, device=a.device)
        return torch._int_mm(torch.cat([a, pad]), b_t.t())[:m]
    return torch._int_mm(a, b_t.t())


def _int_matmul_fp32(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """The same integers through fp32 GEMMs on K-slices of <= 1024 (partial sums < 2**24)."""
    out = None
    for k0 in range(0, a.shape[1], numerics.FP32_EXACT_K):
        part = a[:, k0 : k0 + numerics.FP32_EXACT_K].float() @ b_t[:, k0 : k0 + numerics.FP32_EXACT_K].float().t()
        part = part.to(torch.int32)
        out = part if out is None else out.add_(part)
    assert out is not None
    return out


BACKENDS = {"int_mm": _int_matmul_intmm, "fp32": _int_matmul_fp32}


def _row_amax(x: torch.Tensor) -> torch.Tensor:
    """max |x| per row, 1 for all-zero rows (exact: max does not depend on order)."""
    amax = x.abs().amax(dim=-1, keepdim=True)
    return torch.where(amax > 0, amax, torch.ones_like(amax))


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8 quantization: x ~= q * scale, |q| <= 127."""
    act = quantize_activation(x, split=False)
    return act.hi, act.scale


def rms_norm_quantized(x: torch.Tensor, weight: torch.Tensor, eps: float, split: bool = True) -> Activation:
    """RMSNorm(x) * weight, returned already quantized for the next linear layer.

    The sum of squares runs on a 15-bit integer image of x in float64, which is exact
    (|x_q| < 2**15, 2**30 * 8192 < 2**53), so no float reduction order matters.
    """
    amax = _row_amax(x)
    fine = (x * (torch.full_like(amax, 32767.0) / amax)).round_().double()
    mean_sq = (fine * fine).sum(dim=-1, keepdim=True) / torch.full_like(amax, x.shape[-1], dtype=torch.float64)
    # rms(x) = sqrt(mean_sq) * amax / 32767 ; add eps in the same units
    unit = amax.double() / torch.full_like(amax, 32767.0, dtype=torch.float64)
    rms = torch.sqrt(mean_sq + torch.full_like(mean_sq, eps) / (unit * unit)) * unit
    act = quantize_activation(x * weight, split)
    act.scale = (act.scale.double() / rms).float()
    return act


@dataclass
class Activation:
    """Per-row 15-bit activations as two int8 halves: x ~= (256 * hi + lo) * scale.

    int8 activations alone cost ~1.1% in bits per byte (outlier channels after RMSNorm
    leave the rest coarse); with two int8 products the gap to float is 0.2% (docs/benchmarks.md).
    """

    hi: torch.Tensor | None  # int8 values held in float32, |hi| <= 127
    lo: torch.Tensor | None  # |lo| <= 128, clamped to the int8 range; None = int8 only
    scale: torch.Tensor  # [M, 1]
    packed: torch.Tensor | None = None  # from the C row kernels: int8 [M, K] hi, then [M, K] lo if split


def quantize_activation(x: torch.Tensor, split: bool = True) -> Activation:
    """15-bit (two int8 halves) or plain int8 (lo = None) per-row quantization."""
    amax = _row_amax(x)
    full = float(INT8_MAX * 256) if split else float(INT8_MAX)
    q = (x * (torch.full_like(amax, full) / amax)).round_()
    scale = amax / torch.full_like(amax, full)
    if not split:
        return Activation(q.clamp_(-INT8_MAX, INT8_MAX), None, scale)
    hi = q.mul(1.0 / 256).round_()
    lo = q.sub_(hi * 256.0).clamp_(-INT8_MAX - 1, INT8_MAX)  # lo = +128 (a half-even tie) becomes 127
    return Activation(hi, lo, scale)


Product = Callable[[torch.Tensor, "QLinear"], torch.Tensor]  # int8 [M, K], layer -> exact int32 [M, N]


def linear(x: Activation, layer: QLinear, product: Product) -> torch.Tensor:
    """x @ W^T (+ bias) as float32. Both halves go through one exact int8 product; they
    are then combined and scaled with correctly rounded float32 operations."""
    if x.packed is not None:  # the C row kernels made it: they also finish the layer
        split = x.packed.shape[0] != x.scale.shape[0]
        return native.combine(product(x.packed, layer), split, x.scale, layer.scale, layer.bias)
    assert x.hi is not None
    if x.lo is None:
        y = product(x.hi.to(torch.int8), layer).float()
    else:
        m = x.hi.shape[0]
        acc = product(torch.cat([x.hi, x.lo]).to(torch.int8), layer)
        y = acc[:m].float().mul_(256.0).add_(acc[m:].float())
    y.mul_(x.scale).mul_(layer.scale)
    if layer.bias is not None:
        y.add_(layer.bias)
    return y


def silu_times(gate: torch.Tensor, up: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up with sigmoid from the deterministic table (numerics.sigmoid_table)."""
    steps = numerics.SIGMOID_STEPS_PER_UNIT
    offset = numerics.SIGMOID_RANGE * steps
    idx = (gate * steps).round_().add_(offset).clamp_(0, 2 * offset).long()
    return table[idx].mul_(gate).mul_(up)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (2i, 2i+1) of x [..., T, heads, dim] by cos/sin [..., T, 1, dim/2]."""
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


# ---------------------------------------------------------------------------
# KV cache and the forward pass
# ---------------------------------------------------------------------------


def ring_slot(positions: torch.Tensor, ring: int) -> torch.Tensor:
    """Cache slot of each position: 0 keeps position 0 (the sink), 1.. cycle over the last ring - 1.

    ring is the cache's size: the window, plus slack where the decoder verifies proposed
    tokens (those rows write up to slack positions ahead of what every row still sees).
    Which keys a query sees is decided by positions (``attends``), never by the ring."""
    return torch.where(positions == 0, torch.zeros_like(positions), 1 + (positions - 1) % (ring - 1))


def attends(qpos: torch.Tensor, kpos: torch.Tensor, window: int) -> torch.Tensor:
    """Which keys a query sees: position 0 (the attention sink) and the last window - 1
    positions up to its own (kpos = -1 marks an empty cache slot). Broadcasts."""
    recent = (kpos > qpos - (window - 1)) | (kpos == 0)
    return recent & (kpos <= qpos) & (kpos >= 0)


@dataclass
class KVCache:
    """Per layer, a ring of ``window`` (+ slack) slots per sequence: int8 keys and values
    with per-(token, head) scales; ``pos`` is the position each slot holds.

    ``vmax`` is the running maximum of all value scales so far, an upper bound on the
    scales of the keys attended, which bounds the attention weights (numerics in _attend).
    """

    k: list[torch.Tensor]  # [B, kvh, W, D] int8
    k_scale: list[torch.Tensor]  # [B, kvh, 1, W]
    v: list[torch.Tensor]  # [B, kvh, W, D] int8
    v_scale: list[torch.Tensor]  # [B, kvh, 1, W]
    vmax: list[torch.Tensor]  # [B, kvh, 1, 1]
    pos: torch.Tensor  # [B, W] int64, -1 = empty

    @staticmethod
    def empty(config: LlamaConfig, batch: int, ring: int, device: torch.device) -> KVCache:
        kvh, d = config.num_kv_heads, config.dim_per_head

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
            return [torch.zeros(*shape, dtype=dtype, device=device) for _ in range(config.num_layers)]

        return KVCache(
            zeros(batch, kvh, ring, d, dtype=torch.int8),
            zeros(batch, kvh, 1, ring),
            zeros(batch, kvh, ring, d, dtype=torch.int8),
            zeros(batch, kvh, 1, ring),
            zeros(batch, kvh, 1, 1),
            torch.full((batch, ring), -1, dtype=torch.long, device=device),
        )

    def fields(self) -> tuple[list[torch.Tensor], ...]:
        return self.k, self.k_scale, self.v, self.v_scale, self.vmax

    def first(self, rows: int) -> KVCache:
        """The cache of the first ``rows`` sequences: views, so writes go to this cache too."""
        return KVCache(*([t[:rows] for t in field] for field in self.fields()), self.pos[:rows])


# ---------------------------------------------------------------------------
# The row operations: the PyTorch reference (native_ops.NativeOps: the same integers in C)
# ---------------------------------------------------------------------------


def score_unit(d: int) -> float:
    """log2(e) / sqrt(d): one fixed double (sqrt is correctly rounded), rounded to float32 by torch."""
    return numerics.LOG2E_F32 / math.sqrt(d)


class ReferenceOps:
    """What a forward pass does between its matrix products, and the coder's intervals
    from logits, in plain PyTorch on any device. This is the definition: the CPU kernels
    (native_ops.NativeOps, chosen once by ExactLlama) override every method with the same
    integers, and the tests compare the two."""

    def __init__(self, model: ExactLlama) -> None:
        self.model = model
        self.config = model.config

    # -- products and activations ---------------------------------------------

    def product(self, x: torch.Tensor, layer: QLinear) -> torch.Tensor:
        """x [M, K] int8 times the layer's weight transposed: exact int32 [M, N]."""
        return BACKENDS[self.model.backend](x, layer.weight)

    def rms_quantized(self, x: torch.Tensor, weight: torch.Tensor, split: bool) -> Activation:
        return rms_norm_quantized(x, weight, self.config.norm_eps, split)

    def quantized(self, x: torch.Tensor, split: bool) -> Activation:
        return quantize_activation(x, split)

    def queries_keys_values(self, lw: LayerWeights, act: Activation, rope, b: int, t: int):  # noqa: ANN001, ANN201
        """The layer's queries, keys and values from its normed input ``act``: RoPE applied,
        int8 per (token, head) with their scales; the query scales already times
        log2(e) / sqrt(D). Shapes: q [B, T, H, D], qsc [B, T, H], k and v int8 [B, T, KVH, D],
        their scales [B, T, KVH, 1]."""
        h, kvh, d = self.config.num_heads, self.config.num_kv_heads, self.config.dim_per_head
        qkv = linear(act, lw.qkv, self.product)
        q = qkv[:, : h * d].view(b, t, h, d)
        k = qkv[:, h * d : (h + kvh) * d].view(b, t, kvh, d)
        v = qkv[:, (h + kvh) * d :].view(b, t, kvh, d)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q_q, q_s = quantize_rows(q)  # per (token, head)
        k_q, k_s = quantize_rows(k)
        v_q, v_s = quantize_rows(v)
        return q_q, q_s[..., 0] * score_unit(d), k_q.to(torch.int8), k_s, v_q.to(torch.int8), v_s

    def mlp_inner(self, lw: LayerWeights, act: Activation) -> Activation:
        """gate_up product, silu(gate) * up, quantized for the down projection."""
        gu = linear(act, lw.gate_up, self.product)
        inter = self.config.intermediate_size
        return quantize_activation(silu_times(gu[:, :inter], gu[:, inter:], self.model.sigmoid), "down" in SPLIT)

    # -- attention ----------------------------------------------------------

    def attention(
        self,
        q_q: torch.Tensor,  # [B, T, H, D] int8 queries (rotated), as int8 or as float32 integers
        qsc: torch.Tensor,  # [B, T, H] their scales times log2(e) / sqrt(D)
        k_all: torch.Tensor,  # [B, kvh, L, D] int-valued
        k_scale: torch.Tensor,  # [B, kvh, 1, L]
        v_all: torch.Tensor,  # [B, kvh, L, D]
        v_scale: torch.Tensor,  # [B, kvh, 1, L]
        vmax: torch.Tensor,  # [B, kvh, T, 1] bound on the v scales each query sees
        qpos: torch.Tensor,  # [B, T] positions of the queries
        kpos: torch.Tensor,  # [B, L] positions of the keys (-1 = empty)
        causal_tail: int,  # the last causal_tail keys are the T queries' own, in order
    ) -> torch.Tensor:
        """Attention output [B, T, H * D] float32."""
        b, t, h, d = q_q.shape
        kvh = self.config.num_kv_heads
        group = h // kvh
        n_keys = k_all.shape[2]
        window = self.model.window
        k_all, v_all = k_all.float(), v_all.float()  # int8 values: exact in float32 GEMMs
        # [B, kvh, group, T, D]: query heads of one kv head side by side
        q_q = q_q.float().view(b, t, kvh, group, d).permute(0, 2, 3, 1, 4)
        qsc = qsc.view(b, t, kvh, group, 1).permute(0, 2, 3, 1, 4)
        out = torch.empty(b, kvh, group, t, d, device=q_q.device)
        # Causal tiling: a block of queries never sees the new keys after its last query.
        for t0 in range(0, t, QUERY_BLOCK):
            t1 = min(t, t0 + QUERY_BLOCK)
            keys = n_keys - causal_tail + t1 if causal_tail else n_keys
            rows = group * (t1 - t0)
            out[:, :, :, t0:t1] = self._attend(
                q_q[:, :, :, t0:t1].reshape(b, kvh, rows, d),
                qsc[:, :, :, t0:t1].reshape(b, kvh, rows, 1),
                k_all[:, :, :keys],
                k_scale[..., :keys],
                v_all[:, :, :keys],
                v_scale[..., :keys],
                vmax[:, :, t0:t1].unsqueeze(2).expand(b, kvh, group, t1 - t0, 1).reshape(b, kvh, rows, 1),
                attends(
                    qpos[:, None, None, t0:t1, None].expand(b, 1, group, t1 - t0, 1).reshape(b, 1, rows, 1),
                    kpos[:, None, None, :keys],
                    window,
                ),
            ).view(b, kvh, group, t1 - t0, d)
        return out.permute(0, 3, 1, 2, 4).reshape(b, t, h * d)

    def _attend(self, q_q, qsc, k, k_scale, v, v_scale, vmax, visible) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v for one block of queries [B, kvh, R, D], exactly."""
        scores = torch.matmul(q_q, k.transpose(-1, -2))  # exact: |sum| <= D * 127**2 < 2**24
        # logit = dot * (s_q / sqrt(d)) * s_k, each product correctly rounded
        # (in log2 units: the exp below is 2**-x, so log2(e) joins the query scale)
        scores.mul_(qsc).mul_(k_scale)
        scores.masked_fill_(~visible, float("-inf"))
        peak = scores.amax(dim=-1, keepdim=True)
        e = numerics.exp2_neg_scaled(scores.neg_().add_(peak), self.model.exp_bits)  # hidden keys: exactly 0
        mass = e.sum(dim=-1, keepdim=True)  # exact: window * 2**bits <= 2**24
        # u_j = floor(e_j * s_vj * c) with c = MASS / (mass * vmax)  =>  sum_j u_j < 2**17
        c = torch.full_like(vmax, ATTN_MASS, dtype=torch.float64) / (mass.double() * vmax.double())
        u = e.mul_(v_scale).mul_(c.float()).floor_()
        out = torch.matmul(u, v)  # exact: sum u * |v| < 2**17 * 127 < 2**24
        return out.mul_(vmax / torch.full_like(vmax, ATTN_MASS))

    # -- logits -> the coder's intervals (frequencies.py) -----------------

    def bounds(self, logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CF, f) of one token per row of logits [M, V] (coding)."""
        return frequencies(logits).bounds(tokens)

    def find(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, CF, f) per row with CF(token) <= target < CF(token + 1) (decoding)."""
        return frequencies(logits).find(targets)

    def mixed_find(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        spreads: torch.Tensor,
        starts: torch.Tensor,
        cand: torch.Tensor,
        boosts: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, mixed CF, mixed f, model f) per row, the model's table mixed with boosts (lmzip/memory.py)."""
        return mixed_find_reference(frequencies(logits), targets, spreads, starts, cand, boosts)

    # -- the whole decoding step --------------------------------------------

    def step_kernel(self) -> native.StepKernel | None:
        """A decoding step in one call (step.c), where these operations have one: not here."""
        return None


class ExactLlama:
    """Forward passes of an int8 Llama; identical integers on every path and device.

    Attention is a sliding window with a sink: the query at position p sees position 0
    and positions p - window + 2 .. p. ``extend`` runs T new tokens of every sequence
    (from a shared start position) against its cache; ``step`` runs one token per
    sequence at its own position. Both write the ring cache, and both compute each
    token's keys and values from exactly the same context, so their integers agree.
    """

    def __init__(
        self,
        weights: ModelWeights,
        window: int,
        backend: str = "int_mm",
        device: str = "cpu",
        kernels: str | None = None,
    ):
        if window < 2:
            raise ValueError("the window must hold at least 2 tokens")
        self.w = weights
        self.config = weights.config
        self.window = window
        self.backend = backend
        self.device = torch.device(device)
        self.cos = self.sin = torch.zeros(0)
        self._grow_rope(window)
        self.exp_bits = numerics.attention_exp_bits(window)  # e <= 2**bits, window * 2**bits <= 2**24
        self.sigmoid = numerics.sigmoid_table().to(self.device)
        # "c": the CPU kernels (native_ops.NativeOps: kernels.c, step.c); "torch": the
        # reference (ReferenceOps), on any device. The same integers either way.
        if kernels is None:
            kernels = "c" if self.device.type == "cpu" and native.library() is not None else "torch"
        if kernels not in ("c", "torch") or (kernels == "c" and self.device.type != "cpu"):
            raise ValueError(f"kernels {kernels!r} are not available on {self.device.type}")
        self.kernels = kernels
        self.exp_coef = torch.tensor(numerics.EXP2_POLY, dtype=torch.float32)
        self.ops: ReferenceOps
        if kernels == "c":
            from lmzip.engine.native_ops import NativeOps  # it builds on this module's reference

            self.ops = NativeOps(self)
        else:
            self.ops = ReferenceOps(self)

    def _grow_rope(self, positions: int) -> None:
        """cos/sin tables for at least ``positions`` positions (entries never depend on the size)."""
        if positions > self.cos.shape[0]:
            size = -(-positions // ROPE_GROWTH) * ROPE_GROWTH
            table = numerics.rope_table(self.config.rope_theta, self.config.dim_per_head)
            cos, sin = table.grow(size)
            self.cos, self.sin = cos.to(self.device), sin.to(self.device)

    # -- one layer --------------------------------------------------------

    def _layer(
        self,
        i: int,
        x: torch.Tensor,  # [B, T, hidden]
        positions: torch.Tensor,  # [B, T]
        rope: tuple[torch.Tensor, torch.Tensor],  # cos, sin at the positions [B, T, 1, D/2]
        cache: KVCache,
        write: tuple[torch.Tensor, torch.Tensor],  # step: (row, ring slot); extend: (new index, ring slot)
        kpos: torch.Tensor,  # [B, L] positions of the keys attended: n_cached cache slots, then (extend) the new
        n_cached: int,
    ) -> torch.Tensor:
        cfg, lw = self.config, self.w.layers[i]
        b, t, hid = x.shape
        h, d = cfg.num_heads, cfg.dim_per_head
        ops = self.ops
        normed = ops.rms_quantized(x.reshape(b * t, hid), lw.attn_norm, "qkv" in SPLIT)
        q_q, qsc, k_q, k_s, v_q, v_s = ops.queries_keys_values(lw, normed, rope, b, t)
        k_q, v_q = k_q.transpose(1, 2), v_q.transpose(1, 2)  # [B, kvh, T, D]
        k_s, v_s = k_s.permute(0, 2, 3, 1), v_s.permute(0, 2, 3, 1)  # [B, kvh, 1, T]
        # running max of value scales, continued from the cache: [B, kvh, T, 1]
        vmax = torch.cummax(torch.cat([cache.vmax[i][..., 0], v_s.squeeze(2)], dim=-1), dim=-1).values
        vmax = vmax[..., 1:].unsqueeze(-1)
        ck, cks, cv, cvs = cache.k[i], cache.k_scale[i], cache.v[i], cache.v_scale[i]
        if t == 1:  # step: write first, then attend over the ring (the slot written held a key out of reach)
            rows, at = write
            ck[rows, :, at], cks[rows, :, 0, at] = k_q[:, :, 0], k_s[:, :, 0, 0]
            cv[rows, :, at], cvs[rows, :, 0, at] = v_q[:, :, 0], v_s[:, :, 0, 0]
            n = n_cached
            keys = (ck[:, :, :n], cks[..., :n], cv[:, :, :n], cvs[..., :n])
            attn = ops.attention(q_q, qsc, *keys, vmax, positions, kpos, 0)
        else:  # extend: the cached keys (if any), then the new ones; the ring is written afterwards
            keys = (k_q, k_s, v_q, v_s)
            if n_cached:
                keys = (
                    torch.cat([ck, k_q], 2),
                    torch.cat([cks, k_s], 3),
                    torch.cat([cv, v_q], 2),
                    torch.cat([cvs, v_s], 3),
                )
            attn = ops.attention(q_q, qsc, *keys, vmax, positions, kpos, t)
            sel, at = write
            ck[:, :, at], cks[:, :, :, at] = k_q[:, :, sel], k_s[..., sel]
            cv[:, :, at], cvs[:, :, :, at] = v_q[:, :, sel], v_s[..., sel]
        cache.vmax[i] = vmax[:, :, -1:]
        attn_act = ops.quantized(attn.reshape(b * t, h * d), "o" in SPLIT)
        x = x + linear(attn_act, lw.o, ops.product).view(b, t, hid)
        flat = x.reshape(b * t, hid)
        act = ops.mlp_inner(lw, ops.rms_quantized(flat, lw.mlp_norm, "gate_up" in SPLIT))
        return x + linear(act, lw.down, ops.product).view(b, t, hid)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        emb = self.w.embedding
        return emb.weight[tokens].float().mul_(emb.scale[tokens].unsqueeze(-1))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        act = self.ops.rms_quantized(x, self.w.final_norm, "lm_head" in SPLIT)
        return linear(act, self.w.lm_head, self.ops.product)

    # -- public paths ---------------------------------------------------------

    def empty_cache(self, batch: int, slack: int = 0) -> KVCache:
        """A cache for ``batch`` sequences; ``slack`` extra ring entries let step_rows run
        up to slack + 1 rows per sequence (speculative verification)."""
        return KVCache.empty(self.config, batch, self.window + slack, self.device)

    def extend(self, tokens: torch.Tensor, start: int, cache: KVCache) -> torch.Tensor:
        """Hidden states [B, T, hidden] of tokens at positions start.. of every sequence."""
        b, t = tokens.shape
        positions = torch.arange(start, start + t, device=self.device).expand(b, t)
        return self._forward(tokens, positions, cache)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Hidden states [B, hidden] after appending tokens [B] at positions [B]."""
        kernel = self.ops.step_kernel()
        if kernel is not None:
            self._grow_rope(int(positions.max()) + 1)
            return kernel.run(cache, tokens, positions, logits=False)[0]
        b = tokens.shape[0]
        return self._forward(tokens.view(b, 1), positions.view(b, 1), cache)[:, 0]

    def step_logits(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Output logits [B, vocab] after appending tokens [B] at positions [B] (decoding)."""
        kernel = self.ops.step_kernel()
        if kernel is None:
            return self.logits(self.step(tokens, positions, cache))
        self._grow_rope(int(positions.max()) + 1)
        return kernel.run(cache, tokens, positions, logits=True)[1]

    def step_rows(
        self, slots: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [M, vocab], row_vmax) for M rows, row r appending tokens[r] at positions[r]
        to cache row slots[r]; a cache row's rows are consecutive at consecutive positions,
        at most the cache's slack + 1 of them. Each row's logits are those of single steps
        up to it. The cache keeps every row's keys and values; ``commit`` then says which
        row of each cache row was the last one kept (later positions are overwritten by
        the next rows written there before any query sees them). C kernels only."""
        kernel = self.ops.step_kernel()
        assert kernel is not None, "step_rows needs the C step (speculative_rows() > 0)"
        self._grow_rope(int(positions.max()) + 1)
        _, logits, row_vmax = kernel.run_rows(cache, slots, tokens, positions, logits=True)
        return logits, row_vmax

    def commit(self, cache: KVCache, slots: torch.Tensor, rows: torch.Tensor, row_vmax: torch.Tensor) -> None:
        """After step_rows: cache row slots[i] continues from row rows[i]."""
        kernel = self.ops.step_kernel()
        assert kernel is not None
        kernel.commit(cache, slots, rows, row_vmax)

    def speculative_rows(self) -> bool:
        """Whether step_rows is available (the C step)."""
        return self.ops.step_kernel() is not None

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        self._grow_rope(int(positions.max()) + 1)
        rope = (self.cos[positions].unsqueeze(2), self.sin[positions].unsqueeze(2))  # once, not per layer
        ring = cache.pos.shape[1]
        if positions.shape[1] == 1:  # step: one slot per row, written before attending
            write = (torch.arange(positions.shape[0], device=self.device), ring_slot(positions[:, 0], ring))
            cache.pos[write] = positions[:, 0]
            n_cached = min(ring, int(positions.max()) + 1)  # slots fill in order until the ring wraps
            kpos = cache.pos[:, :n_cached]
        else:  # extend (all rows share the positions): only position 0 and the last window - 1 stay
            n_cached = ring if bool((cache.pos >= 0).any()) else 0
            kpos = torch.cat([cache.pos, positions], 1) if n_cached else positions  # before the write below
            first = positions[0]
            sel = ((first == 0) | (first > first[-1] - (self.window - 1))).nonzero()[:, 0]
            write = (sel, ring_slot(first[sel], ring))  # distinct slots
            cache.pos[:, write[1]] = positions[:, sel]
        x = self._embed(tokens)
        for i in range(self.config.num_layers):
            x = self._layer(i, x, positions, rope, cache, write, kpos, n_cached)
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._logits(hidden.reshape(-1, self.config.hidden_size))

    # -- logits -> the coder's intervals (frequencies.py; the ops' kernels give the same) --

    def bounds(self, logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CF, f) of one token per row of logits [M, V] (coding)."""
        return self.ops.bounds(logits, tokens)

    def find(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, CF, f) per row with CF(token) <= target < CF(token + 1) (decoding)."""
        return self.ops.find(logits, targets)

    def mixed_find(self, logits, targets, spreads, starts, cand, boosts):  # noqa: ANN001, ANN201
        """(token, mixed CF, mixed f, model f) per row, the model's table mixed with boosts (lmzip/memory.py)."""
        return self.ops.mixed_find(logits, targets, spreads, starts, cand, boosts)
