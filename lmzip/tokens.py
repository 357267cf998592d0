"""Byte-exact tokenization: bytes -> token ids -> the same bytes, or an honest refusal.

Byte-level BPE vocabularies (GPT-2 style, as SmolLM2, Llama 3 and Qwen2 use) spell every
token as a string over a 256-character alphabet that stands for raw bytes. Decoding is a
table lookup (id -> bytes), independent of any library version. Encoding hands valid
UTF-8 runs to the tokenizer and spells invalid bytes with the single-byte tokens; the
result is checked against the input, and a chunk that does not reproduce exactly is
refused (the caller stores it with another codec).
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property, lru_cache
from pathlib import Path

_SURROGATES = re.compile("[\udc80-\udcff]+")


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's bytes_to_unicode, inverted: printable bytes stand for themselves, others shift to U+0100+."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


class ByteTokenizer:
    def __init__(self, tokenizer_json: Path):
        from tokenizers import Tokenizer

        self.path = Path(tokenizer_json)
        self._tok = Tokenizer.from_file(str(self.path))
        data = json.loads(self.path.read_text(encoding="utf-8"))
        vocab: dict[str, int] = dict(data["model"]["vocab"])
        special = set()
        for added in data.get("added_tokens", []):
            vocab[added["content"]] = added["id"]
            special.add(added["id"])
        size = max(vocab.values()) + 1
        alphabet = _byte_alphabet()
        table: list[bytes] = [b""] * size
        for token, idx in vocab.items():
            if idx in special or any(ch not in alphabet for ch in token):
                table[idx] = token.encode("utf-8")  # added tokens are spelled literally
            else:
                table[idx] = bytes(alphabet[ch] for ch in token)
        self.id_to_bytes = table
        single = {}
        for idx, spelled in enumerate(table):
            if len(spelled) == 1 and idx not in special and spelled[0] not in single:
                single[spelled[0]] = idx
        self.byte_token = [single.get(b, -1) for b in range(256)]

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_bytes)

    def content_hash(self) -> bytes:
        """sha256 of the id -> bytes table: all that decoding depends on."""
        h = hashlib.sha256()
        for spelled in self.id_to_bytes:
            h.update(len(spelled).to_bytes(4, "little"))
            h.update(spelled)
        return h.digest()

    def decode(self, ids: list[int]) -> bytes:
        table = self.id_to_bytes
        return b"".join(table[i] for i in ids)

    def encode(self, data: bytes) -> list[int] | None:
        """Token ids that decode to exactly ``data``, or None when that is impossible."""
        return self.encode_batch([data])[0]

    @cached_property
    def digit_tokens(self) -> frozenset[int]:
        """Tokens spelled with ASCII digits only (the memory v6+ weighs them apart, v7 folds numbers)."""
        return frozenset(i for i, b in enumerate(self.id_to_bytes) if b.isdigit())  # bytes: ASCII digits only

    @property
    def escapable(self) -> list[bool]:
        """Per byte value: True when no single-byte token spells it (an escape in TEXT spans)."""
        return [t < 0 for t in self.byte_token]

    def encode_batch(self, chunks: list[bytes], byte_fallback: bool = False) -> list[list[int] | None]:
        """Token ids per chunk, or None for a chunk that cannot be spelled exactly. With
        `byte_fallback`, a valid-UTF-8 piece the tokenizer does not reproduce is spelled
        with single-byte tokens instead (None only when a byte has no such token)."""
        pieces: list[list[tuple[bool, str]]] = []
        texts: list[str] = []
        for data in chunks:
            text = data.decode("utf-8", errors="surrogateescape")
            parts: list[tuple[bool, str]] = []
            pos = 0
            for m in _SURROGATES.finditer(text):
                if m.start() > pos:
                    parts.append((True, text[pos : m.start()]))
                parts.append((False, m.group()))
                pos = m.end()
            if pos < len(text):
                parts.append((True, text[pos:]))
            pieces.append(parts)
            texts.extend(p for ok, p in parts if ok)
        encoded = iter(self._tok.encode_batch(texts, add_special_tokens=False)) if texts else iter(())
        out: list[list[int] | None] = []
        for data, parts in zip(chunks, pieces, strict=True):
            ids: list[int] = []
            usable = True
            for ok, part in parts:
                if ok:
                    got = next(encoded).ids
                    raw = part.encode("utf-8")
                    if byte_fallback and self.decode(got) != raw:
                        got = [self.byte_token[b] for b in raw]
                    ids.extend(got)
                    continue
                for ch in part:
                    token = self.byte_token[ord(ch) - 0xDC00]
                    if token < 0:
                        usable = False
                    ids.append(token)
            usable = usable and all(i >= 0 for i in ids)
            out.append(ids if usable and self.decode(ids) == data else None)
        return out
