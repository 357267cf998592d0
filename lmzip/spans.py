"""Spans records (format v3, record kind 4): one chunk coded as TEXT / RUN / BINARY spans.

A chunk that is not pure text (a tar stream: text headers, NUL padding; a text with a
stretch of binary in it) is cut by fixed rules (`segment`) into

* TEXT: coded by the LM. All TEXT spans of a chunk form ONE token sequence, so the
  model's context runs on across the other spans;
* RUN: one byte value repeated (tar's NUL padding, zero-filled regions);
* BINARY: all BINARY bytes of the chunk go into one side stream, zstd or stored.

Bytes that have no single-byte token in the model's vocabulary (21 values in the default
one) never stop the LM: they are *escapes*, removed from the text before tokenization
and coded in the same range-coder stream between the model's tokens (`EscapeCoder`): at
each token boundary an escape/no-escape event whose probability follows from the
number of escapes left (exact integers), then the offset inside the token and the byte.

This module is pure Python (no torch): the payload layout and its bounds-checked parser,
the segmentation, and the escape coding shared by the LM codec's encoder and decoder.
Byte layout: docs/FORMAT.md, "spans (4)".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lmzip.coder import TOTAL, RangeDecoder, RangeEncoder
from lmzip.container import uvarint
from lmzip.errors import CorruptChunkError

TEXT, RUN, BINARY = 0, 1, 2
KIND_NAMES = ("text", "run", "binary")

RUN_MIN_NUL = 16  # a run of NUL bytes this long becomes a RUN span (no text holds NULs)
RUN_MIN = 1024  # any other byte value: only long runs (the model codes rulers of spaces, '*' or '=' cheaply)
WINDOW = 64  # bytes per text-likeness window
MIN_BINARY_IN_TEXT = 16  # a shorter BINARY span next to TEXT is coded as TEXT (escapes cover its bytes)
MIN_TEXT_IN_BINARY = 32  # a shorter TEXT span next to BINARY joins the side stream
_RUNS = re.compile(rb"(.)\1{%d,}" % (RUN_MIN_NUL - 1), re.S)
# "Bad" characters of a window: control characters other than tab, line feed, vertical
# tab, form feed, carriage return and escape, DEL, and bytes that are not UTF-8.
_BAD = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\udc80-\udcff]")


@dataclass(frozen=True)
class Span:
    kind: int  # TEXT, RUN or BINARY
    length: int  # bytes, >= 1
    value: int = 0  # RUN: the repeated byte


# ---------------------------------------------------------------- segmentation


def _binary_window(window: bytes) -> bool:
    """At least a quarter of the window's characters are control characters or not UTF-8."""
    bad = len(_BAD.findall(window.decode("utf-8", "surrogateescape")))
    return 4 * bad >= len(window)


def _classify(data: bytes, start: int, end: int, out: list[Span]) -> None:
    for a in range(start, end, WINDOW):
        b = min(end, a + WINDOW)
        out.append(Span(BINARY if _binary_window(data[a:b]) else TEXT, b - a))


def _merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s in spans:
        if out and s.kind == out[-1].kind and s.kind != RUN:
            out[-1] = Span(s.kind, out[-1].length + s.length)
        else:
            out.append(s)
    return out


def _absorb(spans: list[Span], kind: int, limit: int, into: int) -> list[Span]:
    """Spans of `kind` shorter than `limit` that touch a span of kind `into` become `into`."""
    out = list(spans)
    for i, s in enumerate(out):
        if s.kind == kind and s.length < limit:
            near = [out[j].kind for j in (i - 1, i + 1) if 0 <= j < len(out)]
            if into in near:
                out[i] = Span(into, s.length)
    return _merge(out)


def segment(data: bytes) -> list[Span]:
    """The spans of a chunk, by fixed rules: runs first (NUL >= 16 bytes, any other byte
    >= 1024), then 64-byte windows of what lies between them, BINARY when at least a
    quarter of a window is control characters or invalid UTF-8; short BINARY stretches
    inside text become TEXT, short TEXT stretches inside binary become BINARY."""
    spans: list[Span] = []
    pos = 0
    for m in _RUNS.finditer(data):
        value, n = data[m.start()], m.end() - m.start()
        if n < (RUN_MIN_NUL if value == 0 else RUN_MIN):
            continue
        _classify(data, pos, m.start(), spans)
        spans.append(Span(RUN, n, value))
        pos = m.end()
    _classify(data, pos, len(data), spans)
    spans = _merge(spans)
    spans = _absorb(spans, BINARY, MIN_BINARY_IN_TEXT, TEXT)
    return _absorb(spans, TEXT, MIN_TEXT_IN_BINARY, BINARY)


def split(data: bytes, spans: Sequence[Span]) -> tuple[bytes, bytes]:
    """(the TEXT spans joined, the BINARY spans joined)."""
    text, binary = bytearray(), bytearray()
    pos = 0
    for s in spans:
        if s.kind == TEXT:
            text += data[pos : pos + s.length]
        elif s.kind == BINARY:
            binary += data[pos : pos + s.length]
        pos += s.length
    return bytes(text), bytes(binary)


def join(spans: Sequence[Span], text: bytes, binary: bytes) -> bytes:
    """Inverse of split: the chunk from its spans, text and side-stream bytes."""
    out = bytearray()
    t = b = 0
    for s in spans:
        if s.kind == TEXT:
            out += text[t : t + s.length]
            t += s.length
        elif s.kind == BINARY:
            out += binary[b : b + s.length]
            b += s.length
        else:
            out += bytes([s.value]) * s.length
    return bytes(out)


def totals(spans: Sequence[Span]) -> tuple[int, int, int]:
    """Bytes in (TEXT, RUN, BINARY) spans."""
    t = [0, 0, 0]
    for s in spans:
        t[s.kind] += s.length
    return t[0], t[1], t[2]


# ---------------------------------------------------------------- payload layout


def pack_table(spans: Sequence[Span]) -> bytes:
    """varint N, then per span varint((length - 1) << 2 | kind) and, for a RUN, its byte."""
    out = bytearray(uvarint(len(spans)))
    for s in spans:
        out += uvarint((s.length - 1) << 2 | s.kind)
        if s.kind == RUN:
            out.append(s.value)
    return bytes(out)


def pack_payload(spans: Sequence[Span], escapes: int, coded: bytes, side: bytes) -> bytes:
    """Span table, escape count E, range-coder length R, R coder bytes, side stream."""
    return pack_table(spans) + uvarint(escapes) + uvarint(len(coded)) + coded + side


@dataclass(frozen=True)
class SpansPayload:
    spans: list[Span]
    escapes: int  # E: escaped bytes inside the TEXT spans
    coded: bytes  # range-coder bytes: the text's tokens and escapes
    side: bytes  # the BINARY bytes: stored (len == binary total) or one zstd frame
    head: int  # bytes of table + E + R fields

    @property
    def text_length(self) -> int:
        return totals(self.spans)[0]

    @property
    def binary_length(self) -> int:
        return totals(self.spans)[2]

    @property
    def side_stored(self) -> bool:
        return len(self.side) == self.binary_length


def _varint(payload: bytes, pos: int, what: str) -> tuple[int, int]:
    value = 0
    for i in range(10):
        if pos >= len(payload):
            raise CorruptChunkError(f"spans payload cut short in {what}")
        b = payload[pos]
        pos += 1
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i:
                raise CorruptChunkError(f"spans payload: overlong varint in {what}")
            return value, pos
    raise CorruptChunkError(f"spans payload: varint too large in {what}")


def parse_payload(payload: bytes, original_length: int, tokens: int) -> SpansPayload:
    """The payload's parts, every declared size checked against what holds it before use:
    1 <= N <= O spans, lengths summing to exactly O, E + T <= text bytes, R within the
    payload, the side stream empty when there is no BINARY span."""
    n, pos = _varint(payload, 0, "span count")
    if not 1 <= n <= original_length:
        raise CorruptChunkError(f"spans payload: {n} spans for {original_length} bytes")
    spans: list[Span] = []
    total = 0
    for _ in range(n):
        h, pos = _varint(payload, pos, "span table")
        kind, length = h & 3, (h >> 2) + 1
        if kind > BINARY:
            raise CorruptChunkError(f"spans payload: unknown span kind {kind}")
        total += length
        if total > original_length:
            raise CorruptChunkError(f"spans payload: spans hold more than {original_length} bytes")
        value = 0
        if kind == RUN:
            if pos >= len(payload):
                raise CorruptChunkError("spans payload cut short in span table")
            value = payload[pos]
            pos += 1
        spans.append(Span(kind, length, value))
    if total != original_length:
        raise CorruptChunkError(f"spans payload: spans hold {total} bytes, record {original_length}")
    text, _, binary = totals(spans)
    escapes, pos = _varint(payload, pos, "escape count")
    if escapes + tokens > text:
        raise CorruptChunkError(f"spans payload: {tokens} tokens and {escapes} escapes in {text} text bytes")
    if text and not tokens and not escapes:
        raise CorruptChunkError("spans payload: text spans without tokens")
    r, pos = _varint(payload, pos, "coder length")
    if r > len(payload) - pos:
        raise CorruptChunkError("spans payload: coder bytes cut short")
    head = pos
    coded, side = payload[pos : pos + r], payload[pos + r :]
    if binary == 0 and side:
        raise CorruptChunkError("spans payload: side stream without binary spans")
    return SpansPayload(spans, escapes, coded, side, head)


# ---------------------------------------------------------------- escapes


ESCAPE_STEP = 8  # count added to a byte value each time it is escaped
ESCAPE_LIMIT = 1 << 16  # counts are halved when their sum passes this


def escape_flag_freq(left: int, points: int) -> int:
    """Frequency (of TOTAL) of "an escape here" with `left` escapes still to place and
    `points` later token boundaries that could take them: left / (left + points), so a
    chunk's escape positions cost log2 C(E + T, E) bits; exact integer arithmetic."""
    return max(1, min(TOTAL - 1, left * TOTAL // (left + points)))


class EscapeCoder:
    """The escape events of one text, in one range-coder stream with its tokens.

    Order, for a text of T tokens and E escapes (both known to the decoder): at each
    token boundary j = 0 .. T (0 before the first token, j after token j - 1) while
    escapes are left: a flag (escape / no escape; at j = T every escape left is there,
    no flag), and for each escape: its offset inside token j - 1 (1 .. its length,
    uniform, coded only when j >= 1 and the token has more than one byte: the byte
    goes after that many of the token's bytes), then the byte (adaptive counts over
    the escapable values: 1 each, +8 per use, halved past 2^16)."""

    def __init__(self, values: Sequence[int], escapes: int, tokens: int) -> None:
        self.values = list(values)
        self.counts = [1] * len(self.values)
        self.left = escapes
        self.tokens = tokens

    # -- the shared tables

    def _value_table(self) -> list[tuple[int, int]]:
        s = sum(self.counts)
        out, cum = [], 0
        for c in self.counts:
            f = c * TOTAL // s
            out.append((cum, f))
            cum += f
        return out

    def _update(self, k: int) -> None:
        self.counts[k] += ESCAPE_STEP
        if sum(self.counts) > ESCAPE_LIMIT:
            self.counts = [(c + 1) // 2 for c in self.counts]
        self.left -= 1

    # -- encoder

    def encode_point(self, enc: RangeEncoder, j: int, here: Sequence[tuple[int, int]], token_len: int) -> None:
        """Boundary j with the escapes `here`: (offset in token j - 1, byte value) each."""
        if not self.left:
            if here:
                raise ValueError("more escapes than declared")
            return
        last = j == self.tokens
        for offset, value in here:
            if not last:
                fe = escape_flag_freq(self.left, self.tokens - j)
                enc.encode(0, fe)
            self._encode_offset(enc, j, offset, token_len)
            k = self.values.index(value)
            cum, f = self._value_table()[k]
            enc.encode(cum, f)
            self._update(k)
        if last:
            if self.left:
                raise ValueError("fewer escapes than declared")
        elif self.left:
            fe = escape_flag_freq(self.left, self.tokens - j)
            enc.encode(fe, TOTAL - fe)

    @staticmethod
    def _encode_offset(enc: RangeEncoder, j: int, offset: int, token_len: int) -> None:
        if j == 0:
            if offset != 0:
                raise ValueError("an escape before the first token has offset 0")
            return
        if not 1 <= offset <= token_len:
            raise ValueError(f"escape offset {offset} outside 1..{token_len}")
        if token_len > 1:
            f = TOTAL // token_len
            enc.encode((offset - 1) * f, f)

    # -- decoder

    def decode_point(self, dec: RangeDecoder, j: int, token_len: int) -> list[tuple[int, int]]:
        """The escapes at boundary j: (offset, byte value) each."""
        out: list[tuple[int, int]] = []
        last = j == self.tokens
        while self.left:
            if not last:
                fe = escape_flag_freq(self.left, self.tokens - j)
                if dec.target() >= fe:
                    dec.consume(fe, TOTAL - fe)
                    break
                dec.consume(0, fe)
            offset = 0
            if j:
                if token_len < 1:
                    raise CorruptChunkError("escape after an empty token")
                offset = 1
                if token_len > 1:
                    f = TOTAL // token_len
                    k = dec.target() // f
                    if k >= token_len:
                        raise CorruptChunkError("escape offset out of range")
                    dec.consume(k * f, f)
                    offset = k + 1
            t = dec.target()
            for k, (cum, f) in enumerate(self._value_table()):
                if cum <= t < cum + f:
                    dec.consume(cum, f)
                    out.append((offset, self.values[k]))
                    self._update(k)
                    break
            else:
                raise CorruptChunkError("escape value out of range")
        return out


def strip_escapes(data: bytes, escapable: Sequence[bool]) -> tuple[bytes, list[tuple[int, int]]]:
    """(data without escapable bytes, [(position in the stripped data, byte)])."""
    if not any(escapable[b] for b in set(data)):
        return data, []
    clean = bytearray()
    escapes = []
    for b in data:
        if escapable[b]:
            escapes.append((len(clean), b))
        else:
            clean.append(b)
    return bytes(clean), escapes


def escapes_by_point(escapes: Sequence[tuple[int, int]], token_lengths: Sequence[int]) -> list[list[tuple[int, int]]]:
    """Escapes at stripped positions -> per token boundary j (0 .. T): [(offset, byte)].
    Position 0 goes to boundary 0; position p > 0 to the token holding byte p - 1, at
    offset p - (the token's start)."""
    points: list[list[tuple[int, int]]] = [[] for _ in range(len(token_lengths) + 1)]
    j, start = 0, 0  # token j - 1 spans [start - len, start)
    for pos, value in escapes:
        if pos == 0:
            points[0].append((0, value))
            continue
        while start < pos:
            start += token_lengths[j]
            j += 1
        points[j].append((pos - (start - token_lengths[j - 1]), value))
    return points


def insert_escapes(pieces: Sequence[bytes], points: Sequence[Sequence[tuple[int, int]]]) -> bytes:
    """The text from its tokens' bytes and the escapes per boundary (inverse of the above)."""
    out = bytearray()
    for value in (v for _, v in points[0]):
        out.append(value)
    for j, piece in enumerate(pieces, start=1):
        at = 0
        for offset, value in sorted(points[j], key=lambda e: e[0]) if j < len(points) else ():
            out += piece[at:offset]
            out.append(value)
            at = offset
        out += piece[at:]
    return bytes(out)


# ---------------------------------------------------------------- where the bytes went (info, bench)


ESCAPE_BITS = 6  # estimated bits per escape beyond its position: offset in the token + byte value


def escape_estimate(escapes: int, tokens: int) -> float:
    """Estimated coder bytes of E escapes among T tokens: log2 C(E + T, E) bits for the
    positions (what the flags cost, up to rounding) plus ESCAPE_BITS per escape. For
    display only (floats); the coder bytes of model and escapes are one stream."""
    if not escapes:
        return 0.0
    positions = (math.lgamma(escapes + tokens + 1) - math.lgamma(escapes + 1) - math.lgamma(tokens + 1)) / math.log(2)
    return (positions + ESCAPE_BITS * escapes) / 8


@dataclass(frozen=True)
class Summary:
    """What `breakdown` needs of one spans payload (None: it does not parse)."""

    coded: int
    escapes: int
    head: int
    side: int
    side_stored: bool
    kinds: tuple[int, int, int]


def summarize(payload: bytes, original_length: int, tokens: int) -> Summary | None:
    try:
        sp = parse_payload(payload, original_length, tokens)
    except CorruptChunkError:
        return None
    return Summary(len(sp.coded), sp.escapes, sp.head, len(sp.side), sp.side_stored, totals(sp.spans))


def breakdown(
    records: Sequence[Any], payloads: Mapping[int, Summary | None], size: int
) -> tuple[dict[str, int], dict[str, int]]:
    """(archive bytes per coder, original bytes per span kind) from the archive's records
    (container.RecordInfo) and the summaries of the spans records, by record number.
    Coders: model (range-coder bytes of lm records and spans texts, escapes excluded),
    escapes (estimated, see escape_estimate), zstd, lzma and stored (records and side
    streams), span_tables (span tables and their count fields: where RUN spans live),
    container (header, record framing, end; format v2-v4: index and trailer)."""
    coders = dict.fromkeys(("model", "escapes", "zstd", "lzma", "stored", "span_tables", "container"), 0)
    kinds = dict.fromkeys(KIND_NAMES, 0)
    for i, rec in enumerate(records):
        if rec.kind in ("lm", "zstd", "lzma", "stored"):
            coders["model" if rec.kind == "lm" else rec.kind] += rec.payload_length
        elif rec.kind == "spans":
            sp = payloads.get(i)
            if sp is None:
                coders["model"] += rec.payload_length  # damaged: not ours to judge here
                continue
            esc = min(sp.coded, round(escape_estimate(sp.escapes, rec.token_count)))
            coders["escapes"] += esc
            coders["model"] += sp.coded - esc
            coders["span_tables"] += sp.head
            if sp.side:
                coders["stored" if sp.side_stored else "zstd"] += sp.side
            for name, n in zip(KIND_NAMES, sp.kinds, strict=True):
                kinds[name] += n
    coders["container"] = size - sum(coders.values())
    return coders, kinds
