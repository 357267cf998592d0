"""Record codecs: stored, zstd (level 19), lzma (LZMA2 at xz -9e's settings) and lm
(payload made by the LM codec).

A chunk goes to the lm codec when its lm payload beats both stored and zstd on that
chunk by more than an lm record's framing costs (`lm_saving`; the pipeline decides);
every run of other consecutive chunks becomes one record, zstd- or lzma-compressed when
that is smaller than the data, else stored (`encode_plain`), so a payload never exceeds
its data: incompressible data costs only the record framing.
"""

from __future__ import annotations

import lzma
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import zstandard

from lmzip.container import PIECE, Codec
from lmzip.errors import CorruptChunkError

ZSTD_LEVEL = 19
# The largest zstd window a record may need (bytes): what zstd -19 uses on any input
# (windowLog 23). The decoder refuses more, so a frame never makes it allocate more.
MAX_ZSTD_WINDOW = 1 << 23

# An lzma record's dictionary: the smallest power of two >= its data, between these.
# The decoder allocates it, so the cap bounds decoding memory as MAX_ZSTD_WINDOW does.
MIN_LZMA_DICT = 1 << 12
MAX_LZMA_DICT = 1 << 23

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
    followed by extra bytes or needs a window beyond MAX_ZSTD_WINDOW is corrupt."""
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as e:
        raise CorruptChunkError(f"zstd data corrupt ({e})") from None
    if declared not in (-1, original_length):  # -1: not declared (what lmzip writes)
        raise CorruptChunkError(f"zstd frame declares {declared} bytes, record {original_length}")
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
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


def lzma_dict_size(original_length: int) -> int:
    """The dictionary of an lzma record of original_length bytes (docs/FORMAT.md)."""
    return min(MAX_LZMA_DICT, max(MIN_LZMA_DICT, 1 << (original_length - 1).bit_length()))


def _lzma_filters(original_length: int, preset: int | None = None) -> list[dict[str, int]]:
    f = {"id": lzma.FILTER_LZMA2, "dict_size": lzma_dict_size(original_length)}
    return [f | {"preset": preset}] if preset is not None else [f]


def lzma_compress(data: bytes) -> bytes:
    """A raw LZMA2 stream of data (no .xz container: the record holds length and CRC),
    xz -9e's settings with the record's dictionary size."""
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(len(data), 9 | lzma.PRESET_EXTREME))


def _lzma_decompressor(original_length: int) -> lzma.LZMADecompressor:
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_lzma_filters(original_length))


def lzma_decompress(payload: bytes, original_length: int) -> bytes:
    """Never produces more than original_length bytes: a stream holding more, cut short,
    or followed by any byte is corrupt."""
    d = _lzma_decompressor(original_length)
    try:
        out = d.decompress(payload, max_length=original_length)
        if not d.eof and (d.decompress(b"", max_length=1) or not d.eof):
            raise CorruptChunkError("lzma data corrupt (more data than the record's, or cut short)")
    except lzma.LZMAError as e:
        raise CorruptChunkError(f"lzma data corrupt ({e})") from None
    if d.unused_data:
        raise CorruptChunkError("lzma data corrupt (extra bytes after the stream)")
    return out


def encode_plain(data: bytes, try_lzma: bool = False) -> Encoded:
    """A stored, zstd or (with try_lzma) lzma record for `data` (one or more chunks): the
    smallest; stored unless a compressor makes it smaller, zstd on a tie with lzma (the
    faster decoder). try_lzma adds xz -9e's time to zstd -19's (scripts/lzma_cost.py)."""
    best = Encoded(Codec.STORED, data)
    packed = zstd_compress(data)
    if len(packed) < len(data):
        best = Encoded(Codec.ZSTD, packed)
    if try_lzma and data:
        packed = lzma_compress(data)
        if len(packed) < len(best.payload):
            best = Encoded(Codec.LZMA, packed)
    return best


def lm_saving(data: bytes, lm: tuple[bytes, int] | None) -> int:
    """Bytes the lm payload saves over the smaller of stored and zstd for this chunk on
    its own (<= 0: the lm does not win; ties go to the cheaper decoder)."""
    if lm is None or len(lm[0]) >= len(data):
        return 0
    return min(len(data), len(zstd_compress(data))) - len(lm[0])


def decode_plain(codec: Codec, payload: bytes, original_length: int) -> bytes:
    """Decode a stored, zstd or lzma payload (lm records go to the LM codec in batches)."""
    if codec == Codec.STORED:
        return payload
    if codec == Codec.ZSTD:
        return zstd_decompress(payload, original_length)
    if codec == Codec.LZMA:
        return lzma_decompress(payload, original_length)
    raise ValueError(f"decode_plain cannot decode {codec.name}")


class PayloadSource(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class _Output:
    """Where a streamed record's pieces go: counted, CRC'd, bounded by the record's
    length (a stream that decodes to more is corrupt), then written."""

    def __init__(self, write: Callable[[bytes], object], original_length: int, what: str) -> None:
        self.write, self.limit, self.what = write, original_length, what
        self.n = self.crc = 0

    def add(self, piece: bytes) -> None:
        self.n += len(piece)
        if self.n > self.limit:
            raise CorruptChunkError(f"{self.what} holds more than the record's {self.limit} bytes")
        self.crc = zlib.crc32(piece, self.crc)
        self.write(piece)


def decode_plain_into(
    codec: Codec, payload: PayloadSource, original_length: int, write: Callable[[bytes], object]
) -> tuple[int, int]:
    """Decode a stored, zstd or lzma payload read in pieces, handing the output to `write`
    in pieces of at most PIECE bytes; returns (output length, its CRC32). Memory stays at
    about PIECE plus the zstd window (MAX_ZSTD_WINDOW) or the lzma dictionary
    (MAX_LZMA_DICT) whatever the record's size. The checks are those of zstd_decompress
    and lzma_decompress: a stream holding more than original_length bytes, cut short,
    followed by anything or needing a larger window is corrupt. The caller compares
    length and CRC with the record's (output is written before that)."""
    if codec == Codec.STORED:
        out = _Output(write, original_length, "stored record")  # the payload length is O: never over
        while piece := payload.read(PIECE):
            out.add(piece)
        return out.n, out.crc
    if codec == Codec.LZMA:
        return _lzma_into(payload, _Output(write, original_length, "lzma stream"))
    if codec != Codec.ZSTD:
        raise ValueError(f"decode_plain_into cannot decode {codec.name}")
    out = _Output(write, original_length, "zstd frame")
    walker = _FrameWalker(original_length)

    class _Source:  # what the zstd reader pulls from: the payload, seen by the walker on the way
        def read(self, size: int = -1) -> bytes:
            data = payload.read(size)
            walker.feed(data)
            return data

    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
    try:
        with dctx.stream_reader(_Source(), read_size=1 << 17, read_across_frames=False, closefd=False) as reader:
            while piece := reader.read(PIECE):
                out.add(piece)
    except zstandard.ZstdError as e:
        raise CorruptChunkError(f"zstd data corrupt ({e})") from None
    while rest := payload.read(PIECE):  # what the reader left after its frame ended
        walker.feed(rest)
    walker.finish()
    return out.n, out.crc


def _lzma_into(payload: PayloadSource, out: _Output) -> tuple[int, int]:
    d = _lzma_decompressor(out.limit)
    try:
        while not d.eof:
            data = payload.read(1 << 17) if d.needs_input else b""
            if d.needs_input and not data:
                raise CorruptChunkError("lzma data corrupt (cut short)")
            out.add(d.decompress(data, max_length=PIECE))
    except lzma.LZMAError as e:
        raise CorruptChunkError(f"lzma data corrupt ({e})") from None
    if d.unused_data or payload.read(1):
        raise CorruptChunkError("lzma data corrupt (extra bytes after the stream)")
    return out.n, out.crc


class _FrameWalker:
    """Follows the structure of one zstd frame (RFC 8878: header, block headers, optional
    checksum) over the payload bytes, without decoding: says whether the frame is whole
    and whether anything follows it, which zstandard's stream reader does not report."""

    def __init__(self, original_length: int) -> None:
        self.original_length = original_length
        self.head = bytearray()
        self.state = "header"
        self.skip = 0  # bytes of the current block (or checksum) still to pass
        self.last = False
        self.checksum = False

    def feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self.skip:
                step = min(self.skip, len(data) - i)
                self.skip -= step
                i += step
                if not self.skip and self.state == "checksum":
                    self.state = "done"
                continue
            if self.state == "done":
                raise CorruptChunkError("zstd data corrupt (extra bytes after the frame)")
            take = self._want() - len(self.head)
            self.head += data[i : i + take]
            i += min(take, len(data) - i)
            if len(self.head) == self._want():
                self._parse()

    def _want(self) -> int:
        if self.state == "block":
            return 3
        if len(self.head) < 5:
            return 5
        fhd = self.head[4]
        single = fhd >> 5 & 1
        fcs = (0, 2, 4, 8)[fhd >> 6] or single
        return 5 + (1 - single) + (0, 1, 2, 4)[fhd & 3] + fcs

    def _parse(self) -> None:
        head, self.head = bytes(self.head), bytearray()
        if self.state == "block":
            bits = int.from_bytes(head, "little")
            kind, size = bits >> 1 & 3, bits >> 3
            if kind == 3:
                raise CorruptChunkError("zstd data corrupt (reserved block type)")
            self.skip = 1 if kind == 1 else size
            if bits & 1:
                self.state = "checksum" if self.checksum else "done"
                if self.state == "checksum":
                    self.skip += 4
                elif not self.skip:
                    return
            return
        if head[:4] != b"\x28\xb5\x2f\xfd":
            raise CorruptChunkError("zstd data corrupt (not a zstd frame)")
        fhd = head[4]
        if fhd & 0x08:
            raise CorruptChunkError("zstd data corrupt (reserved header bit set)")
        single = fhd >> 5 & 1
        self.checksum = bool(fhd >> 2 & 1)
        fcs_size = (0, 2, 4, 8)[fhd >> 6] or single
        declared = -1
        if fcs_size:
            declared = int.from_bytes(head[len(head) - fcs_size :], "little") + (256 if fcs_size == 2 else 0)
            if declared != self.original_length:
                raise CorruptChunkError(f"zstd frame declares {declared} bytes, record {self.original_length}")
        window = declared if single else _window_size(head[5])
        if window > MAX_ZSTD_WINDOW:
            raise CorruptChunkError(f"zstd data corrupt (window of {window} bytes, more than {MAX_ZSTD_WINDOW})")
        self.head = bytearray()
        self.state = "block"

    def finish(self) -> None:
        if self.state != "done" or self.skip:
            raise CorruptChunkError("zstd data corrupt (frame cut short)")


def _window_size(descriptor: int) -> int:
    base = 1 << (10 + (descriptor >> 3))
    return base + (base >> 3) * (descriptor & 7)
