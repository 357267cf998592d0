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
from lmzip.engine.frequencies import Frequencies, frequencies
from lmzip.engine.loader import LoadedModel, ModelIdentity, load_model
from lmzip.engine.model import ExactLlama, KVCache
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

    def decoder(self, capacity: int, speculate: int = 0) -> LockstepDecoder:
        return LockstepDecoder(self, capacity, speculate)


class LockstepDecoder:
    """Advances up to ``capacity`` sequences in lock step, each in its own cache slot.

    ``begin(slot)`` starts a sequence; ``distributions()``/``find`` give the rows for the
    next token of every *ready* slot; ``accept(slot, token)`` hands a decoded token back;
    ``push()`` runs one engine call for every slot waiting with a decoded token.
    Sequences join and leave at any step; the rows do not depend on who else is in the batch.

    Speculative verification (``speculate`` > 0, C step only): ``push`` may carry, per
    slot, up to ``speculate`` proposed tokens that might follow its decoded token. One
    call computes the rows of the decoded token and of each proposal (step.c step_rows:
    the integers of single steps). When the next decoded token equals the first proposal,
    ``accept`` keeps the slot ready on the proposal's row, and so on; at the first
    mismatch the slot waits for a push with the token decoded, and the remaining rows are
    dropped. The rows a slot is given never depend on the proposals, only how many engine
    calls it takes to get them. The ring cache has ``speculate`` spare entries, so a
    call writing proposals never overwrites a key that one of its rows still sees.
    """

    def __init__(self, engine: Engine, capacity: int, speculate: int = 0):
        self.engine = engine
        self.model = engine.model
        self.capacity = capacity
        self.rows_kernel = self.model.speculative_rows()  # step_rows: ragged rows, idle slots cost nothing
        self.speculate = speculate if self.rows_kernel else 0
        self.cache = self.model.empty_cache(capacity, self.speculate)
        self.length: dict[int, int] = {}  # slot -> positions kept in its cache (BOS included)
        self.logits = torch.zeros(0, engine.vocab_size, device=engine.device)  # rows of the last engine call
        self.row_vmax: torch.Tensor | None = None  # the last step_rows' running maxima
        self.row: dict[int, int] = {}  # slot -> its row of self.logits (the next token's distribution)
        self.ahead: dict[int, list[int]] = {}  # slot -> proposals whose rows follow that row
        self.saved: dict[int, torch.Tensor] = {}  # slot -> its next distribution, kept outside self.logits
        self.pending: dict[int, int] = {}  # slot -> token decoded, waiting for push
        self.calls = 0  # engine calls by push
        self.rows_run = 0  # rows they computed
        self.accepted = 0  # guesses that were right
        self.shown: dict[int, int] = {}  # slot -> guesses in its last call
        self.outcomes: list[tuple[int, int]] = []  # (guesses shown, how many right) per slot and call, for the caller

    def begin(self, slot: int, known: list[int] | None = None) -> None:
        """Start a sequence in ``slot``; ``known`` tokens (already decoded) are run in one extend."""
        eng = self.engine
        ctx = [eng.bos] + list(known or [])
        with torch.inference_mode():
            sub = self.model.empty_cache(1, self.speculate)
            hidden = self.model.extend(torch.tensor([ctx], device=eng.device), 0, sub)
            _scatter(self.cache, torch.tensor([slot], device=eng.device), sub)
            self.saved[slot] = self.model.logits(hidden[0, -1:])[0]
        self._forget(slot)
        self.length[slot] = len(ctx)

    def _forget(self, slot: int) -> None:
        self.row.pop(slot, None)
        self.ahead.pop(slot, None)
        self.pending.pop(slot, None)

    def finish(self, slot: int) -> None:
        self.length.pop(slot, None)
        self.saved.pop(slot, None)
        self._forget(slot)

    def active(self) -> list[int]:
        return sorted(self.length)

    def ready(self) -> list[int]:
        """Active slots whose next distribution is known (the others wait for a push)."""
        return [s for s in sorted(self.length) if s not in self.pending]

    def distributions(self, slots: list[int] | None = None) -> Frequencies:
        """Next-token distributions of ``slots`` (default: every ready slot), in that order."""
        with torch.inference_mode():
            return frequencies(self._ready_logits(slots))

    def find(
        self, targets: torch.Tensor, slots: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, CF, f) per slot of ``slots`` (default: every ready slot, in slot order)
        for the range decoders' targets."""
        with torch.inference_mode():
            return self.model.find(self._ready_logits(slots), targets)

    def find_mixed(
        self,
        targets: torch.Tensor,
        spreads: torch.Tensor,
        starts: torch.Tensor,
        cand: torch.Tensor,
        boosts: torch.Tensor,
        slots: list[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, mixed CF, mixed f, model f) per slot of ``slots`` (default: every ready
        one): ``find`` on the model's table mixed with file-wide memory (lmzip/memory.py;
        row r's candidates are cand[starts[r]:starts[r + 1]], sorted, with their boosts)."""
        with torch.inference_mode():
            return self.model.mixed_find(self._ready_logits(slots), targets, spreads, starts, cand, boosts)

    def frequencies(self) -> torch.Tensor:
        """The same as full frequency rows [ready, vocab]."""
        return self.distributions().table()

    def accept(self, slot: int, token: int) -> bool:
        """``token`` was decoded for ``slot`` (which goes on). True: it was the slot's next
        proposal, whose row is now the slot's distribution; False: the slot waits for a push."""
        ahead = self.ahead.get(slot)
        self.saved.pop(slot, None)
        if ahead and ahead[0] == token:
            ahead.pop(0)
            self.row[slot] += 1
            self.length[slot] += 1
            self.accepted += 1
            return True
        self.pending[slot] = token
        return False

    def push(self, new_tokens: dict[int, int] | None = None, proposals: dict[int, list[int]] | None = None) -> None:
        """One engine call for every slot waiting with a decoded token (``new_tokens`` adds
        or replaces such tokens), each with at most ``speculate`` ``proposals``. Ready
        slots keep their next distribution. Without proposals, every active slot needs a token."""
        if new_tokens:
            for slot, token in new_tokens.items():
                if slot not in self.length:
                    raise ValueError(f"push for slot {slot}, which is not active")
                self.saved.pop(slot, None)
                self.pending[slot] = token
        if not self.pending or (not self.rows_kernel and sorted(self.pending) != self.active()):
            raise ValueError("push needs one token for every active slot")
        with torch.inference_mode():
            if self.rows_kernel:
                self._push_rows(proposals or {})
            else:
                self._push_all()
        self.pending.clear()
        self.calls += 1

    def _push_all(self) -> None:
        """The reference path: every slot steps, idle ones on a dummy token at position 0 of
        their own ring, which the next begin() replaces (rows stay independent)."""
        eng = self.engine
        tokens = torch.full((self.capacity,), eng.bos, dtype=torch.long)
        positions = torch.zeros(self.capacity, dtype=torch.long)
        for slot, token in self.pending.items():
            tokens[slot] = token
            positions[slot] = self.length[slot]
            self.length[slot] += 1
            self.row[slot], self.ahead[slot] = slot, []
        self.logits = self.model.step_logits(tokens.to(eng.device), positions.to(eng.device), self.cache)
        self.rows_run += self.capacity

    def _push_rows(self, proposals: dict[int, list[int]]) -> None:
        """step.c step_rows: the waiting slots' tokens and proposals, nothing for idle slots."""
        eng = self.engine
        kept = [s for s in self.row if s in self.length]
        if kept and self.row_vmax is not None:  # each slot continues from its last row kept
            slots = torch.tensor(kept, dtype=torch.long)
            self.model.commit(self.cache, slots, torch.tensor([self.row[s] for s in kept]), self.row_vmax)
        self.outcomes += [(self.shown[s], self.shown[s] - len(self.ahead[s])) for s in kept if self.shown.get(s)]
        for slot in self.ready():  # their next rows were computed; keep them out of the new call
            if slot in self.row:
                self.saved[slot] = self.logits[self.row[slot]].clone()
        self.row.clear()
        self.ahead.clear()
        slots, tokens, positions = [], [], []
        for slot in sorted(self.pending):
            guess = list(proposals.get(slot, ()))[: self.speculate]
            start = self.length[slot]
            self.row[slot], self.ahead[slot], self.shown[slot] = len(tokens), guess, len(guess)
            for j, token in enumerate([self.pending[slot], *guess]):
                slots.append(slot)
                tokens.append(token)
                positions.append(start + j)
            self.length[slot] = start + 1
        dev = eng.device
        self.logits, self.row_vmax = self.model.step_rows(
            *(torch.tensor(x, dtype=torch.long, device=dev) for x in (slots, tokens, positions)), self.cache
        )
        self.rows_run += len(tokens)

    def _ready_logits(self, slots: list[int] | None = None) -> torch.Tensor:
        slots = self.ready() if slots is None else slots
        if any(s in self.pending or s not in self.length for s in slots):
            raise ValueError("distributions asked for a slot that is not ready")
        if any(s in self.saved for s in slots):
            return torch.stack([self.saved[s] if s in self.saved else self.logits[self.row[s]] for s in slots])
        rows = [self.row[s] for s in slots]
        if rows == list(range(self.logits.shape[0])):
            return self.logits
        return self.logits[rows]


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
