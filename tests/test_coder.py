import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmzip.coder import TOTAL, RangeDecoder, RangeEncoder


def make_table(weights: list[float]) -> list[int]:
    """Integer frequencies >= 1 summing to exactly TOTAL."""
    n = len(weights)
    scale = (TOTAL - n) / sum(weights)
    freqs = [1 + int(w * scale) for w in weights]
    freqs[freqs.index(max(freqs))] += TOTAL - sum(freqs)
    assert sum(freqs) == TOTAL and min(freqs) >= 1
    return freqs


def cumulative(freqs: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(freqs)]).astype(np.int64)


def encode(tables: list[np.ndarray], symbols: list[int], many: bool = True) -> bytes:
    """tables[i] is the cumulative table used for symbols[i]."""
    pairs = list(zip(tables, symbols, strict=True))
    cums = np.array([t[s] for t, s in pairs], dtype=np.int64)
    freqs = np.array([t[s + 1] - t[s] for t, s in pairs], dtype=np.int64)
    enc = RangeEncoder()
    if many:
        enc.encode_many(cums, freqs)
    else:
        for c, f in zip(cums.tolist(), freqs.tolist(), strict=True):
            enc.encode(c, f)
    return enc.finish()


def decode(data: bytes, tables: list[np.ndarray]) -> list[int]:
    dec = RangeDecoder(data)
    out = []
    for t in tables:
        sym = int(np.searchsorted(t, dec.target(), side="right")) - 1
        sym = min(sym, len(t) - 2)
        dec.consume(int(t[sym]), int(t[sym + 1] - t[sym]))
        out.append(sym)
    return out


def ideal_bytes(tables: list[np.ndarray], symbols: list[int]) -> float:
    bits = sum(-math.log2((t[s + 1] - t[s]) / TOTAL) for t, s in zip(tables, symbols, strict=True))
    return bits / 8


def check_round_trip(tables: list[np.ndarray], symbols: list[int]) -> bytes:
    data = encode(tables, symbols)
    assert decode(data, tables) == symbols
    ideal = ideal_bytes(tables, symbols)
    assert len(data) <= ideal * 1.0001 + 4, (len(data), ideal)
    return data


def sample(freqs: list[int], n: int, rng: random.Random) -> list[int]:
    return rng.choices(range(len(freqs)), weights=freqs, k=n)


def test_empty_stream() -> None:
    assert RangeEncoder().finish() == b""
    RangeDecoder(b"").target()  # nothing to decode, must not fail


def test_encode_and_encode_many_agree() -> None:
    rng = random.Random(1)
    freqs = make_table([rng.random() for _ in range(300)])
    t = cumulative(freqs)
    syms = sample(freqs, 2000, rng)
    assert encode([t] * 2000, syms, many=True) == encode([t] * 2000, syms, many=False)


@pytest.mark.parametrize("seed", range(5))
def test_random_distributions(seed: int) -> None:
    rng = random.Random(seed)
    tables, symbols = [], []
    for _ in range(50):  # the distribution changes every 40 symbols, like an LM
        freqs = make_table([rng.random() ** 4 for _ in range(rng.randint(2, 2000))])
        t = cumulative(freqs)
        tables += [t] * 40
        symbols += sample(freqs, 40, rng)
    check_round_trip(tables, symbols)


def test_skewed_distribution_long_stream() -> None:
    # One symbol takes all but a tiny mass: ~1e-6 bits per symbol; 10^5 symbols.
    freqs = [TOTAL - 15] + [1] * 15
    t = cumulative(freqs)
    rng = random.Random(2)
    n = 100_000
    symbols = [0] * n
    for i in rng.sample(range(n), 3):
        symbols[i] = rng.randint(1, 15)
    data = check_round_trip([t] * n, symbols)
    assert len(data) < 20


def test_improbable_symbols_only() -> None:
    freqs = [TOTAL - 1, 1]
    t = cumulative(freqs)
    check_round_trip([t] * 500, [1] * 500)  # 24 bits each


def test_uniform_large_alphabet() -> None:
    n_sym = 49_152  # a typical vocabulary size
    freqs = [TOTAL // n_sym] * n_sym
    freqs[0] += TOTAL - sum(freqs)
    t = cumulative(freqs)
    rng = random.Random(3)
    symbols = [rng.randrange(n_sym) for _ in range(5000)] + [0, n_sym - 1]
    check_round_trip([t] * len(symbols), symbols)


def test_alternating_distributions_long_stream() -> None:
    a = cumulative(make_table([1000.0, 1.0, 1.0]))
    b = cumulative(make_table([1.0] * 255 + [1e5]))
    rng = random.Random(4)
    tables, symbols = [], []
    for i in range(100_000):
        if i % 2:
            tables.append(b)
            symbols.append(255 if rng.random() < 0.9 else rng.randrange(256))
        else:
            tables.append(a)
            symbols.append(0 if rng.random() < 0.99 else rng.randrange(3))
    check_round_trip(tables, symbols)


def test_carry_propagation(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmzip.coder as coder

    carries = []
    real = coder._propagate_carry
    monkeypatch.setattr(coder, "_propagate_carry", lambda out: carries.append(1) or real(out))
    t = cumulative([TOTAL // 256] * 256)
    rng = random.Random(5)
    symbols = [rng.randrange(256) for _ in range(20_000)]
    check_round_trip([t] * len(symbols), symbols)
    assert carries, "the test stream should exercise carry propagation"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 1000), min_size=2, max_size=40),
    st.lists(st.integers(0, 10**9), max_size=300),
)
def test_property_round_trip(weights: list[int], picks: list[int]) -> None:
    freqs = make_table([float(w) for w in weights])
    t = cumulative(freqs)
    symbols = [p % len(freqs) for p in picks]
    check_round_trip([t] * len(symbols), symbols)


def test_decoder_never_raises_on_truncated_or_garbage() -> None:
    rng = random.Random(6)
    freqs = make_table([rng.random() for _ in range(700)])
    t = cumulative(freqs)
    symbols = sample(freqs, 3000, rng)
    data = encode([t] * 3000, symbols)
    inputs = [data[:k] for k in range(0, len(data), max(1, len(data) // 50))]
    inputs += [bytes(rng.randrange(256) for _ in range(n)) for n in (1, 7, 100, 5000)]
    inputs += [b"\xff" * 200, b"\x00" * 200]
    for blob in inputs:
        dec = RangeDecoder(blob)
        for _ in range(3000):
            target = dec.target()
            assert 0 <= target < TOTAL
            sym = int(np.searchsorted(t, target, side="right")) - 1
            dec.consume(int(t[sym]), int(t[sym + 1] - t[sym]))


def test_rejects_bad_bounds() -> None:
    enc = RangeEncoder()
    with pytest.raises(ValueError):
        enc.encode(0, 0)
    with pytest.raises(ValueError):
        enc.encode(TOTAL - 1, 2)
    with pytest.raises(ValueError):
        enc.encode_many(np.array([0, 5]), np.array([1, 0]))
