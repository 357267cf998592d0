"""File-wide memory: exact online models mixed with the language model (numerics v5-v7).

The language model sees 1,024 tokens of its own chunk. This module remembers the whole
file: a match model (the longest recent repeat of the token context) and hashed token
n-gram counts (orders 1, 2, 3, 5 and 8; v5: 1-4), mixed with the model's integer frequencies by an online
mixer. Everything is integer arithmetic on Python ints in a canonical order, so the
encoder and the decoder compute the same tables on every machine.

Mixing ("scale the LM table and add boosts"). With the model's cumulative frequency
CF(t) (CF(V) = 2**24), the boosts b(t) >= 0 of a few candidate tokens (B = their sum)
and S = 2**24 - V - B::

    cum_mix(t) = floor(CF(t) * S / 2**24) + t + sum(b(c) for candidates c < t)
    f_mix(t)   = floor(CF(t + 1) * S / 2**24) - floor(CF(t) * S / 2**24) + 1 + b(t)

Every token gets f_mix >= 1 and the table sums to exactly 2**24. Coding a token needs
only its own (CF, f) and the candidates' boosts; decoding walks the model's table once
(kernels.c ``mixed_find``, frequencies.mixed_find_reference, or ``mixed_find_reference`` here).

Sharing memory across the chunks of a group while they decode in lock step: a chunk's
prediction uses the *shared* state (everything of earlier groups, plus the tokens of
every chunk of the current group before the last completed block of ``block``
positions) and its own *private* state: its own tokens so far (a match index over the
chunk, its n-gram counts not yet absorbed) and private copies of the adaptive
parameters with its own updates applied at once. At each barrier (after positions k*block - 1 of every chunk) the
tokens of the finished block enter the shared models chunk by chunk in chunk order,
each chunk's tokens in position order, and the adaptive parameters (match confidence,
mixer weights) are updated from the events the block recorded, in the same order;
the private copies restart from the shared ones.

Fixed-point scalings: probabilities q16 (1.0 = 2**16) inside the models; boosts and
frequencies in units of 2**-24; mixer parameters in 1/256 nat.

Numerics v6 (what lmzip writes from 2026-12-03 on; v5 archives decode as before) adds
three things measured on real logs (scripts/memory_variants.py): digits are where the
memory used to hurt (a timestamp or process id repeats its last value less often than a
word does), so the mixer's weight set also says whether the last token and the token the
memory predicts are digits, and the match confidence whether the match predicts a digit;
a weight set learns faster while it is young (few updates), since 4x more sets see
fewer updates each; and the n-gram orders are 1, 2, 3, 5 and 8 (long log prefixes).
Ideal code (`scripts/memory_variants.py replay`): Linux_2k.log 6,277 -> 5,813 B,
Spark_2k.log 5,412 -> 5,048, Android_2k.log 9,307 -> 8,494, alice29.txt +4 B.

Numerics v7 (what lmzip writes from 2026-12-03 on) adds a fourth input, the shape model:
an n-gram over the line's *skeleton*, in which a finished run of digit tokens counts as
one item (RUN_MARK) and the open run as its length. Inside a number the n-grams see only
the digits so far, random in an id or a port; the skeleton still sees the words before it
and how many digits came, so it knows where a 19-digit block id or a 5-digit port ends and
what follows, and which line template the words belong to (orders up to 48 items). Its
confidence selects the mixer's weight set too. Ideal code against v6 (`replay`):
HDFS_2k.log -5.8%, Spark_2k.log -15.6%, Linux_2k.log -8.0%, alice29.txt -0.03%.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from functools import lru_cache

FREQ_BITS = 24
TOTAL = 1 << FREQ_BITS
ONE = 1 << 16  # q16 probability 1.0
MIN_LM_SPREAD = 1 << 16  # S never drops below this: the model keeps some mass on every token

# Fixed table sizes (part of numerics v5 and v6).
HISTORY_BITS = 22  # shared token history ring: 4 Mi tokens (16 MiB)
MATCH_BITS = 20  # match hash table: 1 Mi positions (4 MiB)
MATCH_MIN = 3  # tokens of context hashed to find a match
MATCH_ORDERS = (MATCH_MIN,)  # context lengths looked up, longest first (one hash table each)
MATCH_MAX = 65535  # match length saturates here
NGRAM_ORDERS = {5: (1, 2, 3, 4), 6: (1, 2, 3, 5, 8), 7: (1, 2, 3, 5, 8)}  # per numerics version: one table each
NGRAM_BITS = 17  # slots per order (each: check + 16 token/count pairs: 33 int32 = 132 B)
NGRAM_WAYS = 16
NGRAM_COUNT_MAX = 1023  # counts of a slot are halved when one passes this
STATEMAP_LIMIT = 1023  # adaptation rate of match confidence: 1/(n+2), n capped here
MIX_INPUTS = 3  # language model, n-gram, match (v7: and the shape model)
MIX_RATE = 77  # learning rate of the mixer, in 1/256 (0.3)
MIX_THETA_MAX = 16 * 256  # mixer parameters are clamped to +-16 nats
MIX_THETA_LM = 2 * 256  # initial parameter of the language model (the others start at 0)
MEMORY_NUMERICS = (5, 6, 7)  # numerics versions of archives with file-wide memory (7: what lmzip writes)
YOUNG_BOOST = 4  # v6: a weight set's first updates learn up to this many times faster ...
YOUNG_HALF = 64  # ... the boost falling as YOUNG_HALF / (YOUNG_HALF + updates so far)
SHAPE_ORDERS = (3, 6, 12, 24, 48)  # v7: skeleton items of context (a digit run counts as one), one table each
RUN_CAP = 24  # v7: digit-run lengths above this share a context
RUN_MARK = -1  # v7: a finished digit run in the skeleton

_MASK64 = (1 << 64) - 1
_HASH_MUL = 0x9E3779B97F4A7C15


def _hash_step(h: int, token: int) -> int:
    return ((h + token + 1) * _HASH_MUL) & _MASK64


@lru_cache(maxsize=1)
def exp_table() -> tuple[int, ...]:
    """round(2**16 * exp(-x / 256)) for x in 0..2*MIX_THETA_MAX, from exact integer arithmetic."""
    from lmzip.engine.numerics import _fix_exp_neg  # integer Taylor series, no libm

    fix = 96
    step = _fix_exp_neg(1, 256)  # exp(-1/256) in 2**-96; powers of it by exact fixed-point products
    out, value = [], 1 << fix
    for _ in range(2 * MIX_THETA_MAX + 1):
        out.append((value + (1 << (fix - 17))) >> (fix - 16))
        value = value * step >> fix
    return tuple(out)


def match_bucket(length: int) -> int:
    """Match-length bucket 0..15 (0: no prediction)."""
    if length < 12:
        return length
    if length < 16:
        return 12
    if length < 24:
        return 13
    if length < 32:
        return 14
    return 15


NGRAM_CONFIDENCES = 13
SHAPE_CONFIDENCES = 7


def _top_level(dist: dict[int, int]) -> int:
    """0..5: how many of 1/4, 1/2, 3/4, 7/8, 15/16 the top probability of ``dist`` reaches."""
    top = max(dist.values())
    return sum(top >= x for x in (ONE // 4, ONE // 2, 3 * ONE // 4, 7 * ONE // 8, 15 * ONE // 16))


def ngram_confidence(dist: dict[int, int], order: int) -> int:
    """0: no n-gram prediction; else 1 + 6 * (order >= 3) + level of the top probability (0..5)."""
    return 1 + 6 * (order >= 3) + _top_level(dist) if dist else 0


def shape_confidence(dist: dict[int, int]) -> int:
    """v7: 0: no shape prediction; else 1 + level of the top probability (0..5)."""
    return 1 + _top_level(dist) if dist else 0


# ---------------------------------------------------------------------------
# Mixing arithmetic: the integer frequency table of a position
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Boosts:
    """The online models' share of one position: sorted candidate tokens and their
    boosts (units of 2**-24), and S, the model table's scaled total."""

    tokens: tuple[int, ...]
    boosts: tuple[int, ...]
    spread: int  # S = 2**24 - V - sum(boosts)

    @staticmethod
    def none(vocab: int) -> Boosts:
        return Boosts((), (), TOTAL - vocab)


def mixed_bounds(cf: int, f: int, token: int, b: Boosts) -> tuple[int, int]:
    """(cum_mix, f_mix) of ``token`` whose model interval is [cf, cf + f)."""
    s = b.spread
    lo = (cf * s) >> FREQ_BITS
    hi = ((cf + f) * s) >> FREQ_BITS
    below = 0
    own = 0
    for c, boost in zip(b.tokens, b.boosts, strict=True):
        if c < token:
            below += boost
        elif c == token:
            own = boost
        else:
            break
    return lo + token + below, hi - lo + 1 + own


def mixed_table(cf_row: list[int] | tuple[int, ...], b: Boosts) -> list[int]:
    """Cumulative mixed table [V + 1] from the model's cumulative row CF[0..V] (tests, reference)."""
    vocab = len(cf_row) - 1
    boost = dict(zip(b.tokens, b.boosts, strict=True))
    out, extra = [], 0
    for t in range(vocab + 1):
        out.append(((cf_row[t] * b.spread) >> FREQ_BITS) + t + extra)
        extra += boost.get(t, 0)
    return out


# ---------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------


class History:
    """The shared token history: a ring of 2**HISTORY_BITS tokens; ``total`` ever absorbed."""

    def __init__(self) -> None:
        self.size = 1 << HISTORY_BITS
        self.tokens = array("i", bytes(4 * self.size))
        self.total = 0

    def append(self, token: int) -> None:
        self.tokens[self.total & (self.size - 1)] = token
        self.total += 1

    def get(self, pos: int) -> int | None:
        """Token at absolute position ``pos``, None if not (or no longer) held."""
        if pos >= self.total or pos < self.total - self.size or pos < 0:
            return None
        return self.tokens[pos & (self.size - 1)]


class NGramTable:
    """Hashed token n-gram counts of one order: slot = hash of the last ``order`` tokens,
    holding a 16-bit check and NGRAM_WAYS (token, count) pairs (count 0 = empty)."""

    def __init__(self, order: int) -> None:
        self.order = order
        n = 1 << NGRAM_BITS
        self.check = array("i", bytes(4 * n))
        self.tok = array("i", bytes(4 * n * NGRAM_WAYS))
        self.cnt = array("i", bytes(4 * n * NGRAM_WAYS))

    @staticmethod
    def _slot(h: int) -> tuple[int, int]:
        return (h >> 20) & ((1 << NGRAM_BITS) - 1), (h >> 48) | 1  # check never 0

    def lookup(self, h: int) -> list[tuple[int, int]]:
        """(token, count) pairs held for context hash ``h`` (empty if none)."""
        idx, chk = self._slot(h)
        if self.check[idx] != chk:
            return []
        base = idx * NGRAM_WAYS
        counts = self.cnt[base : base + NGRAM_WAYS]
        return [(t, c) for t, c in zip(self.tok[base : base + NGRAM_WAYS], counts, strict=True) if c]

    def update(self, h: int, token: int) -> None:
        """Count ``token`` in the first way holding it, else replace the first of the weakest
        ways (count 0 = empty). Array slices and index() do the scans (every coded token
        updates every table, so this is the memory's hottest loop)."""
        idx, chk = self._slot(h)
        base = idx * NGRAM_WAYS
        cnt, tok = self.cnt, self.tok
        if self.check[idx] != chk:
            self.check[idx] = chk
            cnt[base : base + NGRAM_WAYS] = _EMPTY_WAYS
        counts = cnt[base : base + NGRAM_WAYS]
        toks = tok[base : base + NGRAM_WAYS]
        w = toks.index(token) if token in toks else -1
        while w >= 0 and not counts[w]:  # a stale token of an emptied way: look further
            w = toks.index(token, w + 1) if token in toks[w + 1 :] else -1
        if w >= 0:
            cnt[base + w] += 1
            if cnt[base + w] > NGRAM_COUNT_MAX:
                cnt[base : base + NGRAM_WAYS] = array("i", ((c + 1) >> 1 for c in cnt[base : base + NGRAM_WAYS]))
            return
        weakest = base + counts.index(min(counts))
        tok[weakest] = token
        cnt[weakest] = 1


_EMPTY_WAYS = array("i", bytes(4 * NGRAM_WAYS))


class StateMap:
    """Adaptive probabilities per context, lpaq style: p += (y - p) / (n + 2), kept in
    units of 2**-28 (``q16`` gives them in units of 2**-16, within [32, ONE - 32])."""

    SHIFT = 12  # 2**-28 units -> q16

    def __init__(self, contexts: int, start: int) -> None:
        self.p = [start << self.SHIFT] * contexts
        self.n = [0] * contexts

    def copy(self) -> StateMap:
        other = StateMap(0, 0)
        other.p, other.n = self.p[:], self.n[:]
        return other

    def q16(self, ctx: int) -> int:
        return self.p[ctx] >> self.SHIFT

    def update(self, ctx: int, hit: bool) -> None:
        n = self.n[ctx]
        p = self.p[ctx] + (((ONE << self.SHIFT) if hit else 0) - self.p[ctx]) // (n + 2)
        self.p[ctx] = min((ONE - 32) << self.SHIFT, max(32 << self.SHIFT, p))
        if n < STATEMAP_LIMIT:
            self.n[ctx] = n + 1


class Mixer:
    """Softmax weights over (model, n-gram, match) per weight set, trained online by
    gradient on log loss: theta_i += rate * w_i * (p_i / p_mix - 1). theta in 1/256 nat.
    ``young``: the rate of a set is MIX_RATE * (1 + (YOUNG_BOOST - 1) * YOUNG_HALF //
    (YOUNG_HALF + its updates so far)), integers (v6); else MIX_RATE (v5).

    ``copy()`` gives a chunk's private mixer between two barriers: it reads the shared
    rows, which do not change until the barrier drops it, and copies a row the first time
    it writes one (a full copy of v6's 832 sets per chunk and block took 1.5 s of a pass
    over alice29.txt: `scripts/memory_variants.py replay` prints each pass's time)."""

    def __init__(self, sets: int, young: bool = False, inputs: int = MIX_INPUTS) -> None:
        self.theta = [[MIX_THETA_LM] + [0] * (inputs - 1) for _ in range(sets)]
        self.updates = [0] * sets if young else None
        self._rows: dict[int, list[int]] | None = None  # a private copy's own rows (None: the shared mixer)
        self._counts: dict[int, int] = {}  # and its own update counts

    def row(self, s: int) -> list[int]:
        """theta of set ``s`` as this mixer sees it (do not modify)."""
        own = self._rows.get(s) if self._rows is not None else None
        return self.theta[s] if own is None else own

    def count(self, s: int) -> int:
        """Updates set ``s`` has had (v6; 0 without young rates)."""
        if self.updates is None:
            return 0
        return self._counts.get(s, self.updates[s])

    def weights(self, s: int) -> list[int]:
        """Unnormalised weights (q16 scale) of set ``s``."""
        th = self.row(s)
        top = max(th)
        table = exp_table()
        return [table[top - x] for x in th]

    def copy(self) -> Mixer:
        other = Mixer(0)
        other.theta, other.updates = self.theta, self.updates  # shared, read only
        other._rows = {} if self._rows is None else {k: v[:] for k, v in self._rows.items()}
        other._counts = dict(self._counts)
        return other

    def update(self, s: int, probs: tuple[int, ...], mixed: int) -> None:
        """probs: each input's probability of the coded token and ``mixed`` the coded
        token's mixed frequency, all in units of 2**-24."""
        w = self.weights(s)
        total = sum(w)
        rate = MIX_RATE
        if self.updates is not None:
            n = self.count(s)
            rate = MIX_RATE * (1 + (YOUNG_BOOST - 1) * YOUNG_HALF // (YOUNG_HALF + n))
            (self.updates if self._rows is None else self._counts)[s] = n + 1
        if self._rows is None:
            th = self.theta[s]
        elif (th := self._rows.get(s)) is None:  # a private copy's first write to this set
            th = self._rows[s] = self.theta[s][:]
        for i in range(len(th)):
            step = (rate * w[i] * (probs[i] - mixed)) // (total * mixed)
            th[i] = min(MIX_THETA_MAX, max(-MIX_THETA_MAX, th[i] + step))


def _counts(table: NGramTable, h: int, pending: dict[int, dict[int, int]]) -> dict[int, int]:
    """Token counts of context hash ``h``: the shared table's plus a chunk's own not yet absorbed."""
    counts = dict(table.lookup(h))
    for t, c in pending.get(h, {}).items():
        counts[t] = counts.get(t, 0) + c
    return counts


def _count_pending(pending: dict[int, dict[int, int]], h: int, token: int) -> None:
    """A chunk's own count of ``token`` after context hash ``h``, kept until the barrier."""
    own = pending.setdefault(h, {})
    own[token] = own.get(token, 0) + 1


def _blend(lower: dict[int, int], counts: dict[int, int]) -> dict[int, int]:
    """A longer context's counts over the shorter contexts' distribution (q16): n counts
    of d tokens keep d / (n + d) of the mass for the shorter contexts (Witten-Bell)."""
    n = sum(counts.values())
    d = len(counts)
    return {t: (counts.get(t, 0) * ONE + d * lower.get(t, 0)) // (n + d) for t in set(lower) | set(counts)}


# ---------------------------------------------------------------------------
# One chunk's view, and the file's memory
# ---------------------------------------------------------------------------


@dataclass
class ChunkState:
    """A chunk's private state: its own tokens, a match model over them, and what
    waits for the next barrier."""

    tokens: list[int] = field(default_factory=list)
    own: dict[int, int] = field(default_factory=dict)  # hash of MATCH_MIN tokens -> position after them
    match_shared: bool = False  # where the current match points
    match_pos: int = -1  # position of the predicted token (in the chunk or the shared history)
    match_len: int = 0
    absorbed: int = 0  # tokens already in the shared models
    pending: dict[int, dict[int, int]] = field(default_factory=dict)  # n-gram counts of the tokens not yet absorbed
    # hashes of the last 1, 2, ... tokens (up to the longest order): the next token's contexts
    hashes: list[int] = field(default_factory=list)
    # the shared adaptive parameters as of the last barrier plus this chunk's own updates since
    mixer: Mixer | None = None
    confidence: StateMap | None = None
    events: list[tuple[int, int, int, tuple[int, ...], int]] = field(default_factory=list)
    # v7: the skeleton (last tokens, each finished digit run as RUN_MARK), the open run's
    # length, the shape context of every position coded and its counts not yet absorbed
    skeleton: list[int] = field(default_factory=list)
    skeleton_hashes: tuple[int, ...] = ()  # per SHAPE_ORDERS: hash of that many last skeleton items
    run: int = 0
    shape_keys: list[tuple[int, ...]] = field(default_factory=list)  # positions absorbed .. now
    shape_pending: dict[int, dict[int, int]] = field(default_factory=dict)


@dataclass
class Prediction:
    boosts: Boosts
    mix_set: int
    bucket: int
    predicted: int  # match model's token, -1 if none
    q_match: int  # q16
    ngram: dict[int, int]  # token -> q16
    shape: dict[int, int] = field(default_factory=dict)  # v7: token -> q16
    shape_keys: tuple[int, ...] = ()  # v7: its contexts, one per SHAPE_ORDERS


class FileMemory:
    """Shared models of a file (one per archive, updated group after group). ``numerics``:
    the archive's numerics version (MEMORY_NUMERICS); ``digits``: the tokens that are all
    ASCII digits (v6 selects weights by them; the tokenizer, pinned by the model
    identity, gives them)."""

    def __init__(
        self, vocab: int, block: int, numerics: int = MEMORY_NUMERICS[-1], digits: frozenset[int] = frozenset()
    ) -> None:
        if block < 1:
            raise ValueError("memory block must be at least 1")
        if not 0 < vocab < TOTAL - MIN_LM_SPREAD:
            raise ValueError(f"vocabulary of {vocab} tokens leaves no room for boosts")
        if numerics not in MEMORY_NUMERICS:
            raise ValueError(f"no file-wide memory for numerics version {numerics}")
        self.vocab = vocab
        self.block = block
        self.v6 = numerics >= 6
        self.v7 = numerics >= 7
        self.digits = digits
        self.history = History()
        # per match order: hash of that many tokens -> history position after them
        self.match_tables = [
            array("q", bytes(8 << MATCH_BITS)) for _ in MATCH_ORDERS
        ]  # int64: positions of files of any length
        self.orders = NGRAM_ORDERS[numerics]
        self.ngrams = [NGramTable(k) for k in self.orders]
        # match bucket x (match in own chunk) [x (predicts a digit), v6]
        self.confidence = StateMap(16 * 2 * (2 if self.v6 else 1), ONE // 2)
        # match bucket x n-gram confidence [x (last token a digit) x (predicted token a digit), v6]
        sets = 16 * NGRAM_CONFIDENCES * (4 if self.v6 else 1) * (SHAPE_CONFIDENCES if self.v7 else 1)
        self.mixer = Mixer(sets, young=self.v6, inputs=MIX_INPUTS + int(self.v7))
        # v7: skeleton contexts -> next token counts
        self.shapes = [NGramTable(k) for k in SHAPE_ORDERS] if self.v7 else []

    # -- prediction ------------------------------------------------------------

    def _ngram(self, cs: ChunkState) -> tuple[dict[int, int], int]:
        """Interpolated sparse n-gram distribution (token -> q16) and the highest order found:
        the shared counts plus the chunk's own counts not yet absorbed."""
        dist: dict[int, int] = {}
        found = 0
        hashes = cs.hashes
        for i, table in enumerate(self.ngrams):
            if table.order > len(hashes):
                break
            counts = _counts(table, hashes[table.order - 1] + table.order, cs.pending)
            if not counts:
                break
            found = i + 1
            dist = _blend(dist, counts)
        return dist, found

    def _shape_keys(self, cs: ChunkState) -> tuple[int, ...]:
        """v7: per SHAPE_ORDERS, the hash of that many skeleton items and the open run's length."""
        hashes = cs.skeleton_hashes or (0,) * len(SHAPE_ORDERS)
        run = min(cs.run, RUN_CAP)
        return tuple(_hash_step(h, run) + order for h, order in zip(hashes, SHAPE_ORDERS, strict=True))

    def _shape(self, cs: ChunkState, keys: tuple[int, ...]) -> dict[int, int]:
        """v7: the next token's distribution given the skeleton, interpolated as _ngram's."""
        dist: dict[int, int] = {}
        for table, h in zip(self.shapes, keys, strict=True):
            counts = _counts(table, h, cs.shape_pending)
            if not counts:
                break
            dist = _blend(dist, counts)
        return dist

    def predict(self, cs: ChunkState) -> Prediction:
        if cs.mixer is None or cs.confidence is None:
            cs.mixer, cs.confidence = self.mixer.copy(), self.confidence.copy()
        dist, order = self._ngram(cs)
        predicted = -1
        if cs.match_len:
            if cs.match_shared:
                got = self.history.get(cs.match_pos)
                predicted = -1 if got is None else got
            else:
                predicted = cs.tokens[cs.match_pos] if cs.match_pos < len(cs.tokens) else -1
        bucket = match_bucket(cs.match_len) if predicted >= 0 else 0
        conf_ctx = bucket * 2 + (0 if cs.match_shared else 1)
        mix_set = bucket * NGRAM_CONFIDENCES + ngram_confidence(dist, order)
        if self.v6:
            conf_ctx = conf_ctx * 2 + int(predicted in self.digits)
            # the memory's guess: the match's token, else the n-gram's likeliest (the smallest on ties)
            guess = predicted if predicted >= 0 else min(dist, key=lambda t: (-dist[t], t)) if dist else -1
            last_digit = bool(cs.tokens) and cs.tokens[-1] in self.digits
            mix_set = mix_set * 4 + 2 * int(last_digit) + int(guess in self.digits)
        shape: dict[int, int] = {}
        keys: tuple[int, ...] = ()
        if self.v7:
            keys = self._shape_keys(cs)
            shape = self._shape(cs, keys)
            mix_set = mix_set * SHAPE_CONFIDENCES + shape_confidence(shape)
        q_match = cs.confidence.q16(conf_ctx) if predicted >= 0 else 0
        w = cs.mixer.weights(mix_set)
        total = sum(w)
        boost: dict[int, int] = {}
        if dist:
            for t, q in dist.items():
                boost[t] = w[1] * q
        if predicted >= 0:
            boost[predicted] = boost.get(predicted, 0) + w[2] * q_match
        for t, q in shape.items():
            boost[t] = boost.get(t, 0) + w[3] * q
        scale = total * ONE
        items = sorted((t, (v << FREQ_BITS) // scale) for t, v in boost.items())
        items = [(t, v) for t, v in items if v > 0]
        cap = TOTAL - self.vocab - MIN_LM_SPREAD
        b_sum = sum(v for _, v in items)
        if b_sum > cap:  # keep the model's floor: scale the boosts down (exactly)
            items = [(t, v * cap // b_sum) for t, v in items]
            b_sum = sum(v for _, v in items)
        boosts = Boosts(tuple(t for t, _ in items), tuple(v for _, v in items), TOTAL - self.vocab - b_sum)
        return Prediction(boosts, mix_set, conf_ctx, predicted, q_match, dist, shape, keys)

    # -- after a token is coded ------------------------------------------------

    def observe(self, cs: ChunkState, pred: Prediction, token: int, lm_freq: int, mixed_freq: int) -> None:
        """Record the coded token: private match model now, shared updates at the barrier."""
        p_ng = pred.ngram.get(token, 0) << 8
        p_m = (pred.q_match << 8) if pred.predicted == token else 0
        probs: tuple[int, ...] = (lm_freq, p_ng, p_m)
        if self.v7:
            probs += (pred.shape.get(token, 0) << 8,)
            self._observe_shape(cs, pred.shape_keys, token)
        event = (pred.mix_set, pred.bucket, int(pred.predicted >= 0) + int(pred.predicted == token),
                 probs, mixed_freq)  # fmt: skip
        cs.events.append(event)
        assert cs.mixer is not None and cs.confidence is not None  # set by predict
        self._learn(cs.mixer, cs.confidence, event)
        for k in self.orders:  # the chunk's own counts, until the barrier absorbs them
            if k > len(cs.hashes):
                break
            _count_pending(cs.pending, cs.hashes[k - 1] + k, token)
        cs.tokens.append(token)
        n = len(cs.tokens)
        h = 0
        cs.hashes = []
        for t in cs.tokens[-1 : -self.orders[-1] - 1 : -1]:
            h = _hash_step(h, t)
            cs.hashes.append(h)
        if pred.predicted >= 0 and pred.predicted == token:
            cs.match_pos += 1
            cs.match_len = min(MATCH_MAX, cs.match_len + 1)
        else:
            cs.match_len = 0
        hashes = []
        for i, order in enumerate(MATCH_ORDERS):
            if n >= order:
                h = 0
                for t in cs.tokens[n - order :]:
                    h = _hash_step(h, t)
                hashes.append((i, order, h))
        for i, order, h in hashes:
            if cs.match_len:
                break
            self._find_match(cs, i, order, h)
        for _, order, h in hashes:
            cs.own[h + order] = n

    def _observe_shape(self, cs: ChunkState, keys: tuple[int, ...], token: int) -> None:
        """v7: count the token under its skeleton contexts (privately until the barrier) and
        extend the skeleton: digits lengthen the open run, anything else closes it."""
        cs.shape_keys.append(keys)
        for h in keys:
            _count_pending(cs.shape_pending, h, token)
        if token in self.digits:
            cs.run += 1
            return
        if cs.run:
            cs.skeleton.append(RUN_MARK)
            cs.run = 0
        cs.skeleton.append(token)
        if len(cs.skeleton) > 2 * SHAPE_ORDERS[-1]:
            del cs.skeleton[: -SHAPE_ORDERS[-1]]
        hashes, h, done = [], 0, 0
        items = cs.skeleton[::-1]  # newest first
        for order in SHAPE_ORDERS:  # the hash of the last `order` items (all of them, if fewer)
            for t in items[done:order]:
                h = ((h + t + 1) * _HASH_MUL) & _MASK64  # _hash_step, inlined: this runs for every token
            done = order
            hashes.append(h)
        cs.skeleton_hashes = tuple(hashes)

    def _find_match(self, cs: ChunkState, table: int, order: int, h: int) -> None:
        """Start a match on the last ``order`` tokens: the chunk's own last occurrence
        first, else the shared history; its length is the verified common suffix (at most
        32 tokens looked at), at least ``order``."""
        toks = cs.tokens
        n = len(toks)
        pos = cs.own.get(h + order, 0)
        if pos and pos < n:
            length = 0
            while length < 32 and pos - 1 - length >= 0 and toks[pos - 1 - length] == toks[n - 1 - length]:
                length += 1
            if length >= order:
                cs.match_shared, cs.match_pos, cs.match_len = False, pos, length
                return
        hp = self.match_tables[table][h & ((1 << MATCH_BITS) - 1)]
        if hp:
            length = 0
            while length < 32 and length < n:
                got = self.history.get(hp - 1 - length)
                if got is None or got != toks[n - 1 - length]:
                    break
                length += 1
            if length >= order:
                cs.match_shared, cs.match_pos, cs.match_len = True, hp, length

    # -- barrier: the block's tokens enter the shared models -------------------

    def barrier(self, chunks: list[ChunkState]) -> None:
        """Absorb every chunk's tokens since its last barrier, chunk by chunk in order."""
        for cs in chunks:
            toks = cs.tokens
            for i in range(cs.absorbed, len(toks)):
                self._absorb(toks, i)
            for i, keys in enumerate(cs.shape_keys, cs.absorbed):  # v7 (the tables are apart from the rest)
                for table, h in zip(self.shapes, keys, strict=True):
                    table.update(h, toks[i])
            cs.absorbed = len(toks)
            cs.pending.clear()
            cs.shape_keys.clear()
            cs.shape_pending.clear()
            for event in cs.events:
                self._learn(self.mixer, self.confidence, event)
            cs.events.clear()
        for cs in chunks:
            cs.mixer = cs.confidence = None

    @staticmethod
    def _learn(mixer: Mixer, confidence: StateMap, event: tuple[int, int, int, tuple[int, ...], int]) -> None:
        mix_set, bucket, outcome, probs, mixed = event
        if outcome:
            confidence.update(bucket, outcome == 2)
        mixer.update(mix_set, probs, mixed)

    def _absorb(self, toks: list[int], i: int) -> None:
        token = toks[i]
        h = 0
        for k in range(1, self.orders[-1] + 1):
            if k > i:
                break
            h = _hash_step(h, toks[i - k])
            if k in self.orders:
                self.ngrams[self.orders.index(k)].update(h + k, token)
        self.history.append(token)
        for table, order in zip(self.match_tables, MATCH_ORDERS, strict=True):
            if i + 1 >= order:
                hm = 0
                for t in toks[i + 1 - order : i + 1]:
                    hm = _hash_step(hm, t)
                table[hm & ((1 << MATCH_BITS) - 1)] = self.history.total  # the position after them


def mixed_find_reference(cf_row: list[int], b: Boosts, target: int) -> tuple[int, int, int]:
    """(token, cum_mix, f_mix) whose mixed interval holds ``target`` (slow, for tests)."""
    import bisect

    cum = mixed_table(cf_row, b)
    t = bisect.bisect_right(cum, target) - 1
    return t, cum[t], cum[t + 1] - cum[t]


def encode_group(
    memory: FileMemory, seqs: list[tuple[list[int], list[int], list[int]]]
) -> list[tuple[list[int], list[int]]]:
    """Mixed (cum, freq) of every token of a group's chunks, given each chunk's tokens and
    the model's (CF, f) per token: the decoder's order replayed (blocks of positions,
    chunks in order inside a block, a barrier after every block)."""
    states = [ChunkState() for _ in seqs]
    out: list[tuple[list[int], list[int]]] = [([], []) for _ in seqs]
    longest = max((len(s[0]) for s in seqs), default=0)
    for start in range(0, longest, memory.block):
        for (toks, cfs, fs), cs, (cums, freqs) in zip(seqs, states, out, strict=True):
            for p in range(start, min(start + memory.block, len(toks))):
                pred = memory.predict(cs)
                cm, fm = mixed_bounds(int(cfs[p]), int(fs[p]), int(toks[p]), pred.boosts)
                memory.observe(cs, pred, int(toks[p]), int(fs[p]), fm)
                cums.append(cm)
                freqs.append(fm)
        memory.barrier(states)
    return out
