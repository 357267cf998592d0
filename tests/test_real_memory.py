"""The file-wide memory with the default model (SmolLM2-135M, its 49,152-token table):
a group of 64 chunks coded with the memory decodes with the compressor's integer tables
at 64 slots on 2 threads (all chunks in lock step, step.c's threaded loops), and with
fewer slots than the group (waves) on 1 and 2 threads.

Kept cheap like test_real_exactness.py: 64 chunks of 1 to 10 tokens and a memory block of
3 positions, so a decode is a few dozen engine steps. test_file_memory.py runs every
slot count (1, 3, 17, 64) and both thread counts on a tiny model.
"""

from __future__ import annotations

import random

import pytest
import torch
from test_file_memory import coded_tables
from test_real_exactness import TEXT, real, threads  # noqa: F401  (fixtures)

from lmzip.engine.engine import Engine
from lmzip.lm_codec import LMCodec

pytestmark = pytest.mark.requires_model

GROUP = 64
BLOCK = 3


def _chunks() -> list[bytes]:
    """64 pieces of TEXT of 2 to 30 bytes, some overlapping: the memory has repeats to find."""
    data = TEXT.encode()
    rng = random.Random(64)
    out = []
    for i in range(GROUP):
        n = 2 + rng.randrange(29)
        start = rng.randrange(len(data) - n) if i % 3 else (i * 7) % 120  # every third from the start
        out.append(data[start : start + n])
    return out


@pytest.fixture(scope="module")
def coded(real: Engine) -> tuple[list[tuple[bytes, int]], list[list]]:  # noqa: F811
    with pytest.MonkeyPatch.context() as mp:
        seen = coded_tables(mp)
        enc = LMCodec(real, batch=GROUP, threads=1, memory_block=BLOCK)
        enc.encode_chunks(_chunks())
        items = enc.finish_group(list(range(GROUP)))
    return items, list(seen.values())


@pytest.mark.parametrize(("slots", "n_threads"), [(64, 2), (17, 1), (3, 2)])
def test_real_memory_group_same_tables(real, coded, monkeypatch, slots, n_threads):  # noqa: F811
    items, want = coded
    assert len(want) == GROUP and sum(bool(b.tokens) for rows in want for *_, b in rows) > 20
    seen = coded_tables(monkeypatch)
    try:
        dec = LMCodec(real, batch=slots, threads=n_threads, memory_block=BLOCK, memory_group=GROUP)
        assert dec.decode_chunks(items) == _chunks()
    finally:
        torch.set_num_threads(1)
    for i, (g, w) in enumerate(zip(seen.values(), want, strict=True)):
        assert g == w, f"{slots} slots, {n_threads} threads: chunk {i} coded with other tables"
