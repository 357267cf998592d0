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
            out.append((bytes(a << 4 | b for a, b in zip(nibbles[::2], nibbles[1::2], strict=True)), tokens))
        return out

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        self.decode_calls.append(len(items))
        out = []
        for payload, tokens in items:
            nibbles = iter([n for b in payload for n in (b >> 4, b & 15)])
            data = bytearray()
            for _ in range(tokens):  # StopIteration / IndexError on garbage, as a real decoder might fail
                n = next(nibbles)
                data += bytes([next(nibbles) << 4 | next(nibbles)]) if n == ESCAPE else VOCAB[n]
            out.append(bytes(data))
        return out


def factory(lm: FakeLM):
    return lambda options: lm


def text(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS) + b" "
    return bytes(out[:n])
