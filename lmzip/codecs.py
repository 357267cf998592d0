"""Per-chunk codecs: stored, zstd (level 19) and lm (payload made by the LM codec).

`choose_best` keeps the smallest candidate. Stored is always a candidate, so a
payload never exceeds its chunk: incompressible data costs only the record header.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import zstandard

from lmzip.container import Codec
from lmzip.errors import CorruptChunkError

ZSTD_LEVEL = 19

_local = threading.local()  # zstd contexts are not thread-safe; reuse one per thread


@dataclass(frozen=True)
class Encoded:
    codec: Codec
    payload: bytes
    token_count: int = 0  # lm only


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_local, "zc"):
        # Content size, checksum and dict id are redundant with the record header
        # and its CRCs; leaving them out saves a few bytes per chunk.
        _local.zc = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, write_content_size=False, write_checksum=False, write_dict_id=False
        )
    return _local.zc


def zstd_compress(data: bytes) -> bytes:
    return _compressor().compress(data)


def zstd_decompress(payload: bytes, original_length: int) -> bytes:
    """Never allocates more than original_length + 1 bytes, whatever the frame claims."""
    reader = zstandard.ZstdDecompressor().stream_reader(payload)
    out = bytearray()
    try:
        while len(out) <= original_length:
            part = reader.read(original_length + 1 - len(out))
            if not part:
                break
            out += part
    except zstandard.ZstdError as e:
        raise CorruptChunkError(f"zstd data corrupt ({e})") from None
    return bytes(out)


def choose_best(data: bytes, lm: tuple[bytes, int] | None = None) -> Encoded:
    """Smallest of stored, zstd and (when given) the lm (payload, token_count).
    Ties go to the cheaper decoder: stored, then zstd, then lm."""
    candidates = [Encoded(Codec.STORED, data), Encoded(Codec.ZSTD, zstd_compress(data))]
    if lm is not None:
        candidates.append(Encoded(Codec.LM, lm[0], lm[1]))
    return min(candidates, key=lambda e: len(e.payload))  # min keeps the first of equals


def decode_plain(codec: Codec, payload: bytes, original_length: int) -> bytes:
    """Decode a stored or zstd payload (lm chunks go to the LM codec in batches)."""
    if codec == Codec.STORED:
        return payload
    if codec == Codec.ZSTD:
        return zstd_decompress(payload, original_length)
    raise ValueError(f"decode_plain cannot decode {codec.name}")
