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


EXPLORE = 8  # see Policy.skipped
RECENT = 64  # guesses per rank the running counts stand for
ROW_COST = 0.2  # an extra row against a one-row call's fixed cost (the weights read once)


class Policy:
    """How many of a slot's guesses are worth a row, from how often guesses were right.

    A call over S rows costs about F (1 + ROW_COST * S) (scripts/speculation.py on a
    2-core Xeon, one thread: 14.7 ms for one row, 2.2 ms more per row), so a row costs ROW_COST * S / (1 + ROW_COST
    * S) of what the S tokens of a call without guesses cost each. Guess j is kept while
    the chance that guesses 1..j are all right (from running counts per rank, a prior of
    one in two) is above that: at one slot a guess right one time in six pays, at ten
    slots only one right two times in three.
    """

    def __init__(self, limit: int = SPECULATE) -> None:
        self.limit = limit
        self.tried = [2] * (limit + 1)  # per rank j: guesses j shown with 1..j-1 right (recent ones)
        self.right = [1] * (limit + 1)  # ... and right
        self.skipped = 0  # slots refused a first guess: every EXPLORE-th gets one, so the counts can recover

    def keep(self, guesses: list[int], slots: int) -> list[int]:
        """The prefix of ``guesses`` worth computing in a call with ``slots`` slots."""
        bar = ROW_COST * slots / (1 + ROW_COST * slots)
        chance = 1.0
        for j in range(min(len(guesses), self.limit)):
            chance *= self.right[j] / self.tried[j]
            if chance <= bar:
                if j == 0:
                    self.skipped += 1
                    return guesses[:1] if self.skipped % EXPLORE == 0 else []
                return guesses[:j]
        return guesses[: self.limit]

    def outcome(self, shown: int, right: int) -> None:
        """A slot's call verified ``shown`` guesses, of which the first ``right`` were right."""
        for j in range(min(shown, right + 1, self.limit)):
            self.tried[j] += 1
            self.right[j] += j < right
            if self.tried[j] > RECENT:  # the counts follow the text: halve them now and then
                self.tried[j] = (self.tried[j] + 1) // 2
                self.right[j] = (self.right[j] + 1) // 2


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
