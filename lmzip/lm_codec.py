"""The LM codec: chunk bytes -> tokens -> engine frequencies -> range-coded payload, and back.

Compression scores whole chunks at once (prefill); decompression advances every chunk
of a group by one token per engine step, each with its own range decoder. Texts of
spans records (format v3) may hold bytes without a single-byte token: escapes, coded
between the tokens in the same stream (lmzip/spans.py, EscapeCoder) and decoded per
slot between engine steps, so lm and spans records share one lock-step batch.

With file-wide memory (numerics v5-v7, ``memory_block`` > 0) the model's tables for lm
records are mixed with lmzip/memory.py's online models. Which chunks of a group become
lm records is decided on the model's own payloads (``encode_texts``); ``finish_group``
then codes the chosen ones with the memory, in the order the decoder replays: the
group's lm chunks start together and share the memory block by block (see memory.py).
Spans records' texts are coded without the memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from lmzip import defaults
from lmzip import memory as mem
from lmzip import proposals as prop
from lmzip.coder import RangeDecoder, RangeEncoder
from lmzip.container import ModelInfo
from lmzip.engine.engine import Engine, LockstepDecoder
from lmzip.engine.loader import ModelIdentity, load_model
from lmzip.engine.numerics import NUMERICS_VERSION
from lmzip.errors import CorruptChunkError, LmzipError
from lmzip.spans import EscapeCoder, escapes_by_point, insert_escapes, strip_escapes
from lmzip.threads import choose_threads

NUMERICS_MEMORY = mem.MEMORY_NUMERICS[-1]  # what lmzip writes with file-wide memory (v5 archives still decode)
DEFAULT_MEMORY_BLOCK = 12  # positions per memory block (docs/DESIGN.md: ratio against group and block)


@dataclass
class LMCodec:
    engine: Engine
    batch: int  # slots of the lock-step decoder; chunks per group when compressing
    threads: int | None = None  # set in every thread that calls the codec (OpenMP counts are per thread)
    memory_block: int = 0  # 0: no file-wide memory (numerics v4)
    memory_group: int = 0  # chunks per memory group (the archive's; compression: batch)
    memory_numerics: int = NUMERICS_MEMORY  # with memory: the archive's numerics version (5, 6 or 7)
    last_mixed_bits: list[float | None] = field(default_factory=list)  # per text of the last finish_group
    speculate: int = prop.SPECULATE  # guessed tokens verified per slot and engine call (0: none)
    # (text index, its tokens so far, at most how many) -> guesses; None: lmzip/proposals.py
    guess: Callable[[int, list[int], int], list[int]] | None = None
    decode_stats: dict[str, int] = field(default_factory=lambda: {"calls": 0, "rows": 0, "tokens": 0, "accepted": 0})
    _memory: mem.FileMemory | None = None
    _pending: tuple[list[list[int]], dict[int, tuple[np.ndarray, np.ndarray]], list[bytes]] | None = None

    def __post_init__(self) -> None:
        if self.memory_block and not self.memory_group:
            self.memory_group = self.batch

    def fresh(self) -> LMCodec:
        """A codec on the same engine with an empty file-wide memory: one per archive."""
        return dataclasses.replace(
            self, last_mixed_bits=[], _memory=None, _pending=None, decode_stats=dict.fromkeys(self.decode_stats, 0)
        )

    @property
    def memory(self) -> mem.FileMemory:
        if self._memory is None:
            self._memory = mem.FileMemory(
                self.engine.vocab_size, self.memory_block, self.memory_numerics, self.engine.tokenizer.digit_tokens
            )
        return self._memory

    def _set_threads(self) -> None:
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    @property
    def identity(self) -> ModelIdentity:
        return self.engine.identity

    @property
    def numerics_version(self) -> int:
        return self.memory_numerics if self.memory_block else NUMERICS_VERSION

    @property
    def context_window(self) -> int:
        return self.engine.window

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
        """(payload, token count) of an lm record per chunk; None when the chunk needs escapes."""
        out: list[tuple[bytes, int] | None] = []
        escapable = self.engine.tokenizer.escapable
        plain = [not any(escapable[b] for b in set(c)) for c in chunks]
        coded = iter(self.encode_texts([c for c, ok in zip(chunks, plain, strict=True) if ok]))
        for ok in plain:
            payload, tokens, _ = next(coded) if ok else (b"", 0, 0)
            out.append((payload, tokens) if ok and tokens else None)
        return out

    def encode_texts(self, texts: list[bytes]) -> list[tuple[bytes, int, int]]:
        """(range-coder bytes, token count T, escape count E) per text; any bytes at all.

        Bytes without a single-byte token are taken out before tokenizing and coded as
        escapes between the tokens (lmzip/spans.py, EscapeCoder). A text without them
        gives exactly an lm record's payload."""
        self._set_threads()
        tok = self.engine.tokenizer
        escapable = tok.escapable
        stripped = [strip_escapes(t, escapable) for t in texts]
        tokenized = tok.encode_batch([c for c, _ in stripped], byte_fallback=True)
        seqs: list[list[int]] = []
        for ids in tokenized:
            if ids is None:  # cannot happen: every byte left has a single-byte token
                raise ValueError("text not tokenizable after escaping")
            seqs.append(ids)
        todo = [i for i, ids in enumerate(seqs) if ids]
        scored = dict(zip(todo, self.engine.score([seqs[i] for i in todo]) if todo else [], strict=True))
        values = [b for b in range(256) if escapable[b]]
        out = []
        for i, (ids, (_, escapes)) in enumerate(zip(seqs, stripped, strict=True)):
            enc = RangeEncoder()
            if i in scored:
                cums, freqs = scored[i]
                if not escapes:
                    enc.encode_many(cums, freqs)
                else:
                    lengths = [len(tok.id_to_bytes[t]) for t in ids]
                    points = escapes_by_point(escapes, lengths)
                    esc = EscapeCoder(values, len(escapes), len(ids))
                    cl, fl = cums.tolist(), freqs.tolist()
                    for j in range(len(ids)):
                        esc.encode_point(enc, j, points[j], lengths[j - 1] if j else 0)
                        if esc.left:
                            enc.encode(cl[j], fl[j])
                        else:
                            enc.encode_many(cums[j:], freqs[j:])
                            break
                    else:
                        esc.encode_point(enc, len(ids), points[len(ids)], lengths[-1])
            elif escapes:
                esc = EscapeCoder(values, len(escapes), 0)
                esc.encode_point(enc, 0, [(0, v) for _, v in escapes], 0)
            out.append((enc.finish(), len(ids), len(escapes)))
        self._pending = (seqs, scored, [payload for payload, _, _ in out])
        return out

    def finish_group(self, indices: list[int]) -> list[tuple[bytes, int]]:
        """(payload, token count) of the texts ``indices`` (of the last ``encode_texts``
        call; texts without escapes, in chunk order) coded as lm records with the
        file-wide memory, which then holds them. Without memory: their own payloads."""
        self.last_mixed_bits = [None] * len(indices)
        if not indices:  # also a group with no text at all (no encode_texts call)
            self._pending = None
            return []
        assert self._pending is not None, "finish_group follows encode_texts"
        seqs, scored, plain = self._pending
        self._pending = None
        if not self.memory_block:  # numerics v4: the model's own payloads
            return [(plain[i], len(seqs[i])) for i in indices]
        group = [(seqs[i], scored[i][0].tolist(), scored[i][1].tolist()) for i in indices]
        mixed = mem.encode_group(self.memory, group) if group else []
        out = []
        for k, (cums, freqs) in enumerate(mixed):
            f = np.array(freqs, dtype=np.int64)
            enc = RangeEncoder()
            enc.encode_many(np.array(cums, dtype=np.int64), f)
            out.append((enc.finish(), len(freqs)))
            self.last_mixed_bits[k] = float(mem.FREQ_BITS * len(f) - np.log2(f.astype(np.float64)).sum())
        return out

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        """Decode lm records' chunks (see decode_texts). With memory, ``items`` are the lm
        records of one memory group, in chunk order."""
        if self.memory_block:
            self._set_threads()
            return self._decode_group(items)
        return self.decode_texts([(p, t, 0) for p, t in items])

    def decode_texts(self, items: list[tuple[bytes, int, int]]) -> list[bytes]:
        """Inverse of encode_texts, in lock step, at most ``batch`` at a time; finished
        ones leave the batch. Escapes are decoded per slot between engine steps."""
        self._set_threads()
        tok = self.engine.tokenizer
        values = [b for b in range(256) if tok.escapable[b]]
        if any(e for _, _, e in items) and not values:
            raise CorruptChunkError("escapes declared, but every byte has a token")
        results: list[list[int]] = [[] for _ in items]
        found: list[list[list[tuple[int, int]]]] = [[] for _ in items]  # escapes per boundary
        waiting = list(range(len(items)))[::-1]
        capacity = max(1, min(self.batch, len(items)))
        decoder = self.engine.decoder(capacity, self.speculate)
        slot_item: dict[int, int] = {}
        coders: dict[int, RangeDecoder] = {}
        escs: dict[int, EscapeCoder] = {}
        matcher = prop.MatchProposer()
        policy = prop.Policy(decoder.speculate)

        def token_len(item: int) -> int:
            return len(tok.id_to_bytes[results[item][-1]]) if results[item] else 0

        def fill() -> None:
            for slot in range(capacity):
                while slot not in slot_item and waiting:
                    item = waiting.pop()
                    payload, tokens, escapes = items[item]
                    dec = RangeDecoder(payload)
                    esc = EscapeCoder(values, escapes, tokens)
                    found[item].append(esc.decode_point(dec, 0, 0))
                    if tokens == 0:
                        continue
                    slot_item[slot] = item
                    coders[slot], escs[slot] = dec, esc
                    decoder.begin(slot)

        def guesses(slot: int, k: int) -> list[int]:
            item = slot_item[slot]
            k = min(k, items[item][1] - len(results[item]) - 1)  # rows past the text's end decode nothing
            if k <= 0:
                return []
            if self.guess is not None:
                return self.guess(item, results[item], k)
            return matcher.propose(item, k)

        fill()
        while slot_item:
            slots = decoder.ready()
            targets = torch.tensor([coders[s].target() for s in slots], dtype=torch.long)
            symbols, lows, sizes = decoder.find(targets)
            for s, sym, low, f in zip(slots, symbols.tolist(), lows.tolist(), sizes.tolist(), strict=True):
                coders[s].consume(low, f)
                item = slot_item[s]
                results[item].append(sym)
                matcher.add(item, sym)
                if escs[s].left:
                    found[item].append(escs[s].decode_point(coders[s], len(results[item]), token_len(item)))
                if len(results[item]) == items[item][1]:
                    decoder.finish(s)
                    del slot_item[s], coders[s], escs[s]
                else:
                    decoder.accept(s, sym)
            if not decoder.ready():  # every slot has used the rows of the last call
                if decoder.pending:
                    decoder.push(proposals=self._proposals(decoder, policy, guesses))
                fill()
        self._count(decoder, sum(t for _, t, _ in items))
        out = []
        for ids, points in zip(results, found, strict=True):
            pieces = [tok.id_to_bytes[i] for i in ids]
            out.append(insert_escapes(pieces, points) if any(points) else b"".join(pieces))
        return out

    def _proposals(
        self, decoder: LockstepDecoder, policy: prop.Policy, guesses: Callable[[int, int], list[int]]
    ) -> dict[int, list[int]]:
        """Guesses for every waiting slot, as many as pay for their rows (injected guesses: all)."""
        for shown, right in decoder.outcomes:
            policy.outcome(shown, right)
        decoder.outcomes.clear()
        slots = len(decoder.pending)
        if self.guess is not None:
            return {s: guesses(s, decoder.speculate) for s in decoder.pending}
        return {s: policy.keep(guesses(s, decoder.speculate), slots) for s in decoder.pending}

    def _count(self, decoder: LockstepDecoder, tokens: int) -> None:
        self.decode_stats["calls"] += decoder.calls
        self.decode_stats["rows"] += decoder.rows_run
        self.decode_stats["tokens"] += tokens
        self.decode_stats["accepted"] += decoder.accepted

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
        decoder = self.engine.decoder(capacity, self.speculate)
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
        self._count(decoder, sum(n for _, n in items))
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
        ``stop`` tokens or ends; a barrier every ``barrier_every`` positions (0: none).

        The model's rows do not depend on the memory, so one engine call may verify
        guesses past a barrier; but the memory mixes each token with the state of its
        block, so a slot decodes no token of the next block before the barrier: it
        waits (ready) until every slot has reached it."""
        memory = self.memory
        policy = prop.Policy(decoder.speculate)
        slot_item = {}
        for slot, i in enumerate(members):
            decoder.begin(slot, results[i])
            slot_item[slot] = i
        start = len(results[members[0]]) if members else 0
        next_barrier = start + barrier_every if barrier_every else None

        def limit(i: int) -> int:  # tokens the slot may hold before the next barrier (or stop)
            n = items[i][1] if stop is None else min(items[i][1], stop)
            return n if next_barrier is None else min(n, next_barrier)

        def guesses(slot: int, k: int) -> list[int]:
            i = slot_item[slot]
            k = min(k, limit(i) - len(results[i]) - 1)
            if k <= 0:
                return []
            if self.guess is not None:
                return self.guess(i, results[i], k)
            return prop.memory_proposals(memory, states[i], k)

        while slot_item:
            slots = [s for s in decoder.ready() if len(results[slot_item[s]]) < limit(slot_item[s])]
            if not slots:
                if decoder.pending:
                    decoder.push(proposals=self._proposals(decoder, policy, guesses))
                else:  # every slot waits at the barrier
                    assert next_barrier is not None
                    memory.barrier(states)
                    next_barrier += barrier_every
                continue
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
                slots,
            )
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
                    decoder.accept(s, sym)


def load_lm_codec(
    model: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch: int = defaults.BATCH,
    window: int | None = None,
    want: ModelInfo | None = None,
    memory_block: int = 0,
    memory_group: int = 0,
) -> LMCodec:
    """The codec for `model` (a --model argument; None: the default model), or, when
    `model` is None and `want` is given, for the model with `want`'s hashes.
    `threads`: None for lmzip.threads' default (usable CPUs less the load).
    `memory_block` > 0: file-wide memory (numerics v7, or `want`'s v5 or v6) in groups of
    `memory_group` chunks (0: the batch, as compression groups them)."""
    check_device(device)  # before the model loads: a bad device is one line, not a traceback
    n = choose_threads(threads)
    if n:
        torch.set_num_threads(n)
    engine = Engine(load_model(model, want), window=window or defaults.WINDOW, device=device)
    archive = want.numerics_version if want is not None else None
    numerics = archive if archive in mem.MEMORY_NUMERICS else NUMERICS_MEMORY
    return LMCodec(engine, batch, n, memory_block=memory_block, memory_group=memory_group, memory_numerics=numerics)


def check_device(device: str) -> None:
    """Raises LmzipError (one line) unless torch can put a tensor on `device`."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise LmzipError(f"unknown device {device!r} ({_first_line(e)})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise LmzipError(
            f"--device {device}: CUDA is not available ({why}, torch {torch.__version__}); use --device cpu"
        )
    try:
        torch.empty(1, device=dev)
    except (AssertionError, RuntimeError, ValueError) as e:  # torch says AssertionError for some builds
        raise LmzipError(f"--device {device}: torch cannot use it ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    """torch's message, cut to its first sentence (some run over hundreds of characters)."""
    lines = str(e).strip().splitlines()
    text = lines[0].split(". ")[0].rstrip(".") if lines else type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."
