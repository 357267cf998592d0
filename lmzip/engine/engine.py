"""The LM engine: integer next-token frequencies for batches of token sequences.

A sequence is coded as ``[BOS] + tokens``; the row for token p is the model's
distribution given the context ``[BOS] + tokens[c(p):p]``. The context window slides
deterministically: once a query would sit at position ``window``, the context restarts
from the last ``keep`` tokens (re-prefilled behind a fresh BOS). Compression
(``score``) and decompression (``LockstepDecoder``) follow the same schedule, so both
sides compute every row from the same integers.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import torch

from lmzip.engine.loader import LoadedModel, ModelIdentity, load_model
from lmzip.engine.model import ExactLlama, Frequencies, KVCache, frequencies
from lmzip.tokens import ByteTokenizer

DEFAULT_WINDOW = 1024
PREFILL_TOKEN_BUDGET = 1024  # tokens per prefill batch: small working sets stay in cache (measured)
LOGIT_ROWS = 64  # rows of vocabulary-wide work at a time (measured: 64 beats 256)


@dataclass(frozen=True)
class Segment:
    """One prefill: inputs [BOS] + tokens[start:stop-1]; it predicts tokens[first:stop]."""

    seq: int
    start: int  # c: first context token
    first: int  # first token this segment predicts
    stop: int


def schedule(n_tokens: int, window: int, keep: int) -> list[tuple[int, int, int]]:
    """(context start, first predicted, stop) for each window of an n-token sequence."""
    out = []
    first, start = 0, 0
    while first < n_tokens:
        stop = min(n_tokens, start + window)  # query positions p - start <= window - 1
        out.append((start, first, stop))
        first = stop
        start = stop - keep
    return out


def keep_freed_memory() -> None:
    """Keep glibc from handing big tensors' memory back to the OS after every free.

    The engine allocates and frees many 1-30 MB intermediates per forward pass; by default
    glibc serves each from a fresh mmap, and the page faults that zero it again cost a
    third of the run time (measured: prefill 415 -> 570 tokens/s, same peak RSS). Serving
    blocks up to 32 MiB (glibc's maximum) from the heap keeps their pages mapped. The
    engine's block sizes keep intermediates under that. No effect off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 256 << 20)
    except (OSError, AttributeError):
        pass


def _window_start(p: int, window: int, keep: int) -> int:
    """Context start c for predicting token p under the sliding schedule."""
    return schedule(p + 1, window, keep)[-1][0]


class Engine:
    def __init__(
        self,
        loaded: LoadedModel,
        window: int = DEFAULT_WINDOW,
        keep: int | None = None,
        device: str = "cpu",
        backend: str | None = None,
    ):
        keep_freed_memory()
        torch.set_float32_matmul_precision("highest")  # no TF32 / bf16 shortcuts in fp32 GEMMs
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.loaded = loaded  # the converted weights, for building engines with other settings
        self.identity: ModelIdentity = loaded.identity
        self.window = window
        self.keep = window // 2 if keep is None else keep
        if not 0 < self.keep < window:
            raise ValueError("keep must be between 0 and window")
        self.device = torch.device(device)
        weights = _to_device(loaded.weights, self.device)
        self.model = ExactLlama(weights, window, backend or "int_mm", device)
        self.tokenizer = ByteTokenizer(loaded.tokenizer_path)
        self.bos = loaded.bos_id
        self.vocab_size = weights.config.vocab_size

    @classmethod
    def load(cls, model: str | None = None, **kwargs) -> Engine:
        return cls(load_model(model), **kwargs)

    # -- compression: whole windows at once ---------------------------------

    def score(self, sequences: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(cumulative frequency, frequency) of every token of every sequence, as int64 arrays."""
        cums = [np.zeros(len(s), dtype=np.int64) for s in sequences]
        freqs = [np.zeros(len(s), dtype=np.int64) for s in sequences]
        segments = [
            Segment(i, start, first, stop)
            for i, seq in enumerate(sequences)
            for start, first, stop in schedule(len(seq), self.window, self.keep)
        ]
        segments.sort(key=lambda s: s.stop - s.start, reverse=True)
        batch: list[Segment] = []
        for seg in segments:
            if batch and (len(batch) + 1) * (batch[0].stop - batch[0].start) > PREFILL_TOKEN_BUDGET:
                self._score_batch(batch, sequences, cums, freqs)
                batch = []
            batch.append(seg)
        if batch:
            self._score_batch(batch, sequences, cums, freqs)
        return list(zip(cums, freqs, strict=True))

    def _score_batch(self, batch: list[Segment], sequences, cums, freqs) -> None:
        longest = max(s.stop - s.start for s in batch)
        tokens = torch.full((len(batch), longest), self.bos, dtype=torch.long)
        for row, s in enumerate(batch):
            ctx = sequences[s.seq][s.start : s.stop - 1]
            tokens[row, 1 : 1 + len(ctx)] = torch.tensor(ctx, dtype=torch.long)
        with torch.inference_mode():
            hidden, _ = self.model.prefill(tokens.to(self.device))
            # rows that predict tokens[first:stop]: query position p - start
            rows, targets, where = [], [], []
            for row, s in enumerate(batch):
                for p in range(s.first, s.stop):
                    rows.append((row, p - s.start))
                    targets.append(sequences[s.seq][p])
                    where.append((s.seq, p))
            idx = torch.tensor(rows, dtype=torch.long, device=self.device)
            tgt = torch.tensor(targets, dtype=torch.long, device=self.device)
            for lo in range(0, len(rows), LOGIT_ROWS):
                sel = idx[lo : lo + LOGIT_ROWS]
                h = hidden[sel[:, 0], sel[:, 1]]
                cum, picked = frequencies(self.model.logits(h)).bounds(tgt[lo : lo + LOGIT_ROWS])
                for (seq, p), c, fr in zip(where[lo : lo + LOGIT_ROWS], cum.tolist(), picked.tolist(), strict=True):
                    cums[seq][p] = c
                    freqs[seq][p] = fr

    # -- decompression: one token per sequence per step ---------------------

    def frequencies_for(self, sequence: list[int]) -> torch.Tensor:
        """Full frequency rows [n, vocab] for one sequence via prefill (tests and tools)."""
        out = []
        with torch.inference_mode():
            for start, first, stop in schedule(len(sequence), self.window, self.keep):
                ctx = [self.bos] + sequence[start : stop - 1]
                hidden, _ = self.model.prefill(torch.tensor([ctx], device=self.device))
                out.append(frequencies(self.model.logits(hidden[0, first - start : stop - start])).table())
        return torch.cat(out) if out else torch.zeros(0, self.vocab_size, dtype=torch.long)

    def decoder(self, capacity: int) -> LockstepDecoder:
        return LockstepDecoder(self, capacity)


class LockstepDecoder:
    """Advances up to ``capacity`` sequences by one token per step, each in its own cache slot.

    ``begin(slot)`` starts a sequence; ``frequencies()`` returns the rows for every active
    slot's next token; ``push(tokens)`` appends the decoded tokens. Sequences join and
    leave at any step; the rows do not depend on who else is in the batch.
    """

    def __init__(self, engine: Engine, capacity: int):
        self.engine = engine
        self.model = engine.model
        self.capacity = capacity
        self.cache = KVCache.empty(self.model.config, capacity, engine.window, engine.device)
        self.tokens: dict[int, list[int]] = {}  # slot -> tokens decoded so far
        self.start: dict[int, int] = {}  # slot -> context start c
        self.pending: dict[int, torch.Tensor] = {}  # slot -> hidden state of its last query

    def begin(self, slot: int, known: list[int] | None = None) -> None:
        """Start a sequence in ``slot``; ``known`` tokens (already decoded) are prefilled."""
        self.tokens[slot] = list(known or [])
        n = len(self.tokens[slot])
        self.start[slot] = _window_start(n, self.engine.window, self.engine.keep)
        self._prefill([slot])

    def finish(self, slot: int) -> None:
        for d in (self.tokens, self.start, self.pending):
            d.pop(slot, None)

    def active(self) -> list[int]:
        return sorted(self.tokens)

    def distributions(self) -> Frequencies:
        """Next-token distributions of the active slots, in slot order."""
        with torch.inference_mode():
            hidden = torch.stack([self.pending[s] for s in self.active()])
            return frequencies(self.model.logits(hidden))

    def frequencies(self) -> torch.Tensor:
        """The same as full frequency rows [active, vocab]."""
        return self.distributions().table()

    def push(self, new_tokens: dict[int, int]) -> None:
        """Append one decoded token to each given slot and compute its next hidden state."""
        eng = self.engine
        steppers, refills = [], []
        for slot, token in new_tokens.items():
            toks = self.tokens[slot]
            toks.append(token)
            p = len(toks)  # index of the next token to predict
            if p - self.start[slot] >= eng.window:  # the query would leave the window
                self.start[slot] = p - eng.keep
                refills.append(slot)
            else:
                steppers.append(slot)
        if steppers:
            # Every slot steps (idle or refilling ones on a dummy token at position 0, which
            # their next prefill overwrites): no cache copies, and rows stay independent.
            with torch.inference_mode():
                toks = torch.full((self.capacity,), eng.bos, dtype=torch.long)
                lengths = torch.zeros(self.capacity, dtype=torch.long)
                for s in steppers:
                    toks[s] = self.tokens[s][-1]
                    lengths[s] = len(self.tokens[s]) - self.start[s]
                hidden = self.model.step(toks.to(eng.device), lengths.to(eng.device), self.cache)
            for s in steppers:
                self.pending[s] = hidden[s]
        if refills:
            self._prefill(refills)

    def _prefill(self, slots: list[int]) -> None:
        eng = self.engine
        ctxs = [[eng.bos] + self.tokens[s][self.start[s] :] for s in slots]
        longest = max(len(c) for c in ctxs)
        batch = torch.full((len(slots), longest), eng.bos, dtype=torch.long)
        for row, c in enumerate(ctxs):
            batch[row, : len(c)] = torch.tensor(c)
        with torch.inference_mode():
            idx = torch.tensor(slots, dtype=torch.long, device=eng.device)
            sub = KVCache.empty(self.model.config, len(slots), eng.window, eng.device)
            hidden, sub = self.model.prefill(batch.to(eng.device), sub)
            _scatter(self.cache, idx, sub)
        for row, (s, c) in enumerate(zip(slots, ctxs, strict=True)):
            self.pending[s] = hidden[row, len(c) - 1]


def _scatter(cache: KVCache, idx: torch.Tensor, sub: KVCache) -> None:
    for f in ("k", "k_scale", "v", "v_scale", "vmax"):
        for dst, src in zip(getattr(cache, f), getattr(sub, f), strict=True):
            dst[idx] = src


def _to_device(weights, device: torch.device):
    if device.type == "cpu":
        return weights
    from lmzip.engine.loader import flatten_weights, unflatten_weights

    flat = {k: v.to(device) for k, v in flatten_weights(weights).items()}
    return unflatten_weights(weights.config, flat)
