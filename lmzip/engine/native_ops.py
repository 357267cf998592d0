"""The forward pass's row operations on this CPU's kernels (kernels.c, step.c).

Each method gives exactly the integers of its reference in model.ReferenceOps, in fewer
passes over memory: a product's scaling, RoPE and quantization in one C pass, attention
without float GEMMs, the coder's intervals without whole-row tables, and a whole
decoding step in one call. ExactLlama picks these or the reference once (kernels="c" or
"torch"); tests/test_kernels.py compares the two on every path the machine can run.
"""

from __future__ import annotations

import torch

from lmzip.engine import kernels as native
from lmzip.engine.model import (
    ATTN_MASS,
    SPLIT,
    Activation,
    ExactLlama,
    LayerWeights,
    QLinear,
    ReferenceOps,
    score_unit,
)

# On a CPU with AVX2 and no AVX-512, torch._int_mm is a plain loop (9-35x slower than
# step.c's AVX2 product: `python scripts/product_speed.py`), so every product goes
# to step.c there, packed once (native.product_path()).
# Scoring's products go to step.c's AMX tiles (on the weights the decoding step packs)
# where the CPU has them, once TILES_AFTER rows have entered the first layer (a token is
# two rows with the 15-bit split): packing costs 0.2-0.3 s, which the tiles win back
# over about 2,000 tokens (`python scripts/amx_speed.py --scoring` prints both), so small
# inputs never pack.
# Layers of more than TILE_MAX_INPUTS inputs (down: 1,536) stay on torch._int_mm, which
# is faster there. Measured with `python scripts/amx_speed.py --scoring` (2-core Xeon:
# qkv, o, gate_up and the head 1.2-1.5x faster, down 1.4x slower). Same integers either way.
TILES_AFTER = 4096  # rows: about 2,000 tokens
TILE_MAX_INPUTS = 1024


class NativeOps(ReferenceOps):
    def __init__(self, model: ExactLlama) -> None:
        super().__init__(model)
        self._step: native.StepKernel | None = None  # packed on first use
        self._rows = 0  # product rows so far, before the tiles take over (TILES_AFTER)

    def product(self, x: torch.Tensor, layer: QLinear) -> torch.Tensor:
        """As ReferenceOps.product; on step.c's packed weights where that is faster: on a
        CPU with AVX2 only, every product (torch's int8 GEMM is a plain loop there), and
        on AMX tiles (see TILES_AFTER)."""
        path = native.product_path()
        if path == "AVX2" and (step := self.step_kernel()) is not None:
            return step.product(layer, x)
        if x.shape[1] <= TILE_MAX_INPUTS and path == "AMX":
            if self._rows >= TILES_AFTER and (step := self.step_kernel()) is not None:
                return step.product(layer, x)
            if layer is self.model.w.layers[0].qkv:
                self._rows += x.shape[0]
        return super().product(x, layer)

    def rms_quantized(self, x: torch.Tensor, weight: torch.Tensor, split: bool) -> Activation:
        q, scale = native.rms_quantize(x, weight, self.config.norm_eps, split)
        return Activation(None, None, scale, q)

    def quantized(self, x: torch.Tensor, split: bool) -> Activation:
        q, scale = native.quantize(x, split)
        return Activation(None, None, scale, q)

    def queries_keys_values(self, lw: LayerWeights, act: Activation, rope, b: int, t: int):  # noqa: ANN001, ANN201
        """One C pass after the product: scaling, RoPE, quantization."""
        h, kvh, d = self.config.num_heads, self.config.num_kv_heads, self.config.dim_per_head
        acc = self.product(act.packed, lw.qkv)
        cos, sin = (r.reshape(b * t, -1) for r in rope)
        q, qsc, k, ks, v, vs = native.qkv(acc, act.scale, lw.qkv, cos, sin, h, kvh, score_unit(d))
        return (
            q.view(b, t, h, d),
            qsc.view(b, t, h),
            k.view(b, t, kvh, d),
            ks.view(b, t, kvh, 1),
            v.view(b, t, kvh, d),
            vs.view(b, t, kvh, 1),
        )

    def mlp_inner(self, lw: LayerWeights, act: Activation) -> Activation:
        """One C pass after the gate_up product."""
        acc = self.product(act.packed, lw.gate_up)
        q, scale = native.gate_up(acc, act.scale, lw.gate_up, self.model.sigmoid, "down" in SPLIT)
        return Activation(None, None, scale, q)

    def attention(self, q_q, qsc, k_all, k_scale, v_all, v_scale, vmax, qpos, kpos, causal_tail):  # noqa: ANN001, ANN201
        """As ReferenceOps.attention (kernels.c attend; the causal tail is in the positions)."""
        b, t, h, d = q_q.shape
        kvh = self.config.num_kv_heads
        group = h // kvh
        m = self.model
        return native.attend(
            q_q.to(torch.int8).view(b, t, kvh, group, d).permute(0, 2, 3, 1, 4).reshape(b, kvh, group * t, d),
            qsc.view(b, t, kvh, group).permute(0, 2, 3, 1).reshape(b, kvh, -1),
            qpos,
            vmax[..., 0],
            k_all,
            k_scale[:, :, 0],
            v_all,
            v_scale[:, :, 0],
            kpos,
            m.window,
            m.exp_bits,
            m.exp_coef,
            ATTN_MASS,
        )

    def bounds(self, logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return native.token_bounds(logits, tokens=tokens)[1:]

    def find(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return native.token_bounds(logits, targets=targets)

    def mixed_find(self, logits, targets, spreads, starts, cand, boosts):  # noqa: ANN001, ANN201
        return native.mixed_find(logits, targets, spreads, starts, cand, boosts)

    def step_kernel(self) -> native.StepKernel | None:
        """The C decoding step where step.c handles the model's shape, packed on first use."""
        if self._step is None and native.step_supported(self.config):
            self._step = native.StepKernel(self.model, SPLIT, ATTN_MASS, score_unit(self.config.dim_per_head))
        return self._step
