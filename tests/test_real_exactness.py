"""The default model (SmolLM2-135M) gives the same integers at every batch size and thread
count, in the scoring path (compression) and the step path (decompression), with the C
kernels and with the PyTorch reference.

Kept cheap: 64 short sequences (2 to 6 tokens), so the step path at 64 slots runs a
handful of steps (each one is a full pass over the weights); the scoring path runs
batches of 1, 3, 17 and 64 on 1 and 2 threads, the step path the cases in STEP_CASES. The rows every
configuration must reproduce are one sequence's prefill on one thread with the C kernels,
which the reference path reproduces too. Sliding windows and long sequences are covered
at batch 3 in test_engine.py (test_real_prefill_equals_step).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch
from test_engine import assert_rows_equal, assert_scores_equal, expected_score

from lmzip.engine import kernels
from lmzip.engine.engine import Engine

pytestmark = pytest.mark.requires_model

WINDOW = 64
BATCHES = (1, 3, 17, 64)
THREADS = (1, 2)
TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
    "nothing to do: once or twice she had peeped into the book her sister was reading, but it had "
    "no pictures or conversations in it, 'and what is the use of a book,' thought Alice 'without "
    "pictures or conversations?' So she was considering in her own mind (as well as she could, for "
    "the hot day made her feel very sleepy and stupid), whether the pleasure of making a daisy-chain "
    "would be worth the trouble of getting up and picking the daisies, when suddenly a White Rabbit "
    "with pink eyes ran close by her. int main(void) { return 0x7f; } 3.14159 26535 <p>&amp;</p>\n"
)


@pytest.fixture(scope="module")
def threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def real(threads: None) -> Engine:
    torch.set_num_threads(1)
    engine = Engine.load(window=WINDOW)
    assert engine.model.kernels == "c" or kernels.library() is None  # test_kernels.py reports a failed build
    return engine


@pytest.fixture(scope="module")
def seqs(real: Engine) -> list[list[int]]:
    ids = real.tokenizer.encode(TEXT.encode())
    assert ids is not None and len(ids) > 150
    rng = random.Random(17)
    out = []
    for i in range(max(BATCHES)):
        n = 2 + i % 5  # 2..6 tokens: slots leave the lock step at different steps
        start = rng.randrange(len(ids) - n)
        out.append(ids[start : start + n])
    return out


@pytest.fixture(scope="module")
def want(real: Engine, seqs: list[list[int]]) -> list[torch.Tensor]:
    torch.set_num_threads(1)
    return [real.frequencies_for(s) for s in seqs]


def lockstep_rows(engine: Engine, seqs: list[list[int]], seed: int) -> list[torch.Tensor]:
    """Rows of every sequence from a LockstepDecoder with one slot each (shuffled), all
    starting together; a slot leaves after its last row."""
    order = list(range(len(seqs)))
    random.Random(seed).shuffle(order)
    slot_of = dict(zip(range(len(seqs)), order, strict=True))
    dec = engine.decoder(len(seqs))
    for i in range(len(seqs)):
        dec.begin(slot_of[i])
    rows: list[list[torch.Tensor]] = [[] for _ in seqs]
    step = 0
    while dec.active():
        active = dec.active()
        table = dec.frequencies()
        push = {}
        for i, s in enumerate(seqs):
            slot = slot_of[i]
            if slot in active:
                rows[i].append(table[active.index(slot)])
                if step + 1 < len(s):
                    push[slot] = s[step]
                else:
                    dec.finish(slot)
        if push:
            dec.push(push)
        step += 1
    return [torch.stack(r) for r in rows]


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("batch", BATCHES)
def test_real_scores_equal_at_every_batch_and_thread_count(real, seqs, want, batch, n_threads):
    torch.set_num_threads(n_threads)
    part = seqs[:batch]
    expected = [expected_score(w, s) for w, s in zip(want[:batch], part, strict=True)]
    assert_scores_equal(real.score(part), expected)


# Every batch size on one thread, and 2 threads where step.c splits its loops across
# threads (`omp parallel for if (B >= 8)`) plus one small batch; 64 slots on one thread
# runs the same loops as 17 (each 64-slot run costs 64 single-token passes to start).
STEP_CASES = [(1, 1), (3, 1), (17, 1), (3, 2), (17, 2), (64, 2)]


@pytest.mark.parametrize(("batch", "n_threads"), STEP_CASES)
def test_real_steps_equal_at_every_batch_and_thread_count(real, seqs, want, batch, n_threads):
    torch.set_num_threads(n_threads)
    for i, (got, w) in enumerate(zip(lockstep_rows(real, seqs[:batch], seed=batch), want, strict=False)):
        assert_rows_equal(got, w, f"sequence {i}, {batch} slots, {n_threads} threads")


def test_real_reference_path_equals_c(real, seqs, want):
    """The PyTorch reference (what CUDA runs) gives the C kernels' integers: prefill,
    scoring and lock-step decoding."""
    if real.model.kernels != "c":
        pytest.skip("no C kernels to compare with (test_kernels.py says why)")
    torch.set_num_threads(1)
    ref = Engine(real.loaded, window=WINDOW, kernels="torch")
    part = seqs[:5]
    for i, s in enumerate(part):
        assert_rows_equal(ref.frequencies_for(s), want[i], f"reference prefill, sequence {i}")
    assert_scores_equal(ref.score(part), [expected_score(w, s) for w, s in zip(want, part, strict=False)])
    for i, got in enumerate(lockstep_rows(ref, part[:3], seed=3)):
        assert_rows_equal(got, want[i], f"reference steps, sequence {i}")
