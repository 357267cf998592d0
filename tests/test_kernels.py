"""The C attention kernel (lmzip/engine/kernels.c) gives the integers of the PyTorch reference.

Both attention implementations must agree bit for bit: archives made with one decode
with the other (CUDA always runs the reference). Checked on the engine level (tiny
model: one extend, segmented scoring, lock-step decoding) and on the kernel level with
random inputs that cover hidden keys, ring wrap-around and the sink.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
from strict import missing
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
from lmzip.engine.frequencies import frequencies
from lmzip.engine.model import ExactLlama, ReferenceOps, quantize_rows, score_unit
from lmzip.engine.native_ops import NativeOps

# A build that fails is reported: the reason is in the skip, which fails under LMZIP_STRICT=1
# (CI), so a suite green on the reference path alone never hides broken kernels.
pytestmark = pytest.mark.skipif(
    kernels.library() is None,
    reason=missing(f"C kernels did not build ({kernels.build_error()})")
    if kernels.build_error()
    else "kernels turned off (LMZIP_NO_KERNELS)",
)


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


def _random_attention_inputs(
    gen: torch.Generator, b: int, t: int, n_keys: int, window: int, d: int, peaked: bool = False
):
    kvh, group = 2, 3
    q = torch.randn(b, t, kvh * group, d, generator=gen) * 3
    k = torch.randint(-127, 128, (b, kvh, n_keys, d), generator=gen, dtype=torch.int8)
    v = torch.randint(-127, 128, (b, kvh, n_keys, d), generator=gen, dtype=torch.int8)
    k_scale = torch.rand(b, kvh, 1, n_keys, generator=gen) * 0.05
    v_scale = torch.rand(b, kvh, 1, n_keys, generator=gen) + 0.01
    if peaked:  # the sink and the first 6 new keys take all the weight: u >= 2**14 (kernels.c top)
        q = q.abs()
        for j in [0, *range(n_keys - t, n_keys - t + min(t, 6))]:
            k[:, :, j], k_scale[..., j], v_scale[..., j] = 127, 1.0, 1.01
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
@pytest.mark.parametrize("peaked", [False, True])
def test_kernels_equal_reference_on_random_inputs(tiny, t, d, peaked):  # noqa: F811
    """Raw kernel vs reference on random scores, hidden keys and ring positions; peaked:
    a few keys take all the weight (attention weights >= 2**14, the sparse high part)."""
    gen = torch.Generator().manual_seed(t)
    model = tiny.engine.model
    window = 40
    for b in (1, 3):
        # 60 + t keys: whole blocks of 16 and a ragged tail
        q, k, ks, v, vs, vmax, qpos, kpos = _random_attention_inputs(gen, b, t, 60 + t, window, d, peaked)
        outs = {}
        for name, ops in (("torch", ReferenceOps), ("c", NativeOps)):
            m = ExactLlama.__new__(ExactLlama)
            m.__dict__.update(model.__dict__)
            m.config = type(model.config)(**{**model.config.to_dict(), "num_heads": 6, "num_kv_heads": 2})
            m.window, m.exp_bits = window, 18
            q_q, q_s = quantize_rows(q)  # as the layer does: int8 per (token, head)
            qsc = q_s[..., 0] * score_unit(d)
            outs[name] = ops(m).attention(q_q, qsc, k, ks, v, vs, vmax, qpos, kpos, t)
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


def _reference_intervals(logits: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor):
    freqs = frequencies(logits)
    return freqs.bounds(tokens), freqs.find(targets)


def _check_intervals(logits: torch.Tensor, gen: torch.Generator) -> None:
    rows, vocab = logits.shape
    tokens = torch.randint(0, vocab, (rows,), generator=gen)
    tokens[0], tokens[-1] = 0, vocab - 1  # the first and the last token (which takes the remainder)
    cf = frequencies(logits).table().cumsum(1)
    # targets on interval edges: 0, the last value, a token's first and last value, random
    targets = torch.randint(0, 1 << 24, (rows,), generator=gen)
    targets[0], targets[-1] = 0, (1 << 24) - 1
    if rows > 3:
        targets[1] = cf[1, tokens[1]] - 1  # the last value of tokens[1]'s interval
        targets[2] = cf[2, tokens[2] - 1] if tokens[2] > 0 else 0  # the first value of tokens[2]'s
    (want_low, want_f), (want_tok, want_tlow, want_tf) = _reference_intervals(logits, tokens, targets)
    _, low, f = kernels.token_bounds(logits, tokens=tokens)
    assert torch.equal(low, want_low) and torch.equal(f, want_f), "coding intervals differ"
    tok, tlow, tf = kernels.token_bounds(logits, targets=targets)
    assert torch.equal(tok, want_tok) and torch.equal(tlow, want_tlow) and torch.equal(tf, want_tf)


def test_token_bounds_equal_reference():
    """The C intervals (coding and decoding) are frequencies.Frequencies' integers."""
    gen = torch.Generator().manual_seed(5)
    for vocab in (400, 49152):
        logits = torch.randn(6, vocab, generator=gen) * 4
        logits[1] = 0.0  # a flat row: every token gets about the same share
        logits[2, 7] = 1e4  # one token takes almost everything: the rest get the floor of 1
        logits[3] = torch.linspace(-80, 30, vocab)  # exp underflows to 0 for most tokens
        _check_intervals(logits, gen)


def test_token_bounds_on_real_rows(tiny):  # noqa: F811
    gen = torch.Generator().manual_seed(6)
    model = tiny.engine.model
    seq = tiny.text_ids[:40]
    hidden = model.extend(tiny.engine._inputs([seq]), 0, model.empty_cache(1))[0]
    _check_intervals(model.logits(hidden), gen)


@pytest.fixture
def portable(monkeypatch):
    """The kernels built without -march=native (plain C instead of AVX-512) in place of the native ones."""
    lib = kernels.library(portable=True)
    assert lib is not None
    monkeypatch.setattr(kernels, "library", lambda portable=False: lib)
    return lib


def test_portable_kernels_equal_reference(tiny, portable):  # noqa: F811
    ref = Engine(tiny.loaded, window=WINDOW, kernels="torch")
    plain = Engine(tiny.loaded, window=WINDOW, kernels="c")
    seqs = tiny.sequences(4, seed=77)
    assert_scores_equal(plain.score(seqs), ref.score(seqs))
    for got, want in zip(decode_rows(plain, seqs, 3, seed=1), decode_rows(ref, seqs, 3, seed=1), strict=True):
        assert_rows_equal(got, want, "portable kernels vs reference, lock-step decoding")
    _check_intervals(torch.randn(5, 49152, generator=torch.Generator().manual_seed(8)) * 5, torch.Generator())


@pytest.mark.parametrize("t", [1, 70])
def test_portable_attention_equals_reference(tiny, portable, t):  # noqa: F811
    for peaked in (False, True):
        test_kernels_equal_reference_on_random_inputs(tiny, t, 64, peaked)


@pytest.fixture
def avx2(monkeypatch):
    """The kernels built for AVX2 without AVX-512 (kernels.AVX2_MARCH) in place of the
    native ones: the paths of an x86-64 CPU with AVX2 only, on any CPU with AVX2."""
    if "avx2" not in kernels._cpu_flags().split():
        pytest.skip("this CPU has no AVX2: its native and plain C paths are tested instead")
    lib = kernels.library(avx2=True)
    assert lib is not None, kernels.build_error()
    monkeypatch.setattr(kernels, "library", lambda portable=False, profile=False, avx2=False: lib)
    assert kernels.product_path() == "AVX2"
    return lib


@pytest.mark.parametrize("n, k", [(16, 64), (48, 128), (400, 576), (37, 1536)])
def test_avx2_linear_product_is_exact(avx2, n, k):
    """The AVX2 product (16-bit pairs; two rows a tile) equals the exact integer product,
    extremes included (-128 x -128 everywhere would saturate vpmaddubsw)."""
    gen = torch.Generator().manual_seed(n * k)
    weight = torch.randint(-128, 128, (n, k), generator=gen, dtype=torch.int8)
    for m in (1, 2, 3, 5, 17, 70):
        x = torch.randint(-128, 128, (m, k), generator=gen, dtype=torch.int8)
        want = (x.to(torch.int64) @ weight.to(torch.int64).T).to(torch.int32)
        assert torch.equal(kernels.int_product(weight, x), want), f"{m} x {k} x {n} product (avx2)"
    for value in (-128, 127):
        w, x = torch.full((n, k), value, dtype=torch.int8), torch.full((3, k), value, dtype=torch.int8)
        assert torch.equal(kernels.int_product(w, x), (x.to(torch.int64) @ w.to(torch.int64).T).to(torch.int32))
    odd = torch.randint(-128, 128, (5, 70), generator=gen, dtype=torch.int8)  # K not a multiple of 4
    other = torch.randint(-128, 128, (9, 70), generator=gen, dtype=torch.int8)
    assert torch.equal(kernels.int_mm(odd, other), (odd.to(torch.int64) @ other.to(torch.int64).T).to(torch.int32))


def test_avx2_kernels_equal_reference(tiny, avx2):  # noqa: F811
    """Scoring (every product and attention's GEMMs on step.c) and lock-step decoding on
    the AVX2 build give the reference's integers."""
    ref = Engine(tiny.loaded, window=WINDOW, kernels="torch")
    fast = Engine(tiny.loaded, window=WINDOW, kernels="c")
    seqs = tiny.sequences(4, seed=78)
    assert_scores_equal(fast.score(seqs), ref.score(seqs))
    assert fast.model.ops._step is not None, "scoring's products did not go to step.c"
    for slots in (1, 3):
        for got, want in zip(
            decode_rows(fast, seqs, slots, seed=slots), decode_rows(ref, seqs, slots, seed=slots), strict=True
        ):
            assert_rows_equal(got, want, f"avx2 kernels vs reference, {slots} slots")


@pytest.mark.parametrize("t", [1, 70])
def test_avx2_attention_equals_reference(tiny, avx2, t):  # noqa: F811
    for peaked in (False, True):
        test_kernels_equal_reference_on_random_inputs(tiny, t, 64, peaked)


def test_old_builds_are_pruned(tmp_path):
    """A new build deletes other builds unused for UNUSED_DAYS, never itself or recent ones."""
    now = time.time()
    files = {name: tmp_path / name for name in ("kernels-new.so", "kernels-old.so", "attention-old.so")}
    files |= {"recent": tmp_path / "kernels-recent.so", "other": tmp_path / "notes.txt"}
    for path in files.values():
        path.touch()
    stale = now - (kernels.UNUSED_DAYS + 1) * 86400
    for name in ("kernels-new.so", "kernels-old.so", "attention-old.so", "other"):
        os.utime(files[name], (stale, stale))
    os.utime(files["recent"], (now - 86400, now - 86400))
    kernels._prune(tmp_path, keep=files["kernels-new.so"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernels-new.so", "kernels-recent.so", "notes.txt"]


@pytest.fixture(params=["amx", "no-amx"])
def amx_path(request):
    """Each test twice: step.c's products on AMX tiles (where this CPU has them) and without."""
    want = request.param == "amx"
    if want and not kernels.use_amx(True):
        pytest.skip("this CPU (or its kernel) has no AMX int8: the VNNI path is tested instead")
    kernels.use_amx(want)
    before = kernels.amx_product_count()
    yield want
    kernels.use_amx(True)
    ran = kernels.amx_product_count() - before
    assert (ran > 0) == want, f"{ran} products on AMX tiles with AMX {'on' if want else 'off'}"


@pytest.mark.parametrize("n, k", [(16, 64), (48, 128), (400, 576), (37, 1536)])
def test_linear_product_is_exact(amx_path, n, k):
    """The linear-layer product on every row count (AMX tiles hold 16 rows; 32 rows per
    pass; odd channel blocks) equals the exact integer product."""
    gen = torch.Generator().manual_seed(n + k)
    weight = torch.randint(-128, 128, (n, k), generator=gen, dtype=torch.int8)
    for m in (1, 3, 4, 5, 16, 17, 31, 32, 33, 70):
        x = torch.randint(-128, 128, (m, k), generator=gen, dtype=torch.int8)
        want = (x.to(torch.int64) @ weight.to(torch.int64).T).to(torch.int32)
        got = kernels.int_product(weight, x)
        assert torch.equal(got, want), f"{m} x {k} x {n} product ({'amx' if amx_path else 'vnni'})"


def test_engine_steps_equal_reference_on_each_product_path(tiny, amx_path):  # noqa: F811
    """Lock-step decoding (3 slots: 6 product rows with the split, enough for AMX) and
    scoring on both product paths give the reference's integers."""
    ref = Engine(tiny.loaded, window=WINDOW, kernels="torch")
    fast = Engine(tiny.loaded, window=WINDOW, kernels="c")
    seqs = tiny.sequences(5, seed=91)
    assert_scores_equal(fast.score(seqs), ref.score(seqs))
    for slots in (3, 5):
        got_rows = decode_rows(fast, seqs, slots, seed=slots)
        for got, want in zip(got_rows, decode_rows(ref, seqs, slots, seed=slots), strict=True):
            assert_rows_equal(got, want, f"kernel ({'amx' if amx_path else 'vnni'}) vs reference, {slots} slots")


def test_scoring_products_on_tiles_equal_reference(tiny, amx_path, monkeypatch):  # noqa: F811
    """Scoring's linear products move to step.c (AMX tiles) once native_ops.TILES_AFTER rows
    have entered the model: the same integers before and after the switch, on both paths."""
    from lmzip.engine import native_ops

    seqs = tiny.sequences(4, seed=7)
    want = Engine(tiny.loaded, window=WINDOW, kernels="torch").score(seqs)
    avx2_only = kernels.product_path() == "AVX2"  # there every product goes to step.c at once
    small = Engine(tiny.loaded, window=WINDOW, kernels="c")
    assert_scores_equal(small.score(seqs), want)
    assert (small.model.ops._step is not None) == avx2_only, "a small input packed the weights"
    monkeypatch.setattr(native_ops, "TILES_AFTER", 0)
    tiled = Engine(tiny.loaded, window=WINDOW, kernels="c")
    before = kernels.amx_product_count()
    assert_scores_equal(tiled.score(seqs), want)
    assert (kernels.amx_product_count() > before) == amx_path
    assert (tiled.model.ops._step is not None) == (amx_path or avx2_only), "step.c took the products without cause"


def test_profiled_step_gives_the_same_rows_and_accounts_for_its_time(tiny, monkeypatch):  # noqa: F811
    """The -DLMZIP_PROFILE build (scripts/step_profile.py) decodes the same integers, and
    its phases cover the steps; the normal build has no profile to give."""
    normal = kernels.library()
    with pytest.raises(ValueError, match="without LMZIP_PROFILE"):
        kernels.step_profile(normal)
    lib = kernels.library(profile=True)
    assert lib is not None, kernels.build_error(profile=True)
    seqs = tiny.sequences(5, seed=97)
    want = decode_rows(Engine(tiny.loaded, window=WINDOW, kernels="c"), seqs, 3, seed=2)
    kernels.step_profile(lib)  # start from zero
    monkeypatch.setattr(kernels, "library", lambda portable=False, profile=False: lib)
    t0 = time.perf_counter()
    got = decode_rows(Engine(tiny.loaded, window=WINDOW, kernels="c"), seqs, 3, seed=2)
    wall = time.perf_counter() - t0
    for g, w in zip(got, want, strict=True):
        assert_rows_equal(g, w, "profiled kernels vs the normal build, lock-step decoding")
    steps, seconds = kernels.step_profile(lib)
    assert steps > 0 and set(seconds) == set(kernels.STEP_PHASES)
    assert all(s >= 0 for s in seconds.values())
    assert seconds["attention"] > 0 and seconds["qkv product"] > 0 and seconds["head product"] > 0
    assert sum(seconds.values()) < wall  # the steps are part of the decoding
    assert kernels.step_profile(lib) == (0, dict.fromkeys(kernels.STEP_PHASES, 0.0))  # read and reset


def test_decoders_sharing_one_engine_take_turns(tiny):  # noqa: F811
    """Two lock-step decoders of one engine (one C step, bound to one cache at a time)
    pushed in turns give each sequence the rows of the one-extend reference: the step
    follows whichever cache it is handed."""
    fast = Engine(tiny.loaded, window=WINDOW, kernels="c")
    seqs = [tiny.text_ids[:60], tiny.text_ids[100:160], tiny.text_ids[300:360]]
    decoders = [fast.decoder(2), fast.decoder(1)]
    owners = [(0, 0, seqs[0]), (0, 1, seqs[1]), (1, 0, seqs[2])]  # (decoder, slot, sequence)
    for d, slot, _ in owners:
        decoders[d].begin(slot)
    rows: list[list[torch.Tensor]] = [[] for _ in owners]
    for p in range(60):
        for d, dec in enumerate(decoders):  # one push of each decoder, in turn
            mine = [(i, slot, seq) for i, (dd, slot, seq) in enumerate(owners) if dd == d]
            table = dec.frequencies()
            for k, (i, _, _) in enumerate(mine):
                rows[i].append(table[k])
            if p + 1 < 60:
                dec.push({slot: seq[p] for _, slot, seq in mine})
    for i, (_, _, seq) in enumerate(owners):
        assert_rows_equal(torch.stack(rows[i]), tiny.rows(seq), f"sequence {i}, decoders in turns")
