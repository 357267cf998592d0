"""The C attention kernel (lmzip/engine/kernels.c) gives the integers of the PyTorch reference.

Both attention implementations must agree bit for bit: archives made with one decode
with the other (CUDA always runs the reference). Checked on the engine level (tiny
model: one extend, segmented scoring, lock-step decoding) and on the kernel level with
random inputs that cover hidden keys, ring wrap-around and the sink.
"""

from __future__ import annotations

import pytest
import torch
from test_engine import (  # noqa: F401  (one_thread and tiny are fixtures)
    WINDOW,
    assert_rows_equal,
    assert_scores_equal,
    decode_rows,
    one_thread,
    tiny,
)

from lmzip.engine import kernels
from lmzip.engine.engine import Engine
from lmzip.engine.model import ExactLlama

pytestmark = pytest.mark.skipif(kernels.library() is None, reason="no C compiler: the reference path runs alone")


def test_cpu_engine_uses_the_kernel(tiny):  # noqa: F811
    assert tiny.engine.model.kernels == "c"


@pytest.mark.parametrize("segment", [5, 24, 64])
def test_engine_kernel_equals_reference(tiny, segment):  # noqa: F811
    ref = Engine(tiny.loaded, window=WINDOW, segment=segment, kernels="torch")
    fast = Engine(tiny.loaded, window=WINDOW, segment=segment, kernels="c")
    seqs = tiny.sequences(5, seed=40 + segment)
    for s in seqs:
        assert_rows_equal(fast.frequencies_for(s), ref.frequencies_for(s), "kernel vs reference, one extend")
    assert_scores_equal(fast.score(seqs), ref.score(seqs))
    decoded = zip(decode_rows(fast, seqs, 3, seed=segment), decode_rows(ref, seqs, 3, seed=segment), strict=True)
    for got, want in decoded:
        assert_rows_equal(got, want, "kernel vs reference, lock-step decoding")


def _random_attention_inputs(gen: torch.Generator, b: int, t: int, n_keys: int, window: int, d: int):
    kvh, group = 2, 3
    q = torch.randn(b, t, kvh * group, d, generator=gen) * 3
    k = torch.randint(-127, 128, (b, kvh, n_keys, d), generator=gen, dtype=torch.int8)
    v = torch.randint(-127, 128, (b, kvh, n_keys, d), generator=gen, dtype=torch.int8)
    k_scale = torch.rand(b, kvh, 1, n_keys, generator=gen) * 0.05
    v_scale = torch.rand(b, kvh, 1, n_keys, generator=gen) + 0.01
    vmax = torch.full((b, kvh, t, 1), 1.02)
    # keys: a ring of arbitrary old positions (some empty, some out of reach) then t new ones
    last = 3 * window
    qpos = torch.arange(last - t + 1, last + 1).expand(b, t).contiguous()
    ring = torch.randint(-1, last - t + 1, (b, n_keys - t), generator=gen)
    ring[:, 0] = 0  # the sink
    kpos = torch.cat([ring, qpos], dim=1)
    return q, k, k_scale, v, v_scale, vmax, qpos, kpos


@pytest.mark.parametrize("t", [1, 7, 70])
@pytest.mark.parametrize("d", [16, 64, 128])  # 64 and 128 take the vectorized dot products where built
def test_kernels_equal_reference_on_random_inputs(tiny, t, d):  # noqa: F811
    """Raw kernel vs reference on random scores, hidden keys and ring positions."""
    gen = torch.Generator().manual_seed(t)
    model = tiny.engine.model
    window = 40
    for b in (1, 3):
        # 60 + t keys: whole blocks of 16 and a ragged tail
        q, k, ks, v, vs, vmax, qpos, kpos = _random_attention_inputs(gen, b, t, 60 + t, window, d)
        outs = {}
        for attention in ("torch", "c"):
            m = ExactLlama.__new__(ExactLlama)
            m.__dict__.update(model.__dict__)
            m.config = type(model.config)(**{**model.config.to_dict(), "num_heads": 6, "num_kv_heads": 2})
            m.window, m.exp_bits, m.kernels = window, 18, attention
            outs[attention] = m._attention(q, k, ks, v, vs, vmax, qpos, kpos, t)
        assert outs["c"].dtype == torch.float32
        assert torch.equal(outs["c"], outs["torch"]), f"b={b} t={t}: {(outs['c'] != outs['torch']).sum()} values differ"


def test_no_kernels_falls_back_to_reference(monkeypatch, tiny):  # noqa: F811
    seq = tiny.text_ids[:50]
    want = tiny.rows(seq)
    monkeypatch.setenv("LMZIP_NO_KERNELS", "1")
    kernels.library.cache_clear()
    try:
        engine = Engine(tiny.loaded, window=WINDOW)
        assert engine.model.kernels == "torch"
        assert_rows_equal(engine.frequencies_for(seq), want, "reference path vs kernel path")
    finally:
        monkeypatch.delenv("LMZIP_NO_KERNELS")
        kernels.library.cache_clear()
    assert kernels.library() is not None
