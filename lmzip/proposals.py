"""Guesses of the next tokens for speculative verification in the decoder.

The lock-step decoder learns a token only by decoding it, one engine call per position;
a call over a few more rows costs little more than over one (the weights are read once).
So before each call it asks a cheap predictor what probably follows, and the call also
computes the rows after those guesses; every guess that turns out right saves a call
(engine.py LockstepDecoder). Guesses never change a decoded byte, only the speed, so
nothing here needs to be exact or stable across versions.

MatchProposer guesses by repetition: the tokens that followed the last earlier
occurrence of the current ORDER-token context, in any sequence it was shown (the chunks
of one decode call), continuing into the guess itself when the repeat overlaps the
present (runs, periodic lines). With file-wide memory, memory_proposals reads the
continuation of the memory's own match instead (its history holds the whole file so far).
"""

from __future__ import annotations

from lmzip import memory as mem

ORDER = 3  # tokens of context that must repeat before guessing
SPECULATE = 8  # at most this many guesses per slot and call (the cache's ring slack)


def rows_for(slots: int, limit: int = SPECULATE) -> int:
    """Guesses per slot worth computing with ``slots`` slots in the call.

    An extra row costs about 1.1 ms against 6.3 ms for a one-slot call (2-core Xeon,
    scripts/speculation.py): at one slot a guess that is right one time in six pays,
    at ten slots (16 ms per call for ten tokens) only a near-certain one would. Guesses
    come from repeats, which are right most of the time where they exist.
    """
    if slots <= 2:
        return limit
    if slots <= 6:
        return min(limit, 4)
    return min(limit, 2)


class MatchProposer:
    """Repeats of ORDER-token contexts across a set of growing token sequences."""

    def __init__(self) -> None:
        self.seqs: dict[int, list[int]] = {}
        self.table: dict[tuple[int, ...], tuple[int, int]] = {}  # context -> (sequence, index after it)

    def add(self, key: int, token: int) -> None:
        """``token`` was decoded as the next token of sequence ``key``."""
        seq = self.seqs.setdefault(key, [])
        n = len(seq)
        if n >= ORDER:
            self.table[tuple(seq[n - ORDER :])] = (key, n)
        seq.append(token)

    def propose(self, key: int, k: int) -> list[int]:
        """Up to k guesses of the tokens after sequence ``key``'s last one."""
        seq = self.seqs.get(key, [])
        if k <= 0 or len(seq) < ORDER:
            return []
        hit = self.table.get(tuple(seq[-ORDER:]))
        if hit is None:
            return []
        src, at = hit
        return continuation(self.seqs[src], at, k, seq if src == key else None)


def continuation(src: list[int], at: int, k: int, own: list[int] | None) -> list[int]:
    """src[at:at + k]; where src is the sequence being guessed (own), a repeat that reaches
    its end goes on with its own guesses (a period of len(own) - at tokens)."""
    out: list[int] = []
    n = len(src)
    for j in range(at, at + k):
        if j < n:
            out.append(src[j])
        elif own is not None and j - n < len(out):
            out.append(out[j - n])
        else:
            break
    return out


def memory_proposals(memory: mem.FileMemory, cs: mem.ChunkState, k: int) -> list[int]:
    """Up to k guesses from the file-wide memory's current match of chunk state ``cs``."""
    if k <= 0 or not cs.match_len:
        return []
    if not cs.match_shared:
        return continuation(cs.tokens, cs.match_pos, k, cs.tokens)
    out: list[int] = []
    for j in range(cs.match_pos, cs.match_pos + k):
        got = memory.history.get(j)
        if got is None:
            break
        out.append(got)
    return out
