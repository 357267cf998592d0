"""Record codecs: stored, zstd (level 19) and lm (payload made by the LM codec).

A chunk goes to the lm codec when its lm payload beats both stored and zstd on that
chunk by more than an lm record's framing costs (`lm_saving`; the pipeline decides);
every run of other consecutive chunks becomes one record, zstd-compressed when that
is smaller than the data, else stored (`encode_plain`), so a payload never exceeds
its data: incompressible data costs only the record framing.
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


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_local, "zc"):
        # Content size, checksum and dict id are redundant with the record header
        # and its CRC; leaving them out saves a few bytes per record.
        _local.zc = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, write_content_size=False, write_checksum=False, write_dict_id=False
        )
    return _local.zc


def zstd_compress(data: bytes) -> bytes:
    return _compressor().compress(data)


def zstd_decompress(payload: bytes, original_length: int) -> bytes:
    """Never produces (or allocates for output) more than original_length bytes, whatever
    the frame claims: a frame that declares another content size, holds more data, is
    followed by extra bytes or needs a window beyond max(8 MiB, original_length) is corrupt."""
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as e:
        raise CorruptChunkError(f"zstd data corrupt ({e})") from None
    if declared not in (-1, original_length):  # -1: not declared (what lmzip writes)
        raise CorruptChunkError(f"zstd frame declares {declared} bytes, record {original_length}")
    window = max(1 << 23, 1 << max(0, original_length - 1).bit_length())
    dctx = zstandard.ZstdDecompressor(max_window_size=window)
    try:
        out = dctx.decompress(payload, max_output_size=original_length, allow_extra_data=False)
        # That call ignores a whole second frame after the first; the first frame is now
        # known to hold at most original_length bytes, so a second, streaming pass that
        # reports what follows it is bounded too (and cheap next to zstd -19 or the lm).
        tail = dctx.decompressobj()
        tail.decompress(payload)
    except zstandard.ZstdError as e:
        raise CorruptChunkError(f"zstd data corrupt ({e})") from None
    if tail.unused_data or not tail.eof:
        raise CorruptChunkError("zstd data corrupt (extra bytes after the frame)")
    return out


def encode_plain(data: bytes) -> Encoded:
    """A stored or zstd record for `data` (one or more chunks): zstd when it is smaller."""
    packed = zstd_compress(data)
    return Encoded(Codec.ZSTD, packed) if len(packed) < len(data) else Encoded(Codec.STORED, data)


def lm_saving(data: bytes, lm: tuple[bytes, int] | None) -> int:
    """Bytes the lm payload saves over the smaller of stored and zstd for this chunk on
    its own (<= 0: the lm does not win; ties go to the cheaper decoder)."""
    if lm is None or len(lm[0]) >= len(data):
        return 0
    return min(len(data), len(zstd_compress(data))) - len(lm[0])


def decode_plain(codec: Codec, payload: bytes, original_length: int) -> bytes:
    """Decode a stored or zstd payload (lm records go to the LM codec in batches)."""
    if codec == Codec.STORED:
        return payload
    if codec == Codec.ZSTD:
        return zstd_decompress(payload, original_length)
    raise ValueError(f"decode_plain cannot decode {codec.name}")
