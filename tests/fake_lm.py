"""A stand-in for the LM codec, shared by the pipeline, container and fuzz tests and
scripts/fuzz.py: a "model" that knows a small word vocabulary, so archives use every
record kind, and whose decoder fails on garbage the way a real one might."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class FakeIdentity:
    name: str = "fake-zlib"
    model_hash: bytes = b"M" * 32
    tokenizer_hash: bytes = b"T" * 32
    numerics_version: int = 3
    context_window: int = 512
    memory_group: int = 0  # with numerics_version >= 5: the archive's memory group and block
    memory_block: int = 0


WORDS = [b"the", b"cat", b"sat", b"on", b"a", b"mat", b"and", b"looked", b"around\n"]
VOCAB = [w + b" " for w in WORDS]  # the "tokens" text() is made of
ESCAPE = 15


class FakeLM:
    """Stands in for the LM codec: a "model" that knows the test vocabulary: 4 bits per
    word, 12 bits per other byte (so it beats zstd on text() by far, and never wins on
    binary data); tokens = words and escaped bytes."""

    def __init__(self, identity: FakeIdentity | None = None) -> None:
        self.identity = identity or FakeIdentity()
        self.encode_calls: list[int] = []
        self.decode_calls: list[int] = []

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
        self.encode_calls.append(len(chunks))
        out: list[tuple[bytes, int] | None] = []
        for c in chunks:
            if b"\xff\xfe" in c:  # pretend this cannot be tokenized byte-exactly
                out.append(None)
                continue
            out.append(self._encode(c))
        return out

    @staticmethod
    def _encode(c: bytes) -> tuple[bytes, int]:
        nibbles, tokens, i = [], 0, 0
        while i < len(c):
            k = next((k for k, w in enumerate(VOCAB) if c.startswith(w, i)), None)
            if k is None:
                nibbles += [ESCAPE, c[i] >> 4, c[i] & 15]
                i += 1
            else:
                nibbles.append(k)
                i += len(VOCAB[k])
            tokens += 1
        nibbles += [0] * (len(nibbles) % 2)
        return bytes(a << 4 | b for a, b in zip(nibbles[::2], nibbles[1::2], strict=True)), tokens

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        self.decode_calls.append(len(items))
        return [self._decode(payload, tokens) for payload, tokens in items]

    @staticmethod
    def _decode(payload: bytes, tokens: int) -> bytes:
        nibbles = iter([n for b in payload for n in (b >> 4, b & 15)])
        data = bytearray()
        for _ in range(tokens):  # StopIteration / IndexError on garbage, as a real decoder might fail
            n = next(nibbles)
            data += bytes([next(nibbles) << 4 | next(nibbles)]) if n == ESCAPE else VOCAB[n]
        return bytes(data)

    # Spans records (format v3): any bytes; 0xFF plays the byte without a token (an escape).

    def encode_texts(self, texts: list[bytes]) -> list[tuple[bytes, int, int]]:
        """(payload, tokens, escapes): 4 bytes per escape (its position), then the chunk
        code of the text without its 0xFF bytes."""
        self.encode_calls.append(len(texts))
        out = []
        for t in texts:
            positions = [i for i, b in enumerate(t) if b == 0xFF]
            clean = t.replace(b"\xff", b"")
            coded, tokens = self._encode(clean) if clean else (b"", 0)
            head = b"".join((p - k).to_bytes(4, "big") for k, p in enumerate(positions))
            out.append((head + coded, tokens, len(positions)))
        return out

    def decode_texts(self, items: list[tuple[bytes, int, int]]) -> list[bytes]:
        self.decode_calls.append(len(items))
        out = []
        for payload, tokens, escapes in items:
            head, body = payload[: 4 * escapes], payload[4 * escapes :]
            if len(head) < 4 * escapes:
                raise IndexError("escape positions cut short")
            clean = self._decode(body, tokens)
            data = bytearray()
            at = 0
            for k in range(escapes):
                p = int.from_bytes(head[4 * k : 4 * k + 4], "big")
                if not at <= p <= len(clean):
                    raise ValueError("escape position out of range")
                data += clean[at:p] + b"\xff"
                at = p
            out.append(bytes(data + clean[at:]))
        return out


def factory(lm: FakeLM):
    return lambda options: lm


def text(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS) + b" "
    return bytes(out[:n])


def structs(n: int, seed: int = 0) -> bytes:
    """n records of 6 bytes (a counter, a small random field, a constant): binary data on
    which lzma beats zstd -19 by a third (the lzma record kind's case)."""
    rng = random.Random(seed)
    return b"".join(i.to_bytes(2, "little") + rng.randrange(300).to_bytes(2, "little") + b"\x00\x01" for i in range(n))
