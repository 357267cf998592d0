"""The LM engine: integer next-token frequencies for batches of token sequences.

A sequence is coded as ``[BOS] + tokens``: token i sits at position i + 1 and its row is
the model's distribution after positions 0..i. Attention slides without resets: every
query sees the BOS (an attention sink) and the last ``window - 1`` positions, through a
ring cache (model.py). Compression (``score``) runs whole sequences in segments of
positions; decompression (``LockstepDecoder``) runs one position per step. Both compute
every token from the same context, so both sides get the same integers.
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch

from lmzip import defaults
from lmzip.engine.loader import LoadedModel, ModelIdentity, load_model
from lmzip.engine.model import ExactLlama, Frequencies, KVCache, frequencies
from lmzip.tokens import ByteTokenizer

DEFAULT_WINDOW = defaults.WINDOW
SEGMENT = 256  # positions per extend when scoring (scripts/tradeoff.py --segment compares others)
PREFILL_TOKEN_BUDGET = 1024  # sequences x SEGMENT per batch: small working sets stay in cache
LOGIT_ROWS = 64  # rows of vocabulary-wide work at a time (measured: 64 beats 256)


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


class Engine:
    def __init__(
        self,
        loaded: LoadedModel,
        window: int = DEFAULT_WINDOW,
        device: str = "cpu",
        backend: str | None = None,
        segment: int = SEGMENT,
        kernels: str | None = None,
    ):
        keep_freed_memory()
        torch.set_float32_matmul_precision("highest")  # no TF32 / bf16 shortcuts in fp32 GEMMs
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.loaded = loaded  # the converted weights, for building engines with other settings
        self.identity: ModelIdentity = loaded.identity
        self.window = window
        self.segment = segment
        self.device = torch.device(device)
        weights = _to_device(loaded.weights, self.device)
        self.model = ExactLlama(weights, window, backend or "int_mm", device, kernels)
        self.tokenizer = ByteTokenizer(loaded.tokenizer_path)
        self.bos = loaded.bos_id
        self.vocab_size = weights.config.vocab_size

    @classmethod
    def load(cls, model: str | None = None, **kwargs) -> Engine:
        return cls(load_model(model), **kwargs)

    def _inputs(self, sequences: list[list[int]]) -> torch.Tensor:
        """[BOS] + tokens[:-1] of each sequence, right-padded with BOS: [B, longest]."""
        longest = max(len(s) for s in sequences)
        tokens = torch.full((len(sequences), longest), self.bos, dtype=torch.long)
        for row, seq in enumerate(sequences):
            tokens[row, 1 : len(seq)] = torch.tensor(seq[:-1], dtype=torch.long)
        return tokens.to(self.device)

    # -- compression: whole sequences, a segment of positions at a time -------

    def score(self, sequences: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(cumulative frequency, frequency) of every token of every sequence, as int64 arrays."""
        cums = [np.zeros(len(s), dtype=np.int64) for s in sequences]
        freqs = [np.zeros(len(s), dtype=np.int64) for s in sequences]
        order = sorted((i for i, s in enumerate(sequences) if s), key=lambda i: len(sequences[i]), reverse=True)
        per_batch = max(1, PREFILL_TOKEN_BUDGET // self.segment)
        with torch.inference_mode():
            for b0 in range(0, len(order), per_batch):
                batch = order[b0 : b0 + per_batch]
                self._score_batch([sequences[i] for i in batch], [cums[i] for i in batch], [freqs[i] for i in batch])
        return list(zip(cums, freqs, strict=True))

    def _score_batch(self, seqs: list[list[int]], cums: list[np.ndarray], freqs: list[np.ndarray]) -> None:
        """Score sequences given longest first: a sequence that has ended leaves the batch
        (the cache rows of the ones still running are a prefix, kept as views)."""
        assert all(len(a) >= len(b) for a, b in zip(seqs, seqs[1:], strict=False)), "longest first"
        inputs = self._inputs(seqs)
        cache = self.model.empty_cache(len(seqs))
        for start in range(0, inputs.shape[1], self.segment):
            live = [r for r, s in enumerate(seqs) if len(s) > start]  # rows with real tokens here
            if len(live) < cache.pos.shape[0]:
                cache = cache.first(len(live))
            hidden = self.model.extend(inputs[: len(live), start : start + self.segment], start, cache)
            rows = [(r, p) for r in live for p in range(start, min(len(seqs[r]), start + hidden.shape[1]))]
            idx = torch.tensor(rows, dtype=torch.long, device=self.device)
            tgt = torch.tensor([seqs[r][p] for r, p in rows], dtype=torch.long, device=self.device)
            for lo in range(0, len(rows), LOGIT_ROWS):
                sel = idx[lo : lo + LOGIT_ROWS]
                h = hidden[sel[:, 0], sel[:, 1] - start]
                cum, picked = self.model.bounds(self.model.logits(h), tgt[lo : lo + LOGIT_ROWS])
                for (r, p), c, f in zip(rows[lo : lo + LOGIT_ROWS], cum.tolist(), picked.tolist(), strict=True):
                    cums[r][p] = c
                    freqs[r][p] = f

    def frequencies_for(self, sequence: list[int]) -> torch.Tensor:
        """Full frequency rows [n, vocab] for one sequence, all positions in one extend (tests, tools)."""
        if not sequence:
            return torch.zeros(0, self.vocab_size, dtype=torch.long)
        with torch.inference_mode():
            hidden = self.model.extend(self._inputs([sequence]), 0, self.model.empty_cache(1))
            return torch.cat([frequencies(self.model.logits(h)).table() for h in hidden[0].split(LOGIT_ROWS)])

    # -- decompression: one token per sequence per step ---------------------

    def decoder(self, capacity: int) -> LockstepDecoder:
        return LockstepDecoder(self, capacity)


class LockstepDecoder:
    """Advances up to ``capacity`` sequences by one token per step, each in its own cache slot.

    ``begin(slot)`` starts a sequence; ``distributions()`` gives the rows for every active
    slot's next token; ``push(tokens)`` appends one decoded token to every active slot.
    Sequences join and leave at any step; the rows do not depend on who else is in the batch.
    """

    def __init__(self, engine: Engine, capacity: int):
        self.engine = engine
        self.model = engine.model
        self.capacity = capacity
        self.cache = self.model.empty_cache(capacity)
        self.length: dict[int, int] = {}  # slot -> positions so far (BOS included)
        self.logits = torch.zeros(capacity, engine.vocab_size, device=engine.device)  # after each slot's last position

    def begin(self, slot: int, known: list[int] | None = None) -> None:
        """Start a sequence in ``slot``; ``known`` tokens (already decoded) are run in one extend."""
        eng = self.engine
        ctx = [eng.bos] + list(known or [])
        with torch.inference_mode():
            sub = self.model.empty_cache(1)
            hidden = self.model.extend(torch.tensor([ctx], device=eng.device), 0, sub)
            _scatter(self.cache, torch.tensor([slot], device=eng.device), sub)
            self.logits[slot] = self.model.logits(hidden[0, -1:])[0]
        self.length[slot] = len(ctx)

    def finish(self, slot: int) -> None:
        self.length.pop(slot, None)

    def active(self) -> list[int]:
        return sorted(self.length)

    def distributions(self) -> Frequencies:
        """Next-token distributions of the active slots, in slot order."""
        with torch.inference_mode():
            return frequencies(self._active_logits())

    def find(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, CF, f) per active slot, in slot order, for the range decoders' targets."""
        with torch.inference_mode():
            return self.model.find(self._active_logits(), targets)

    def find_mixed(
        self,
        targets: torch.Tensor,
        spreads: torch.Tensor,
        starts: torch.Tensor,
        cand: torch.Tensor,
        boosts: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, mixed CF, mixed f, model f) per active slot: ``find`` on the model's table
        mixed with file-wide memory (lmzip/memory.py; row r's candidates are
        cand[starts[r]:starts[r + 1]], sorted, with their boosts)."""
        with torch.inference_mode():
            return self.model.mixed_find(self._active_logits(), targets, spreads, starts, cand, boosts)

    def frequencies(self) -> torch.Tensor:
        """The same as full frequency rows [active, vocab]."""
        return self.distributions().table()

    def push(self, new_tokens: dict[int, int]) -> None:
        """Append one decoded token to every active slot and compute its next logits."""
        if sorted(new_tokens) != self.active():
            raise ValueError("push needs one token for every active slot")
        eng = self.engine
        # Every slot steps; idle ones on a dummy token at position 0 of their own ring, which
        # the next begin() replaces: no cache copies, and rows stay independent.
        tokens = torch.full((self.capacity,), eng.bos, dtype=torch.long)
        positions = torch.zeros(self.capacity, dtype=torch.long)
        for slot, token in new_tokens.items():
            tokens[slot] = token
            positions[slot] = self.length[slot]
            self.length[slot] += 1
        with torch.inference_mode():
            self.logits = self.model.step_logits(tokens.to(eng.device), positions.to(eng.device), self.cache)

    def _active_logits(self) -> torch.Tensor:
        active = self.active()
        return self.logits if len(active) == self.capacity else self.logits[active]


def _scatter(cache: KVCache, idx: torch.Tensor, sub: KVCache) -> None:
    for dsts, srcs in zip(cache.fields(), sub.fields(), strict=True):
        for dst, src in zip(dsts, srcs, strict=True):
            dst[idx] = src
    cache.pos[idx] = sub.pos


def _to_device(weights, device: torch.device):
    if device.type == "cpu":
        return weights
    from lmzip.engine.loader import flatten_weights, unflatten_weights

    flat = {k: v.to(device) for k, v in flatten_weights(weights).items()}
    return unflatten_weights(weights.config, flat)
