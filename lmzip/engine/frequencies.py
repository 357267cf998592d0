"""Logits -> the range coder's integer frequency tables (total 2**24), exactly.

The transformer's last float operation is its logits; everything from there to the
coder's interval is integer or exactly representable arithmetic (numerics.py), so the
same logits give the same tables on every machine. ``frequencies`` builds the tables
of M rows in cumulative form. kernels.c computes the same integers in C: ``token_bounds``
for coding and decoding, ``mixed_find`` for decoding over tables mixed with the file-wide
memory (lmzip/memory.py), whose whole-row reference is ``mixed_find_reference`` here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmzip.engine import numerics

RECIPROCAL_SHIFT = 38  # fixed-point reciprocal: cumE * (C << 38) // mass stays below 2**63


PREFIX_BLOCK = 256  # prefix sums of e are kept per block of this many tokens


@dataclass
class Frequencies:
    """Integer frequency tables for M positions, in cumulative form.

    With e = round(2**24 * exp(logit - max)) (exact integers) and E(v) = sum of e below v,
    the cumulative frequency of token v is CF(v) = floor(E(v) * R / 2**38) + v with the
    fixed-point reciprocal R = floor((C - V) * 2**38 / E(V)), C = 2**24. Every token gets
    f(v) = CF(v + 1) - CF(v) >= 1; the last token also takes the few units that floor
    leaves over, so rows sum to exactly C. E(v) is a block prefix plus a sum inside one
    block of 256, all exact, so coding a token never needs a whole-row cumulative sum.
    """

    e: torch.Tensor  # [M, nblocks, PREFIX_BLOCK] float32 exact integers (zero padded)
    block_prefix: torch.Tensor  # [M, nblocks + 1] float64 exact: E at block starts
    recip: torch.Tensor  # [M, 1] int64 R
    vocab: int

    def _prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """E(tokens) for tokens [M, k] in 0..V, int64."""
        rows, blocks, width = self.e.shape
        block = torch.div(tokens, width, rounding_mode="floor")
        inside = tokens - block * width
        row_idx = torch.arange(rows, device=tokens.device)[:, None]
        part = self.e[row_idx, block.clamp(max=blocks - 1)]  # [M, k, width]
        keep = torch.arange(width, device=tokens.device) < inside[..., None]
        head = (part * keep).sum(dim=-1, dtype=torch.float64)  # exact: < 2**32
        return (self.block_prefix.gather(1, block) + head).long()

    def cumulative(self, tokens: torch.Tensor) -> torch.Tensor:
        """CF(tokens) for tokens [M, k] (values 0..V), int64; CF(V) is C by definition."""
        total = 1 << numerics.FREQ_BITS
        cf = self._prefix(tokens).mul_(self.recip).bitwise_right_shift_(RECIPROCAL_SHIFT).add_(tokens)
        return torch.where(tokens == self.vocab, torch.full_like(cf, total), cf)

    def bounds(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CF(t), f(t)) for one token per row, tokens [M]."""
        both = self.cumulative(torch.stack([tokens, tokens + 1], dim=1))
        return both[:, 0], both[:, 1] - both[:, 0]

    def find(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, CF, f) per row with CF(token) <= target < CF(token + 1), targets [M] < C.

        Binary search on CF, which is strictly increasing: log2(V) small steps per row.
        """
        rows = targets.shape[0]
        targets = targets.to(self.e.device)  # the coder's targets come from the CPU
        lo = torch.zeros(rows, 1, dtype=torch.long, device=targets.device)
        hi = torch.full_like(lo, self.vocab)
        target = targets.view(rows, 1).to(lo)
        while bool((hi - lo > 1).any()):
            mid = torch.div(lo + hi, 2, rounding_mode="floor")
            below = self.cumulative(mid) <= target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        low, high = self.cumulative(torch.cat([lo, lo + 1], dim=1)).unbind(1)
        return lo[:, 0], low, high - low

    def table(self) -> torch.Tensor:
        """Full frequency rows [M, V] (tests and tools; builds whole-row prefix sums)."""
        rows = self.e.shape[0]
        flat = self.e.reshape(rows, -1)[:, : self.vocab]
        prefix = torch.zeros(rows, self.vocab + 1, dtype=torch.float64, device=flat.device)
        torch.cumsum(flat, dim=1, dtype=torch.float64, out=prefix[:, 1:])
        cf = prefix.long().mul_(self.recip).bitwise_right_shift_(RECIPROCAL_SHIFT)
        cf.add_(torch.arange(self.vocab + 1, device=flat.device))
        cf[:, -1] = 1 << numerics.FREQ_BITS
        return cf[:, 1:] - cf[:, :-1]


def mixed_find_reference(
    freqs: Frequencies,
    targets: torch.Tensor,
    spreads: torch.Tensor,
    starts: torch.Tensor,
    cand: torch.Tensor,
    boosts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """kernels.c mixed_find over whole rows: cum_mix(t) = floor(CF(t) * S / 2**24) + t + boosts below t."""
    table = freqs.table()  # [M, V]
    rows, vocab = table.shape
    dev = table.device
    cf = torch.zeros(rows, vocab + 1, dtype=torch.int64, device=dev)
    torch.cumsum(table, dim=1, out=cf[:, 1:])
    extra = torch.zeros(rows, vocab + 1, dtype=torch.int64, device=dev)
    for r in range(rows):
        lo, hi = int(starts[r]), int(starts[r + 1])
        extra[r, cand[lo:hi].long().to(dev) + 1] += boosts[lo:hi].long().to(dev)
    spread = spreads.view(rows, 1).long().to(dev)
    cum = ((cf * spread) >> numerics.FREQ_BITS) + torch.arange(vocab + 1, device=dev) + extra.cumsum(1)
    tok = torch.searchsorted(cum, targets.view(rows, 1).long().to(dev), right=True)[:, 0] - 1
    r = torch.arange(rows, device=dev)
    low = cum[r, tok]
    return tok, low, cum[r, tok + 1] - low, table[r, tok]


def frequencies(logits: torch.Tensor) -> Frequencies:
    """Exact integer next-token distributions for logits [M, V]."""
    rows, vocab = logits.shape
    spread = (1 << numerics.FREQ_BITS) - vocab
    y = (logits.amax(dim=-1, keepdim=True) - logits).mul_(numerics.LOG2E_F32)
    e = numerics.exp2_neg_scaled(y, numerics.FREQ_BITS)  # <= 2**24, exact integers
    pad = -vocab % PREFIX_BLOCK
    if pad:
        e = torch.cat([e, e.new_zeros(rows, pad)], dim=1)
    e = e.view(rows, -1, PREFIX_BLOCK)
    block_prefix = torch.zeros(rows, e.shape[1] + 1, dtype=torch.float64, device=e.device)
    torch.cumsum(e.sum(dim=-1, dtype=torch.float64), dim=1, out=block_prefix[:, 1:])  # exact
    mass = block_prefix[:, -1:].long()  # >= 2**24 (the top token alone)
    recip = torch.full_like(mass, spread << RECIPROCAL_SHIFT).div_(mass, rounding_mode="floor")
    return Frequencies(e, block_prefix, recip, vocab)
