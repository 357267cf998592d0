"""The LM codec: chunk bytes -> tokens -> engine frequencies -> range-coded payload, and back.

Compression scores whole chunks at once (prefill); decompression advances every chunk
of a group by one token per engine step, each with its own range decoder.

With file-wide memory (numerics v5, ``memory_block`` > 0) the model's tables are mixed
with lmzip/memory.py's online models. Which chunks of a group become lm records is
decided on the model's own payloads (``encode_chunks``); ``finish_group`` then codes
the chosen ones with the memory, in the order the decoder replays: the group's lm
chunks start together and share the memory block by block (see memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lmzip import memory as mem
from lmzip.coder import RangeDecoder, RangeEncoder
from lmzip.engine.engine import DEFAULT_WINDOW, Engine, LockstepDecoder
from lmzip.engine.loader import ModelIdentity, load_model
from lmzip.engine.numerics import NUMERICS_VERSION

NUMERICS_MEMORY = 5  # numerics version of archives whose lm records use file-wide memory
DEFAULT_MEMORY_BLOCK = 12  # positions per memory block (docs/DESIGN.md: ratio against group and block)


@dataclass
class LMCodec:
    engine: Engine
    batch: int  # slots of the lock-step decoder; chunks per group when compressing
    memory_block: int = 0  # 0: no file-wide memory (numerics v4)
    memory_group: int = 0  # chunks per memory group (the archive's; compression: batch)
    last_mixed_bits: list[float | None] = field(default_factory=list)  # per chunk of the last finish_group
    _memory: mem.FileMemory | None = None
    _pending: tuple[list[list[int]], list[tuple[np.ndarray, np.ndarray]], list[int]] | None = None
    _plain: list[tuple[bytes, int] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.memory_block and not self.memory_group:
            self.memory_group = self.batch

    @property
    def identity(self) -> ModelIdentity:
        return self.engine.identity

    @property
    def numerics_version(self) -> int:
        return NUMERICS_MEMORY if self.memory_block else NUMERICS_VERSION

    def reset_memory(self) -> None:
        """Forget the file-wide memory (each archive starts with an empty one)."""
        self._memory = None
        self._pending = None

    @property
    def memory(self) -> mem.FileMemory:
        if self._memory is None:
            self._memory = mem.FileMemory(self.engine.vocab_size, self.memory_block)
        return self._memory

    @property
    def context_window(self) -> int:
        return self.engine.window

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
        tokenized = self.engine.tokenizer.encode_batch(chunks)
        todo = [i for i, t in enumerate(tokenized) if t]
        scored = self.engine.score([tokenized[i] for i in todo]) if todo else []
        out: list[tuple[bytes, int] | None] = [None] * len(chunks)
        for i, (cums, freqs) in zip(todo, scored, strict=True):
            enc = RangeEncoder()
            enc.encode_many(cums, freqs)
            out[i] = (enc.finish(), len(freqs))
        self._pending = (tokenized, scored, todo)
        self._plain = out
        return out

    def finish_group(self, use_lm: list[bool]) -> list[tuple[bytes, int] | None]:
        """Code the chosen chunks of the group just given to ``encode_chunks`` with the
        file-wide memory (which then holds them); the others are None."""
        assert self._pending is not None, "finish_group follows encode_chunks"
        tokenized, scored, todo = self._pending
        self._pending = None
        if not self.memory_block:  # numerics v4: the model's own payloads
            self.last_mixed_bits = [None] * len(use_lm)
            return self._plain
        chosen = [(i, sc) for i, sc in zip(todo, scored, strict=True) if use_lm[i]]
        seqs = [(tokenized[i], sc[0].tolist(), sc[1].tolist()) for i, sc in chosen]
        mixed = mem.encode_group(self.memory, seqs) if seqs else []
        out: list[tuple[bytes, int] | None] = [None] * len(use_lm)
        self.last_mixed_bits = [None] * len(use_lm)
        for (i, _), (cums, freqs) in zip(chosen, mixed, strict=True):
            f = np.array(freqs, dtype=np.int64)
            enc = RangeEncoder()
            enc.encode_many(np.array(cums, dtype=np.int64), f)
            out[i] = (enc.finish(), len(freqs))
            self.last_mixed_bits[i] = float(mem.FREQ_BITS * len(f) - np.log2(f.astype(np.float64)).sum())
        return out

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        """Decode chunks in lock step, at most ``batch`` at a time; finished ones leave the batch.
        With memory, ``items`` are the lm records of one group, in chunk order."""
        if self.memory_block:
            return self._decode_group(items)
        results: list[list[int]] = [[] for _ in items]
        waiting = list(range(len(items)))[::-1]
        capacity = max(1, min(self.batch, len(items)))
        decoder = self.engine.decoder(capacity)
        slot_item: dict[int, int] = {}
        coders: dict[int, RangeDecoder] = {}

        def fill() -> None:
            for slot in range(capacity):
                if slot not in slot_item and waiting:
                    item = waiting.pop()
                    if items[item][1] == 0:
                        continue
                    slot_item[slot] = item
                    coders[slot] = RangeDecoder(items[item][0])
                    decoder.begin(slot)

        fill()
        while slot_item:
            slots = decoder.active()
            targets = torch.tensor([coders[s].target() for s in slots], dtype=torch.long)
            symbols, lows, sizes = decoder.find(targets)
            pushes: dict[int, int] = {}
            for s, sym, low, f in zip(slots, symbols.tolist(), lows.tolist(), sizes.tolist(), strict=True):
                coders[s].consume(low, f)
                item = slot_item[s]
                results[item].append(sym)
                if len(results[item]) == items[item][1]:
                    decoder.finish(s)
                    del slot_item[s], coders[s]
                else:
                    pushes[s] = sym
            if pushes:
                decoder.push(pushes)
            fill()
        return [self.engine.tokenizer.decode(r) for r in results]

    def _decode_group(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        """One memory group: all its chunks in lock step when the slots suffice, else
        block by block in waves of ``batch`` chunks (each wave restarts its chunks' model
        state from their tokens so far: slower, same tables)."""
        memory = self.memory
        live = [i for i, (_, n) in enumerate(items) if n > 0]
        states = [mem.ChunkState() for _ in items]
        results: list[list[int]] = [[] for _ in items]
        coders = {i: RangeDecoder(items[i][0]) for i in live}
        capacity = max(1, min(self.batch, len(live)))
        decoder = self.engine.decoder(capacity)
        block = self.memory_block
        if len(live) <= capacity:
            self._wave(decoder, live, items, states, results, coders, None, block)
        else:
            longest = max(items[i][1] for i in live)
            for start in range(0, longest, block):
                todo = [i for i in live if items[i][1] > start]
                for w in range(0, len(todo), capacity):
                    self._wave(decoder, todo[w : w + capacity], items, states, results, coders, start + block, 0)
                memory.barrier(states)
        memory.barrier(states)
        return [self.engine.tokenizer.decode(r) for r in results]

    def _wave(
        self,
        decoder: LockstepDecoder,
        members: list[int],
        items: list[tuple[bytes, int]],
        states: list[mem.ChunkState],
        results: list[list[int]],
        coders: dict[int, RangeDecoder],
        stop: int | None,
        barrier_every: int,
    ) -> None:
        """Decode ``members`` (all at the same position) in lock step until each has
        ``stop`` tokens or ends; a barrier every ``barrier_every`` positions (0: none)."""
        memory = self.memory
        slot_item = {}
        for slot, i in enumerate(members):
            decoder.begin(slot, results[i])
            slot_item[slot] = i
        while slot_item:
            slots = decoder.active()
            preds = [memory.predict(states[slot_item[s]]) for s in slots]
            starts = [0]
            cand: list[int] = []
            boosts: list[int] = []
            for p in preds:
                cand.extend(p.boosts.tokens)
                boosts.extend(p.boosts.boosts)
                starts.append(len(cand))
            symbols, lows, sizes, lm_sizes = decoder.find_mixed(
                torch.tensor([coders[slot_item[s]].target() for s in slots], dtype=torch.long),
                torch.tensor([p.boosts.spread for p in preds], dtype=torch.long),
                torch.tensor(starts, dtype=torch.long),
                torch.tensor(cand, dtype=torch.long),
                torch.tensor(boosts, dtype=torch.long),
            )
            pushes: dict[int, int] = {}
            rows = zip(slots, preds, symbols.tolist(), lows.tolist(), sizes.tolist(), lm_sizes.tolist(), strict=True)
            for s, pred, sym, low, f, lm_f in rows:
                i = slot_item[s]
                coders[i].consume(low, f)
                memory.observe(states[i], pred, sym, lm_f, f)
                results[i].append(sym)
                if len(results[i]) == items[i][1] or len(results[i]) == stop:
                    decoder.finish(s)
                    del slot_item[s]
                else:
                    pushes[s] = sym
            if pushes:
                decoder.push(pushes)
            if barrier_every and slot_item and len(results[slot_item[min(slot_item)]]) % barrier_every == 0:
                memory.barrier(states)


def load_lm_codec(
    model: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch: int = 32,
    window: int | None = None,
    memory_block: int = 0,
    memory_group: int = 0,
) -> LMCodec:
    """memory_block > 0: file-wide memory (numerics v5) in groups of memory_group chunks
    (0: the batch, as compression groups them)."""
    if threads:
        torch.set_num_threads(threads)
    engine = Engine(load_model(model), window=window or DEFAULT_WINDOW, device=device)
    return LMCodec(engine, batch, memory_block=memory_block, memory_group=memory_group)
