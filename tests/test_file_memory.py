"""File-wide memory (lmzip/memory.py, numerics v7, and v5, v6 as archives of them hold): the
online models alone, and the LM codec's compression and decompression paths computing
identical integer tables for any number of decoder slots (fewer than the group
included). The texts mix words and numbers: v6 and v7 treat digit tokens apart."""

from __future__ import annotations

import io
import math
from collections import defaultdict

import pytest
from script_modules import load_script
from test_engine import one_thread, tiny  # noqa: F401  (fixtures)
from tiny_models import training_text

from lmzip import memory as mem
from lmzip.container import FormatError, ModelInfo, _parse_model_body

# -- the models alone ------------------------------------------------------------


def test_exp_table_is_exact_and_decreasing():
    table = mem.exp_table()
    assert table[0] == mem.ONE and table[256] == 24109  # round(2**16 / e)
    assert all(a >= b for a, b in zip(table, table[1:], strict=False))


def test_ngram_table_counts_and_replaces():
    t = mem.NGramTable(2)
    h = mem._hash_step(mem._hash_step(0, 5), 6)
    assert t.lookup(h) == []
    ways = mem.NGRAM_WAYS
    for tok in [1, 1, *range(2, ways + 1)]:
        t.update(h, tok)
    assert dict(t.lookup(h)) == {1: 2, **{k: 1 for k in range(2, ways + 1)}}
    t.update(h, 999)  # full: the weakest (first of the count-1 entries) goes
    assert dict(t.lookup(h)) == {1: 2, 999: 1, **{k: 1 for k in range(3, ways + 1)}}
    for _ in range(mem.NGRAM_COUNT_MAX):
        t.update(h, 1)
    assert max(c for _, c in t.lookup(h)) <= mem.NGRAM_COUNT_MAX  # halved
    other = mem._hash_step(h, 77)
    assert t.lookup(other) == [] or t.lookup(other) != t.lookup(h)


def test_statemap_moves_and_stays_bounded():
    sm = mem.StateMap(1, mem.ONE // 2)
    for _ in range(3000):
        sm.update(0, True)
    assert mem.ONE - 32 == sm.q16(0)
    for _ in range(20):
        sm.update(0, False)
    assert sm.q16(0) < mem.ONE - 1000


def test_mixer_learns_the_better_input():
    mx = mem.Mixer(1)
    before = mx.weights(0)
    for _ in range(200):  # the match input is always right, the model nearly never
        mx.update(0, (1000, 0, 1 << 23), 1 << 22)
    after = mx.weights(0)
    assert after[2] * sum(before) > before[2] * sum(after)


def _code(memory: mem.FileMemory, chunks: list[list[int]]) -> list[tuple[list[int], list[int]]]:
    """A flat model (every token f = 2**24 / V) mixed with the memory."""
    v = memory.vocab
    f = mem.TOTAL // v
    seqs = [(c, [t * f for t in c], [f] * len(c)) for c in chunks]
    return mem.encode_group(memory, seqs)


def test_memory_learns_repeats_across_groups():
    rep = list(range(3, 63))  # nothing repeats inside the chunk
    memory = mem.FileMemory(64, 8)
    (first,) = _code(memory, [rep])
    (second,) = _code(memory, [rep])
    assert sum(second[1]) > 3 * sum(first[1])  # the second copy gets far more of each table
    for cum, f in zip(*second, strict=True):
        assert f >= 1 and cum + f <= mem.TOTAL


def test_block_barrier_hides_other_chunks_until_it_passes():
    """Chunk 1 repeats chunk 0's first block: in its own block 0 it cannot see chunk 0's
    tokens, in block 1 (after the barrier) it can."""
    x = list(range(10, 26))
    memory = mem.FileMemory(64, 16)
    (_, fa), (_, fb) = _code(memory, [x + list(range(30, 46)), list(range(46, 62)) + x])
    assert fb[:16] == fa[:16]  # block 0: same tables (nothing shared yet, all tokens new)
    assert sum(fb[20:32]) > 2 * sum(fa[20:32])  # block 1: chunk 0's block 0 is shared
    memory = mem.FileMemory(64, 32)  # one block: chunk 0's tokens are not visible to chunk 1
    (_, fa), (_, fb) = _code(memory, [x + list(range(30, 46)), list(range(46, 62)) + x])
    assert fb == fa


def test_model_record_memory_fields():
    info = ModelInfo("m", b"\1" * 32, b"\2" * 32, 5, 1024, 32, 64)
    assert _parse_model_body(0, info.pack_body()) == info
    old = ModelInfo("m", b"\1" * 32, b"\2" * 32, 4, 1024)
    assert _parse_model_body(0, old.pack_body()) == old
    with pytest.raises(ValueError):
        ModelInfo("m", b"\1" * 32, b"\2" * 32, 4, 1024, 32, 64).pack_body()
    with pytest.raises(ValueError):
        ModelInfo("m", b"\1" * 32, b"\2" * 32, 5, 1024, 0, 64).pack_body()
    body = bytearray(info.pack_body())
    body[67] = 0  # the group (after the hashes, numerics and the 2-byte window)
    with pytest.raises(FormatError, match="memory group"):
        _parse_model_body(0, bytes(body))


# -- the codec on a tiny model ----------------------------------------------------


def with_numbers(text: str) -> str:
    """Every fifth word of ``text`` a number (the tiny tokenizer has the ten digit tokens)."""
    return " ".join(w if i % 5 else str(1000 + 37 * i) for i, w in enumerate(text.split(" ")))


def _chunks() -> list[bytes]:
    text = with_numbers(training_text(seed=5, sentences=50)).encode()
    cuts = [0, 40, 45, 300, 420, 430, 700, len(text)]  # chunks of very different lengths
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def coded_tables(monkeypatch) -> dict[int, list]:
    """Every coded token's (token, model f, mixed f, boosts), per chunk, in chunk order."""
    seen: dict[int, list] = defaultdict(list)
    observe = mem.FileMemory.observe

    def spy(self, cs, pred, token, lm_freq, mixed_freq):
        seen[id(cs)].append((token, lm_freq, mixed_freq, pred.boosts))
        return observe(self, cs, pred, token, lm_freq, mixed_freq)

    monkeypatch.setattr(mem.FileMemory, "observe", spy)
    return seen


def test_codec_tables_identical_for_any_slot_count(tiny, monkeypatch):  # noqa: F811
    from lmzip.lm_codec import LMCodec

    chunks = _chunks()
    seen = coded_tables(monkeypatch)
    enc = LMCodec(tiny.engine, batch=len(chunks), memory_block=16)
    lm_only = enc.encode_chunks(chunks)
    items = enc.finish_group(list(range(len(chunks))))
    want = list(seen.values())
    assert any(b.tokens for rows in want for *_, b in rows), "the memory never boosted anything"
    assert sum(len(p) for p, _ in items) < sum(len(p) for p, _ in lm_only)  # type: ignore[misc]
    for slots in (1, 3, 17):  # 1 and 3: fewer slots than the group (waves)
        seen.clear()
        dec = LMCodec(tiny.engine, batch=slots, memory_block=16, memory_group=len(chunks))
        assert dec.decode_chunks(items) == chunks  # type: ignore[arg-type]
        assert list(seen.values()) == want, f"{slots} slots: tables differ"


def test_decode_floor_counts_the_engine_calls_of_a_memory_group(tiny, monkeypatch):  # noqa: F811
    """scripts/decode_floor.py (docs/decode_speed.md's floor) counts a memory group's engine
    calls from token counts alone, side by side and in waves; the codec takes exactly that many."""
    from lmzip.engine.engine import LockstepDecoder
    from lmzip.lm_codec import LMCodec

    floor = load_script("decode_floor")
    chunks = _chunks()
    enc = LMCodec(tiny.engine, batch=len(chunks), memory_block=16)
    enc.encode_chunks(chunks)
    items = enc.finish_group(list(range(len(chunks))))
    tokens = [count for _, count in items]
    calls = 0
    find_mixed = LockstepDecoder.find_mixed

    def counted(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        return find_mixed(self, *args, **kwargs)

    monkeypatch.setattr(LockstepDecoder, "find_mixed", counted)
    for slots in (1, 3, len(chunks)):  # waves, waves, side by side (without guesses: one find per call)
        calls = 0
        dec = LMCodec(tiny.engine, batch=slots, memory_block=16, memory_group=len(chunks), speculate=0)
        assert dec.decode_chunks(items) == chunks  # type: ignore[arg-type]
        assert calls == floor.memory_group_calls(tokens, slots, 16), f"{slots} slots, tokens {tokens}"
    assert floor.memory_group_calls(tokens, 3, 16) > floor.memory_group_calls(tokens, len(chunks), 16)


def test_decode_floor_counts_the_positions_attention_reads():
    """visible_positions sums, over a chunk's tokens, the keys model.attends lets each see."""
    import torch

    from lmzip.engine.model import attends

    floor = load_script("decode_floor")
    for window in (1, 2, 5, 16):
        for tokens in (0, 1, 4, 5, 6, 40):
            pos = torch.arange(tokens)
            seen = int(attends(pos[:, None], pos[None, :], window).sum()) if tokens else 0
            assert floor.visible_positions(tokens, window) == seen, (tokens, window)


GROUP_OF_64 = 64


def _group_of_64() -> list[bytes]:
    """64 chunks of 1 to 160 bytes cut from one text: a full default-size group whose
    chunks leave the lock step at many different positions."""
    import random

    text = with_numbers(training_text(seed=21, sentences=180)).encode()
    rng = random.Random(64)
    out, pos = [], 0
    for i in range(GROUP_OF_64):
        n = 1 if i == 5 else rng.randint(8, 160)  # one chunk of a single token
        out.append(text[pos : pos + n])
        pos += n
    assert pos < len(text)
    return out


@pytest.fixture(scope="module")
def coded_64(tiny):  # noqa: F811
    """The group of 64 compressed at batch 64 on one thread: payloads and, per chunk, every
    coded token's (token, model f, mixed f, boosts)."""
    from lmzip.lm_codec import LMCodec

    with pytest.MonkeyPatch.context() as mp:
        seen = coded_tables(mp)
        enc = LMCodec(tiny.engine, batch=GROUP_OF_64, threads=1, memory_block=4)
        enc.encode_chunks(_group_of_64())
        items = enc.finish_group(list(range(GROUP_OF_64)))
    return items, list(seen.values())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("slots", [1, 3, 17, 64])
def test_group_of_64_same_tables_at_every_slot_and_thread_count(tiny, coded_64, monkeypatch, slots, threads):  # noqa: F811
    """Decoding the 64-chunk group with 1, 3 or 17 slots (waves: chunks join a wave at a
    block start and leave at their end) or all 64 in lock step, on 1 or 2 threads, codes
    every token with the compressor's integers; compressing on 2 threads gives the same
    archive."""
    import torch

    from lmzip.lm_codec import LMCodec

    items, want = coded_64
    assert len(want) == GROUP_OF_64 and any(b.tokens for rows in want for *_, b in rows)
    seen = coded_tables(monkeypatch)
    try:
        if threads == 2 and slots == GROUP_OF_64:
            enc = LMCodec(tiny.engine, batch=GROUP_OF_64, threads=2, memory_block=4)
            enc.encode_chunks(_group_of_64())
            assert enc.finish_group(list(range(GROUP_OF_64))) == items, "2 threads compress differently"
            seen.clear()
        dec = LMCodec(tiny.engine, batch=slots, threads=threads, memory_block=4, memory_group=GROUP_OF_64)
        assert dec.decode_chunks(items) == _group_of_64()  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(1)
    got = list(seen.values())
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"{slots} slots, {threads} threads: chunk {i} coded with other tables"


def test_codec_memory_carries_across_groups(tiny):  # noqa: F811
    from lmzip.lm_codec import LMCodec

    chunks = _chunks()
    enc = LMCodec(tiny.engine, batch=3, memory_block=8)
    groups = [chunks[:3], chunks[3:6], chunks[6:]]
    payloads = []
    for g in groups:
        enc.encode_chunks(g)
        payloads.append(enc.finish_group(list(range(len(g)))))
    dec = LMCodec(tiny.engine, batch=2, memory_block=8, memory_group=3)
    for g, p in zip(groups, payloads, strict=True):
        assert dec.decode_chunks(p) == g
    fresh = LMCodec(tiny.engine, batch=3, memory_block=8, memory_group=3)
    with pytest.raises(Exception):  # noqa: B017,PT011  (decoded without the first groups' memory: garbage)
        if fresh.decode_chunks(payloads[2]) != groups[2]:
            raise ValueError("differs")


def test_finish_group_leaves_unchosen_chunks_out(tiny):  # noqa: F811
    from lmzip.lm_codec import LMCodec

    chunks = _chunks()[:4]
    enc = LMCodec(tiny.engine, batch=4, memory_block=8)
    enc.encode_chunks(chunks)
    out = enc.finish_group([0, 2, 3])  # chunk 1 is not an lm record: the memory never sees it
    assert len(out) == 3
    dec = LMCodec(tiny.engine, batch=4, memory_block=8, memory_group=4)
    assert dec.decode_chunks(out) == [chunks[0], chunks[2], chunks[3]]


@pytest.mark.parametrize("batch", [1, 3])
def test_pipeline_round_trip_with_memory(tiny, batch, monkeypatch):  # noqa: F811
    from lmzip import pipeline
    from lmzip.container import read_info
    from lmzip.lm_codec import LMCodec

    def factory(opts):
        return LMCodec(tiny.engine, opts.batch, memory_block=opts.memory_block or 0,
                       memory_group=getattr(opts, "memory_group", 0))  # fmt: skip

    # the tiny random model rarely beats zstd: every chunk but the fourth goes to the lm
    monkeypatch.setattr(
        pipeline,
        "_choose",
        lambda group, cands, cost, header, runs=None: [c if i % 4 != 3 else None for i, c in enumerate(cands)],
    )
    data = training_text(seed=9, sentences=120).encode()
    out = io.BytesIO()
    copts = pipeline.CompressOptions(chunk_size=512, batch=4, memory_block=16, codec_factory=factory)
    pipeline.compress_stream(io.BytesIO(data), out, copts)
    info = read_info(io.BytesIO(out.getvalue()))
    assert info.model is not None
    assert (info.model.numerics_version, info.model.memory_group, info.model.memory_block) == (7, 4, 16)
    assert info.codec_counts["lm"] >= 6 and info.codec_counts["zstd"] >= 2
    back = io.BytesIO()
    pipeline.decompress_stream(
        io.BytesIO(out.getvalue()), back, pipeline.DecompressOptions(batch=batch, codec_factory=factory)
    )
    assert back.getvalue() == data


def test_decompression_hands_the_codec_one_memory_group_at_a_time():
    """With numerics v5 the pipeline groups lm records by the archive's memory group
    (3 chunks here), whatever --batch the decoder runs with."""
    from fake_lm import FakeIdentity, FakeLM, text

    from lmzip import pipeline

    ident = FakeIdentity(numerics_version=5, memory_group=3, memory_block=16)
    enc = FakeLM(ident)
    data = text(2000, 3)
    out = io.BytesIO()
    pipeline.compress_stream(
        io.BytesIO(data), out, pipeline.CompressOptions(chunk_size=200, batch=3, codec_factory=lambda o: enc)
    )
    for batch in (1, 2, 32):
        dec = FakeLM(ident)
        back = io.BytesIO()
        pipeline.decompress_stream(
            io.BytesIO(out.getvalue()), back, pipeline.DecompressOptions(batch=batch, codec_factory=lambda o, d=dec: d)
        )
        assert back.getvalue() == data
        assert dec.decode_calls == [3, 3, 3, 1]


def _golden_stream() -> list[list[list[int]]]:
    """3 groups of 3 chunks: pseudo-random phrases of a 500-token vocabulary, repeated."""
    import random

    rng = random.Random(13)
    phrases = [[rng.randrange(500) for _ in range(rng.randint(2, 9))] for _ in range(40)]
    groups = []
    for _ in range(3):
        group = []
        for _ in range(3):
            chunk: list[int] = []
            while len(chunk) < rng.randint(60, 160):
                chunk += rng.choice(phrases)
            group.append(chunk)
        groups.append(group)
    return groups


MEMORY_GOLDEN = {
    5: "564bac7d3412d3c6be66577a0f8c9fecf963b65790b1314ccff2b5c2e6004ffc",
    6: "0ce2d2e6e53b860c2813c53323a6cfb0640bdff04d84b324841015ae280c9ede",
    7: "10cb82853df3ee7f88aca8d0a058622fc9fe2c6019a3fed057ef28f5f27c8580",
}


@pytest.mark.parametrize("numerics", [5, 6, 7])
def test_memory_golden_vector(numerics: int) -> None:
    """The mixed tables of a fixed stream (flat model, 3 groups of 3 chunks, block 4;
    tokens below 50 count as digits), as a hash: any change to memory.py's integers shows
    here. Numerics v5 and v6 are frozen (their archives must decode forever); v7 changes
    only on purpose, with a new numerics version and a new hash."""
    import hashlib

    memory = mem.FileMemory(500, 4, numerics, frozenset(range(50)))
    h = hashlib.sha256()
    for group in _golden_stream():
        for cums, freqs in _code(memory, group):
            h.update(repr((cums, freqs)).encode())
    assert h.hexdigest() == MEMORY_GOLDEN[numerics]


def test_v6_differs_from_v5_where_digits_are() -> None:
    """The same stream gives other tables under v6 (its weight sets, rates and confidence
    contexts), and v6 without digit tokens still differs (young sets learn faster)."""
    tables = {}
    for numerics, digits in ((5, frozenset(range(50))), (6, frozenset(range(50))), (6, frozenset())):
        memory = mem.FileMemory(500, 4, numerics, digits)
        tables[numerics, bool(digits)] = [_code(memory, group) for group in _golden_stream()]
    assert len({repr(t) for t in tables.values()}) == 3
    with pytest.raises(ValueError, match="numerics version 4"):
        mem.FileMemory(500, 4, 4)


def _records(seed: int, lines: int) -> list[int]:
    """Log-like lines over a 100-token vocabulary (tokens below 10 are digits): one of three
    templates, each with a random number of its own fixed length, then its own end token."""
    import random

    rng = random.Random(seed)
    templates = [([20, 21, 22], 7, 30), ([20, 23, 22], 12, 31), ([24, 21, 22], 4, 32)]
    out: list[int] = []
    for _ in range(lines):
        words, length, end = rng.choice(templates)
        out += [*words, *(rng.randrange(10) for _ in range(length)), end, 99]
    return out


def test_v7_skeleton_knows_where_a_number_ends() -> None:
    """v7's shape model: after a template and a digit run of its usual length, the token
    that ends the run is expected (v6's n-grams see only random digits there)."""
    stream = _records(5, 400)
    ends = [i for i, t in enumerate(stream) if t in (30, 31, 32)][200:]  # once both have learned
    cost = {}
    for numerics in (6, 7):
        memory = mem.FileMemory(100, 16, numerics, frozenset(range(10)))
        ((cums, freqs),) = _code(memory, [stream])
        cost[numerics] = sum(mem.FREQ_BITS - math.log2(freqs[i]) for i in ends) / len(ends)
        digits = [i for i, t in enumerate(stream) if t < 10][2000:]
        cost[numerics, "digits"] = sum(mem.FREQ_BITS - math.log2(freqs[i]) for i in digits) / len(digits)
    assert cost[7] < 0.5 and cost[6] > 3, cost  # bits per end token (measured: 0.18 and 5.6)
    assert cost[7, "digits"] <= cost[6, "digits"], cost  # and random digits cost no more (4.05, 4.30)


def test_skeleton_folds_digit_runs() -> None:
    """The skeleton holds a finished run of digits as one RUN_MARK; the open run is a count."""
    memory = mem.FileMemory(100, 16, 7, frozenset(range(10)))
    cs = mem.ChunkState()
    for t in [20, 1, 2, 3, 21, 4, 5]:
        memory.observe(cs, memory.predict(cs), t, 1000, 1000)
    assert cs.skeleton == [20, mem.RUN_MARK, 21] and cs.run == 2
    plain = mem.ChunkState()  # the same words without the first number
    for t in [20, 21, 4, 5]:
        memory.observe(plain, memory.predict(plain), t, 1000, 1000)
    assert plain.skeleton == [20, 21] and memory._shape_keys(cs) != memory._shape_keys(plain)
    assert len(cs.shape_keys) == 7 and len(cs.shape_pending) > 0
    last = cs.shape_keys[-1]
    memory.barrier([cs])  # the shared tables take the counts, the chunk's own go
    assert cs.shape_pending == {} and cs.shape_keys == []
    assert all(dict(memory.shapes[i].lookup(k)) == {5: 1} for i, k in enumerate(last))


def test_young_weight_sets_learn_faster() -> None:
    """v6: a set's first updates move it YOUNG_BOOST times as far as v5's fixed rate."""
    v5, v6 = mem.Mixer(2), mem.Mixer(2, young=True)
    for mx in (v5, v6):
        mx.update(0, (1000, 0, 1 << 23), 1 << 22)
    assert v6.theta[0][2] > 3 * v5.theta[0][2] > 0 and v6.updates == [1, 0]
    copy = v6.copy()
    copy.update(1, (1000, 0, 1 << 23), 1 << 22)
    copy.update(0, (1000, 0, 1 << 23), 1 << 22)
    assert v6.updates == [1, 0] and [copy.count(0), copy.count(1)] == [2, 1]  # private copies count apart
    assert v6.theta[1] == [mem.MIX_THETA_LM, 0, 0] and copy.row(1)[2] > 0  # and write their own rows
    assert v6.row(0) != copy.row(0) and copy.copy().row(0) == copy.row(0)


@pytest.mark.parametrize("numerics", [5, 6, 7])
def test_codec_of_either_memory_version_round_trips(tiny, numerics):  # noqa: F811
    """An archive's codec (load_lm_codec with want's numerics) decodes what its version coded."""
    from lmzip.lm_codec import LMCodec

    chunks = _chunks()[:4]
    enc = LMCodec(tiny.engine, batch=4, memory_block=8, memory_numerics=numerics)
    assert enc.numerics_version == numerics
    enc.encode_chunks(chunks)
    items = enc.finish_group([0, 1, 2, 3])
    dec = LMCodec(tiny.engine, batch=2, memory_block=8, memory_group=4, memory_numerics=numerics)
    assert dec.decode_chunks(items) == chunks  # type: ignore[arg-type]
    other = LMCodec(tiny.engine, batch=4, memory_block=8, memory_numerics=6 if numerics == 7 else numerics + 1)
    other.encode_chunks(chunks)
    assert other.finish_group([0, 1, 2, 3]) != items


def test_reference_decoder_reads_kernel_archives(tiny):  # noqa: F811
    """Decoding through the torch reference (frequencies.mixed_find_reference: CUDA, or no C
    compiler) gives what the C kernel's encoder side coded."""
    from test_engine import WINDOW

    from lmzip.engine.engine import Engine
    from lmzip.lm_codec import LMCodec

    chunks = _chunks()[:4]
    enc = LMCodec(tiny.engine, batch=4, memory_block=8)
    enc.encode_chunks(chunks)
    items = enc.finish_group([0, 1, 2, 3])
    ref = Engine(tiny.loaded, window=WINDOW, kernels="torch")
    assert LMCodec(ref, batch=4, memory_block=8, memory_group=4).decode_chunks(items) == chunks  # type: ignore[arg-type]
