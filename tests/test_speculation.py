"""Speculative verification: guessed tokens verified in one engine call never change a row.

On the engine level, rows from step.c step_rows (several consecutive positions per
slot, guesses right, wrong and of different lengths in one call, slots joining and
leaving, the ring wrapping at a small window) equal the reference's single steps. On the
codec level, guesses all right, all wrong or mixed give the same bytes as none, with
and without file-wide memory, at batch sizes 1 and 3; and every golden archive decodes
with guesses that are partly wrong.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from test_engine import assert_rows_equal, join_at_random, one_thread, record_rows, tiny  # noqa: F401  (fixtures)
from tiny_models import training_text

from lmzip import proposals as prop
from lmzip.engine import kernels
from lmzip.engine.engine import Engine, LockstepDecoder
from lmzip.lm_codec import LMCodec

pytestmark = pytest.mark.skipif(kernels.library() is None, reason="speculative rows need the C step")

SMALL_WINDOW = 16  # tiny model: 100 tokens wrap the ring several times


def _guess(mode: str, truth: list[int], at: int, k: int, rng: random.Random, vocab: int) -> list[int]:
    """k guesses for the tokens truth[at:]: right, wrong, or right for a random prefix."""
    right = truth[at : at + k]
    wrong = [(t + 1 + rng.randrange(vocab - 1)) % vocab for t in right]
    if mode == "right":
        return right
    if mode == "wrong":
        return wrong
    cut = rng.randint(0, len(right))
    return (right[:cut] + wrong[cut:])[: rng.randint(0, k)]


def spec_rows(engine: Engine, seqs: list[list[int]], capacity: int, mode: str, seed: int = 0):
    """Rows of every sequence from a decoder that verifies guesses (``mode``), sequences
    joining and leaving at random; and the decoder (for its call counts)."""
    rng = random.Random(seed)
    dec = engine.decoder(capacity, speculate=prop.SPECULATE)
    waiting = [i for i, s in enumerate(seqs) if s]
    free = list(range(capacity))
    rng.shuffle(free)
    owner: dict[int, int] = {}
    rows: list[list[torch.Tensor]] = [[] for _ in seqs]
    while waiting or owner:
        join_at_random(dec, rng, waiting, free, owner)
        ready = dec.ready()
        if ready:
            for slot, token in record_rows(dec, dec.frequencies(), ready, owner, rows, seqs, free).items():
                dec.accept(slot, token)
        if owner and not dec.ready():
            guesses = {}
            for slot in dec.pending:
                i = owner[slot]
                at = len(rows[i])  # the next token is seqs[i][at]; the guesses are for those after it
                k = rng.randint(0, prop.SPECULATE)
                guesses[slot] = _guess(mode, seqs[i], at, k, rng, engine.vocab_size)
            dec.push(proposals=guesses)
    return [torch.stack(r) for r in rows], dec


@pytest.mark.parametrize("mode", ["right", "wrong", "mixed"])
@pytest.mark.parametrize("capacity", [1, 3])
def test_rows_with_guesses_equal_single_steps(tiny, mode, capacity):  # noqa: F811
    """Across ring wraps (window 16), guesses of every length up to the ring's slack."""
    fast = Engine(tiny.loaded, window=SMALL_WINDOW, kernels="c")
    ref = Engine(tiny.loaded, window=SMALL_WINDOW, kernels="torch")
    seqs = tiny.sequences(5, seed=11 + capacity, max_len=90)
    got, dec = spec_rows(fast, seqs, capacity, mode, seed=capacity)
    for i, s in enumerate(seqs):
        assert_rows_equal(got[i], ref.frequencies_for(s), f"{mode} guesses, sequence {i}")
    if capacity == 1:  # a push per token decoded (but the last), less the guesses accepted
        assert dec.calls == sum(len(s) - 1 for s in seqs) - dec.accepted
    if mode == "wrong":
        assert dec.accepted == 0
    else:
        assert dec.accepted > 0  # the guesses did save calls: the path was taken


def test_rows_with_guesses_on_two_threads_and_portable_kernels(tiny, monkeypatch):  # noqa: F811
    """The threaded row loops of step_rows (8 rows or more), and the plain C paths built
    without -march=native, give the same rows."""
    ref = Engine(tiny.loaded, window=SMALL_WINDOW, kernels="torch")
    seqs = tiny.sequences(5, seed=21, max_len=90)
    want = [ref.frequencies_for(s) for s in seqs]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got, dec = spec_rows(Engine(tiny.loaded, window=SMALL_WINDOW, kernels="c"), seqs, 3, "right", seed=4)
    finally:
        torch.set_num_threads(before)
    assert dec.rows_run >= 8 * dec.calls  # 8 rows a call on average: the threaded branches ran
    for g, w in zip(got, want, strict=True):
        assert_rows_equal(g, w, "two threads")
    lib = kernels.library(portable=True)
    assert lib is not None
    monkeypatch.setattr(kernels, "library", lambda portable=False: lib)
    got, _ = spec_rows(Engine(tiny.loaded, window=SMALL_WINDOW, kernels="c"), seqs, 3, "mixed", seed=5)
    for g, w in zip(got, want, strict=True):
        assert_rows_equal(g, w, "portable kernels")


def test_ring_slack_is_needed(tiny, monkeypatch):  # noqa: F811
    """Without the ring's spare entries, rows for guesses overwrite keys that the rows
    before them still see: the rows differ (so the test above can fail)."""
    fast = Engine(tiny.loaded, window=SMALL_WINDOW, kernels="c")
    ref = Engine(tiny.loaded, window=SMALL_WINDOW, kernels="torch")
    plain = type(fast.model).empty_cache
    monkeypatch.setattr(fast.model, "empty_cache", lambda batch, slack=0: plain(fast.model, batch))
    seqs = tiny.sequences(7, seed=3, max_len=90)[4:]  # 33 to 90 tokens
    got, _ = spec_rows(fast, seqs, 1, "right", seed=1)
    assert any(not torch.equal(g, ref.frequencies_for(s)) for g, s in zip(got, seqs, strict=True))


def test_uncommitted_vmax_changes_rows(tiny, monkeypatch):  # noqa: F811
    """The value-scale bound must continue from the last row kept, not from the last row
    computed: committing every row's maximum instead breaks rows after a wrong guess."""
    fast = Engine(tiny.loaded, window=SMALL_WINDOW, kernels="c")
    ref = Engine(tiny.loaded, window=SMALL_WINDOW, kernels="torch")
    commit = type(fast.model).commit

    def commit_last_row(self, cache, slots, rows, row_vmax):  # noqa: ANN001
        last = torch.full_like(rows, row_vmax.shape[1] - 1)
        return commit(self, cache, slots, last, row_vmax)

    monkeypatch.setattr(type(fast.model), "commit", commit_last_row)
    seqs = tiny.sequences(7, seed=5, max_len=90)[4:]
    got, _ = spec_rows(fast, seqs, 1, "wrong", seed=2)
    assert any(not torch.equal(g, ref.frequencies_for(s)) for g, s in zip(got, seqs, strict=True))


def test_too_many_rows_are_cut_to_the_slack(tiny):  # noqa: F811
    dec = tiny.engine.decoder(1, speculate=2)
    dec.begin(0)
    dec.accept(0, 5)
    dec.push(proposals={0: [1, 2, 3, 4]})
    assert dec.rows_run == 3 and dec.ahead[0] == [1, 2]
    assert dec.accept(0, 1) and not dec.accept(0, 9)  # the first guess right, the second wrong
    assert dec.ready() == [] and dec.pending == {0: 9}
    with pytest.raises(ValueError):
        dec.distributions([0])  # waits for a push


def test_match_proposer_guesses_repeats():
    p = prop.MatchProposer()
    for t in [1, 2, 3, 4, 5, 1, 2, 3]:
        p.add(0, t)
    assert p.propose(0, 3) == [4, 5, 1]
    for t in [7, 7, 7, 7]:
        p.add(1, t)
    assert p.propose(1, 5) == [7, 7, 7, 7, 7]  # a run goes on into its own guesses
    assert p.propose(1, 0) == [] and p.propose(2, 3) == []
    for t in [9, 1, 2, 3]:  # 1 2 3 was followed by 4 5 in another sequence
        p.add(2, t)
    assert p.propose(2, 2) == [4, 5]


# ---------------------------------------------------------------- codec level


def _chunks() -> list[bytes]:
    text = training_text(seed=9, sentences=50).encode()
    cuts = [0, 35, 300, 330, 610, len(text)]
    repeats = text[100:160] * 4  # something for the match guesses
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)] + [repeats]


def _oracle(mode: str, truth: list[list[int]], seed: int):
    rng = random.Random(seed)

    def guess(item: int, so_far: list[int], k: int) -> list[int]:
        return _guess(mode, truth[item], len(so_far), k, rng, 400)

    return guess


@pytest.mark.parametrize("memory_block", [0, 12])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_codec_output_independent_of_guesses(tiny, memory_block, batch):  # noqa: F811
    """Batch 1 and 3: fewer slots than chunks (with memory: waves); 8: the whole group in
    lock step, where slots that guessed well wait at each memory barrier for the others."""
    chunks = _chunks()
    enc = LMCodec(tiny.engine, batch=len(chunks), memory_block=memory_block)
    items = enc.encode_chunks(chunks)
    if memory_block:
        items = enc.finish_group(list(range(len(chunks))))
    truth = tiny.engine.tokenizer.encode_batch(chunks, byte_fallback=True)
    calls = {}
    for mode in ("none", "right", "wrong", "mixed", "match"):
        dec = LMCodec(
            tiny.engine, batch=batch, memory_block=memory_block, memory_group=len(chunks),
            speculate=0 if mode == "none" else prop.SPECULATE,
            guess=None if mode in ("none", "match") else _oracle(mode, truth, seed=batch),
        )  # fmt: skip
        assert dec.decode_chunks(items) == chunks, f"{mode} guesses, batch {batch}"  # type: ignore[arg-type]
        calls[mode] = dec.decode_stats["calls"]
    assert calls["wrong"] == calls["none"]
    assert calls["right"] < calls["mixed"] < calls["none"]
    assert calls["match"] < calls["none"]


def test_spans_texts_with_escapes_decode_with_guesses(tiny):  # noqa: F811
    texts = [b"abc\x00\x01 the cat" * 20 + b"\xff", b"the queen and the king " * 15, b"\x00" * 40]
    enc = LMCodec(tiny.engine, batch=3)
    coded = enc.encode_texts(texts)
    items = [(p, t, e) for p, t, e in coded]
    for batch in (1, 3):
        dec = LMCodec(tiny.engine, batch=batch)
        assert dec.decode_texts(items) == texts
        assert dec.decode_stats["calls"] < dec.decode_stats["tokens"]


# ---------------------------------------------------------------- golden archives

GOLDEN = Path(__file__).resolve().parent / "golden" / "archives"
MANIFEST = json.loads((GOLDEN / "MANIFEST.json").read_text())
WITH_MODEL = [n for n, e in MANIFEST["archives"].items() if e["model"] is not None]


@pytest.mark.requires_model
@pytest.mark.parametrize("name", WITH_MODEL)
def test_golden_archives_decode_with_partly_wrong_guesses(name, monkeypatch):
    """Every golden archive with lm records decoded with guesses that are the true tokens
    up to a random point and wrong after it (the truth: the original's chunks, tokenized;
    where no chunk matches, e.g. spans texts, the match guesses spoiled the same way):
    the bytes stay the same, and for plain chunks some guesses were taken, some refused."""
    from lmzip import api
    from lmzip.engine.loader import load_model
    from lmzip.tokens import ByteTokenizer

    entry = MANIFEST["archives"][name]
    original = (GOLDEN / entry["original"]).read_bytes()
    args = entry["args"]
    size = int(args[args.index("--chunk-size") + 1]) if "--chunk-size" in args else 16384
    tok = ByteTokenizer(load_model().tokenizer_path)
    truths = [t for t in tok.encode_batch([original[a : a + size] for a in range(0, len(original), size)]) if t]
    rng = random.Random(name)
    outcomes = {True: 0, False: 0}
    accept = LockstepDecoder.accept

    def counted(self, slot, token):  # noqa: ANN001
        was = bool(self.ahead.get(slot))
        ok = accept(self, slot, token)
        if was:
            outcomes[ok] += 1
        return ok

    def spoil(guesses: list[int]) -> list[int]:
        cut = rng.randint(0, len(guesses))
        return guesses[:cut] + [(t + 1) % 100 for t in guesses[cut:]]

    def oracle(so_far: list[int], k: int, fallback: list[int]) -> list[int]:
        n = len(so_far)
        for t in truths:
            if len(t) > n and t[:n] == so_far:
                return spoil(t[n : n + k])
        return spoil(fallback)

    propose, from_memory = prop.MatchProposer.propose, prop.memory_proposals
    monkeypatch.setattr(LockstepDecoder, "accept", counted)
    monkeypatch.setattr(
        prop.MatchProposer, "propose", lambda self, key, k: oracle(self.seqs[key], k, propose(self, key, k))
    )
    monkeypatch.setattr(prop, "memory_proposals", lambda m, cs, k: oracle(cs.tokens, k, from_memory(m, cs, k)))
    data = (GOLDEN / entry["archive"]).read_bytes()
    assert api.decompress(data, threads=1) == original
    if entry["codec_counts"].get("lm"):
        assert outcomes[True] > 0 and outcomes[False] > 0, outcomes
