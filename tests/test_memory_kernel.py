"""The mixed-table decoding kernel (kernels.c mixed_find) gives the integers of the
PyTorch reference (frequencies.mixed_find_reference) and of lmzip/memory.py's coding side,
built with and without -march=native."""

from __future__ import annotations

import pytest
import torch

from lmzip import memory
from lmzip.engine import kernels
from lmzip.engine.frequencies import frequencies, mixed_find_reference

pytestmark = pytest.mark.skipif(kernels.library() is None, reason="no C compiler: the reference path runs alone")


def _random_boosts(gen: torch.Generator, vocab: int, rows: int) -> list[memory.Boosts]:
    out = []
    for r in range(rows):
        n = int(torch.randint(0, 6, (1,), generator=gen))
        toks = sorted(set(torch.randint(0, vocab, (n,), generator=gen).tolist()))
        if r == 1:
            toks = sorted(set(toks) | {0, vocab - 1})  # the first and last token boosted
        boosts = [int(torch.randint(1, 1 << 22, (1,), generator=gen)) for _ in toks]
        if r == 2 and toks:  # almost everything on the candidates: S at its floor
            total = (1 << 24) - vocab - memory.MIN_LM_SPREAD
            boosts = [total // len(toks)] * len(toks)
        out.append(memory.Boosts(tuple(toks), tuple(boosts), (1 << 24) - vocab - sum(boosts)))
    return out


def _check(logits: torch.Tensor, gen: torch.Generator) -> None:
    rows, vocab = logits.shape
    bs = _random_boosts(gen, vocab, rows)
    starts = torch.tensor([0] + [len(b.tokens) for b in bs]).cumsum(0)
    cand = torch.tensor([t for b in bs for t in b.tokens], dtype=torch.long)
    boosts = torch.tensor([v for b in bs for v in b.boosts], dtype=torch.long)
    spreads = torch.tensor([b.spread for b in bs])
    cf = torch.zeros(rows, vocab + 1, dtype=torch.long)
    cf[:, 1:] = frequencies(logits).table().cumsum(1)
    targets = torch.randint(0, 1 << 24, (rows,), generator=gen)
    targets[0], targets[-1] = 0, (1 << 24) - 1
    for trial in range(3):
        if trial:  # edges of candidate intervals
            for r, b in enumerate(bs):
                if b.tokens:
                    cum = memory.mixed_table(cf[r].tolist(), b)
                    t = b.tokens[-1]
                    targets[r] = cum[t] if trial == 1 else cum[t + 1] - 1
        want = mixed_find_reference(frequencies(logits), targets, spreads, starts, cand, boosts)
        got = kernels.mixed_find(logits, targets, spreads, starts, cand, boosts)
        for w, g in zip(want, got, strict=True):
            assert torch.equal(w, g), "kernel differs from the reference"
        for r, b in enumerate(bs):  # the coding side's interval of the decoded token
            t = int(got[0][r])
            c, f = int(cf[r, t]), int(cf[r, t + 1] - cf[r, t])
            assert memory.mixed_bounds(c, f, t, b) == (int(got[1][r]), int(got[2][r]))
            assert int(got[3][r]) == f
            lo, fm = int(got[1][r]), int(got[2][r])
            assert lo <= int(targets[r]) < lo + fm


@pytest.mark.parametrize("portable", [False, True])
def test_mixed_find_equals_reference(monkeypatch, portable):
    if portable:
        lib = kernels.library(portable=True)
        assert lib is not None
        monkeypatch.setattr(kernels, "library", lambda portable=False: lib)
    gen = torch.Generator().manual_seed(11)
    for vocab in (300, 49152):
        logits = torch.randn(5, vocab, generator=gen) * 4
        logits[1] = 0.0
        logits[2, 7] = 1e4
        logits[3] = torch.linspace(-80, 30, vocab)
        _check(logits, gen)


def test_mixed_table_sums_and_floor():
    cf = [0, 5, 5 + 1, 1 << 23, (1 << 24) - 3, 1 << 24]  # vocab 5
    b = memory.Boosts((1, 4), (1000, 77), (1 << 24) - 5 - 1077)
    cum = memory.mixed_table(cf, b)
    assert cum[-1] == 1 << 24
    assert all(y - x >= 1 for x, y in zip(cum, cum[1:], strict=False))
    for t in range(5):
        assert memory.mixed_bounds(cf[t], cf[t + 1] - cf[t], t, b) == (cum[t], cum[t + 1] - cum[t])
