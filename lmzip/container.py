"""Byte layout of the .lmz format (specified in docs/FORMAT.md), with bounds-checked parsing.

Everything a reader allocates is bounded by limits checked *before* the read:
a chunk never exceeds the header's chunk size (<= 64 MiB), a payload never
exceeds its chunk by more than MAX_OVERHEAD, and the index size must agree with
the number of records seen (streaming) or with the file size (seeking). Every
problem raises FormatError / CorruptChunkError with a one-line message.
"""

from __future__ import annotations

import enum
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from lmzip.errors import CorruptChunkError, FormatError

MAGIC = b"LMZ\x00"
INDEX_MAGIC = b"LMZI"
END_MAGIC = b"LMZE"
VERSION = 1

MAX_CHUNK_SIZE = 64 << 20
MAX_OVERHEAD = 64  # a payload may exceed its chunk by this much (a forced codec on tiny data)
MAX_MODEL_NAME = 255
MAX_FILE_NAME = 4095
HASH_SIZE = 32

FLAG_MODEL = 0x01  # LM identity present
FLAG_NAME = 0x02  # original file name present
FLAG_MTIME = 0x04  # original mtime present
_KNOWN_FLAGS = FLAG_MODEL | FLAG_NAME | FLAG_MTIME

_HEAD = struct.Struct("<4sBBI")  # magic, version, flags, chunk size
_MODEL = struct.Struct("<32s32sIIB")  # model hash, tokenizer hash, numerics, context, name len
_RECORD = struct.Struct("<BIIII")  # codec, original len, payload len, token count, chunk CRC
_RECORD_CRC = struct.Struct("<I")
RECORD_HEADER_SIZE = _RECORD.size + _RECORD_CRC.size  # 21
_INDEX_HEAD = struct.Struct("<4sQ")  # magic, entry count
_ENTRY = struct.Struct("<QIIB")  # record offset, original len, payload len, codec
_TRAILER = struct.Struct("<QQQII4s")  # size, chunks, index offset, data CRC, trailer CRC, magic
TRAILER_SIZE = _TRAILER.size  # 36


class Codec(enum.IntEnum):
    STORED = 0
    ZSTD = 1
    LM = 2


_CODEC_IDS = frozenset(c.value for c in Codec)


@dataclass(frozen=True)
class Header:
    chunk_size: int
    model_name: str | None = None  # None: no LM identity stored (no chunk may use lm)
    model_hash: bytes = bytes(HASH_SIZE)
    tokenizer_hash: bytes = bytes(HASH_SIZE)
    numerics_version: int = 0
    context_window: int = 0
    name: str | None = None  # original file name (basename only), like gzip -N
    mtime: int | None = None  # seconds since the epoch

    def pack(self) -> bytes:
        check_chunk_size(self.chunk_size, ValueError)
        flags = (
            (FLAG_MODEL if self.model_name is not None else 0)
            | (FLAG_NAME if self.name is not None else 0)
            | (FLAG_MTIME if self.mtime is not None else 0)
        )
        out = bytearray(_HEAD.pack(MAGIC, VERSION, flags, self.chunk_size))
        if self.model_name is not None:
            model = self.model_name.encode("utf-8")
            if len(model) > MAX_MODEL_NAME:
                raise ValueError(f"model name longer than {MAX_MODEL_NAME} bytes")
            if len(self.model_hash) != HASH_SIZE or len(self.tokenizer_hash) != HASH_SIZE:
                raise ValueError("model and tokenizer hashes must be 32 bytes")
            out += _MODEL.pack(
                self.model_hash,
                self.tokenizer_hash,
                self.numerics_version,
                self.context_window,
                len(model),
            )
            out += model
        if self.name is not None:
            raw = self.name.encode("utf-8", "surrogateescape")
            if _bad_file_name(raw):
                raise ValueError(f"stored name must be a plain file name: {self.name!r}")
            out += struct.pack("<H", len(raw)) + raw
        if self.mtime is not None:
            out += struct.pack("<q", self.mtime)
        out += struct.pack("<I", zlib.crc32(out))
        return bytes(out)


@dataclass(frozen=True)
class Record:
    """A chunk record's header; the payload follows it in the file."""

    index: int  # chunk number, from 0
    offset: int  # of the record in the archive
    codec: Codec
    original_length: int
    payload_length: int
    token_count: int
    crc: int  # CRC32 of the original chunk


@dataclass(frozen=True)
class IndexEntry:
    offset: int
    original_length: int
    payload_length: int
    codec: Codec


@dataclass(frozen=True)
class Trailer:
    original_size: int
    chunk_count: int
    index_offset: int
    crc: int  # CRC32 of the whole original stream


@dataclass
class ArchiveInfo:
    header: Header
    chunks: list[IndexEntry]
    original_size: int
    compressed_size: int
    crc: int
    codec_counts: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        return self.header.name

    @property
    def mtime(self) -> int | None:
        return self.header.mtime


# ---------------------------------------------------------------- low-level reading


class _Reader:
    """Exact reads with position tracking; a short read is a truncated archive."""

    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.pos = 0

    def read(self, n: int, what: str) -> bytes:
        data = self.read_upto(n)
        if len(data) != n:
            raise FormatError(f"truncated archive: {what} cut short")
        return data

    def read_upto(self, n: int) -> bytes:
        data = read_full(self.src, n)
        self.pos += len(data)
        return data


def read_full(src: BinaryIO, n: int) -> bytes:
    """Up to n bytes; fewer only at EOF (pipes may return short reads before it)."""
    parts, got = [], 0
    while got < n:
        part = src.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def check_chunk_size(size: int, exc: type[Exception]) -> None:
    if not 1 <= size <= MAX_CHUNK_SIZE:
        raise exc(f"chunk size {size} outside 1..{MAX_CHUNK_SIZE}")


def storable_name(name: str) -> bool:
    """Whether `name` can go in the header (a plain basename of bounded length)."""
    return not _bad_file_name(name.encode("utf-8", "surrogateescape"))


def _bad_file_name(raw: bytes) -> bool:
    # Only a basename may be stored: a name from an archive must never become a path.
    return (
        not raw
        or len(raw) > MAX_FILE_NAME
        or raw in (b".", b"..")
        or any(c in raw for c in b"/\\\x00")
    )


def _read_header(r: _Reader) -> Header:
    head = r.read_upto(_HEAD.size)
    if len(head) < 4 or head[:4] != MAGIC:
        raise FormatError("not an lmzip file")
    if len(head) < _HEAD.size:
        raise FormatError("truncated archive: header cut short")
    _, version, flags, chunk_size = _HEAD.unpack(head)
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this lmzip reads version 1)")
    if flags & ~_KNOWN_FLAGS:
        raise FormatError(f"unsupported header flags 0x{flags:02x}")
    raw = bytearray(head)

    def take(n: int) -> bytes:  # header bytes, kept for the CRC
        part = r.read(n, "header")
        raw.extend(part)
        return part

    model = None
    mhash, thash, numerics, context = bytes(HASH_SIZE), bytes(HASH_SIZE), 0, 0
    if flags & FLAG_MODEL:
        mhash, thash, numerics, context, name_len = _MODEL.unpack(take(_MODEL.size))
        model = take(name_len)
    name = take(struct.unpack("<H", take(2))[0]) if flags & FLAG_NAME else None
    mtime = struct.unpack("<q", take(8))[0] if flags & FLAG_MTIME else None
    (crc,) = struct.unpack("<I", r.read(4, "header"))
    if crc != zlib.crc32(raw):
        raise FormatError("header CRC mismatch (corrupt archive)")
    check_chunk_size(chunk_size, FormatError)
    if name is not None and _bad_file_name(name):
        raise FormatError("stored file name in header is not a plain file name")
    try:
        model_name = None if model is None else model.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("model name in header is not UTF-8") from None
    return Header(
        chunk_size=chunk_size,
        model_name=model_name,
        model_hash=mhash,
        tokenizer_hash=thash,
        numerics_version=numerics,
        context_window=context,
        name=None if name is None else name.decode("utf-8", "surrogateescape"),
        mtime=mtime,
    )


def _check_record(header: Header, i: int, codec: int, orig: int, plen: int, tokens: int) -> Codec:
    if codec not in _CODEC_IDS:
        raise FormatError(f"chunk {i}: unknown codec id {codec}")
    if not 1 <= orig <= header.chunk_size:
        raise FormatError(f"chunk {i}: original length {orig} outside 1..{header.chunk_size}")
    if plen > orig + MAX_OVERHEAD or (codec == Codec.STORED and plen != orig):
        raise FormatError(f"chunk {i}: payload length {plen} impossible for {orig} bytes")
    if codec == Codec.LM:
        if header.model_name is None:
            raise FormatError(f"chunk {i}: uses the lm codec but the header names no model")
        if not 1 <= tokens <= orig:
            raise FormatError(f"chunk {i}: token count {tokens} impossible for {orig} bytes")
    elif tokens:
        raise FormatError(f"chunk {i}: token count set on a non-lm chunk")
    return Codec(codec)


def _parse_trailer(raw: bytes) -> Trailer:
    size, count, index_offset, crc, tcrc, magic = _TRAILER.unpack(raw)
    if magic != END_MAGIC:
        raise FormatError("truncated archive: trailer missing")
    if tcrc != zlib.crc32(raw[:28]):
        raise FormatError("trailer CRC mismatch (corrupt archive)")
    return Trailer(size, count, index_offset, crc)


def _read_index(r: _Reader, count: int, header: Header) -> list[IndexEntry]:
    """Reads the index after its magic; `count` is what the caller already knows."""
    raw_count = r.read(8, "index")
    (declared,) = struct.unpack("<Q", raw_count)
    if declared != count:
        raise FormatError(f"index lists {declared} chunks, archive has {count}")
    body = r.read(count * _ENTRY.size, "index")
    (crc,) = struct.unpack("<I", r.read(4, "index"))
    if crc != zlib.crc32(INDEX_MAGIC + raw_count + body):
        raise FormatError("index CRC mismatch (corrupt archive)")
    entries = []
    for i, (offset, orig, plen, codec) in enumerate(_ENTRY.iter_unpack(body)):
        _check_record(header, i, codec, orig, plen, 1 if codec == Codec.LM else 0)
        entries.append(IndexEntry(offset, orig, plen, Codec(codec)))
    return entries


# ---------------------------------------------------------------- streaming writer / reader


class ArchiveWriter:
    """Writes header, records, index and trailer in one pass; memory is O(chunk count)
    for the 17-byte index entries only, so input from a pipe needs no seeking."""

    def __init__(self, dst: BinaryIO, header: Header) -> None:
        self.dst = dst
        self.header = header
        self._index = bytearray()
        self.chunks = 0
        self.original_size = 0
        self.pos = self._write(header.pack())

    def _write(self, data: bytes) -> int:
        self.dst.write(data)
        return len(data)

    def add(self, codec: Codec, original: bytes, payload: bytes, token_count: int = 0) -> None:
        orig = len(original)
        _check_record(self.header, self.chunks, codec, orig, len(payload), token_count)
        head = _RECORD.pack(codec, orig, len(payload), token_count, zlib.crc32(original))
        rcrc = zlib.crc32(payload, zlib.crc32(head))
        self._index += _ENTRY.pack(self.pos, orig, len(payload), codec)
        self.pos += self._write(head + _RECORD_CRC.pack(rcrc))
        self.pos += self._write(payload)
        self.chunks += 1
        self.original_size += orig

    def close(self, data_crc: int) -> int:
        """Writes index and trailer; returns the archive size. Does not close dst."""
        index_offset = self.pos
        index = INDEX_MAGIC + struct.pack("<Q", self.chunks) + self._index
        self.pos += self._write(index + struct.pack("<I", zlib.crc32(index)))
        body = struct.pack("<QQQI", self.original_size, self.chunks, index_offset, data_crc)
        self.pos += self._write(body + struct.pack("<I", zlib.crc32(body)) + END_MAGIC)
        return self.pos


class ArchiveReader:
    """Sequential reader (works on pipes). Iterate `records()` for (Record, payload);
    when it ends, the index and trailer have been checked against the records and
    `trailer` is set. The caller checks chunk CRCs and trailer.crc."""

    def __init__(self, src: BinaryIO) -> None:
        self._r = _Reader(src)
        self.header = _read_header(self._r)
        self.trailer: Trailer | None = None

    @property
    def position(self) -> int:
        return self._r.pos

    def records(self) -> Iterator[tuple[Record, bytes]]:
        r, header = self._r, self.header
        seen: list[IndexEntry] = []
        total = 0
        while True:
            i, offset = len(seen), r.pos
            first = r.read_upto(1)
            if not first:
                raise FormatError(f"truncated archive: cut short after {i} chunks")
            if first == INDEX_MAGIC[:1]:
                if r.read(3, "index") != INDEX_MAGIC[1:]:
                    raise FormatError(f"chunk {i}: bad record start (corrupt archive)")
                break
            head = first + r.read(_RECORD.size - 1, f"chunk {i} record")
            codec, orig, plen, tokens, crc = _RECORD.unpack(head)
            codec = _check_record(header, i, codec, orig, plen, tokens)
            (rcrc,) = _RECORD_CRC.unpack(r.read(4, f"chunk {i} record"))
            payload = r.read(plen, f"chunk {i} record")
            if rcrc != zlib.crc32(payload, zlib.crc32(head)):
                raise CorruptChunkError(f"chunk {i}: record CRC mismatch (corrupt archive)")
            seen.append(IndexEntry(offset, orig, plen, codec))
            total += orig
            yield Record(i, offset, codec, orig, plen, tokens, crc), payload
        index_offset = r.pos - len(INDEX_MAGIC)
        if _read_index(r, len(seen), header) != seen:
            raise FormatError("index does not match the chunk records")
        trailer = _parse_trailer(r.read(TRAILER_SIZE, "trailer"))
        if (trailer.original_size, trailer.chunk_count, trailer.index_offset) != (
            total,
            len(seen),
            index_offset,
        ):
            raise FormatError("trailer does not match the chunk records")
        if r.read_upto(1):
            raise FormatError("trailing garbage after archive")
        self.trailer = trailer


# ---------------------------------------------------------------- info


def _counts(entries: list[IndexEntry]) -> dict[str, int]:
    counts = {c.name.lower(): 0 for c in Codec}
    for e in entries:
        counts[e.codec.name.lower()] += 1
    return counts


def read_info(src: BinaryIO) -> ArchiveInfo:
    """Header, index and trailer. Seeks to the trailer when it can; on a pipe it
    scans (and checks) every record instead."""
    seekable = False
    try:
        seekable = src.seekable()
    except (OSError, ValueError):
        pass
    if not seekable:
        reader = ArchiveReader(src)
        entries = [
            IndexEntry(rec.offset, rec.original_length, rec.payload_length, rec.codec)
            for rec, _ in reader.records()
        ]
        t = reader.trailer
        assert t is not None
        return ArchiveInfo(
            reader.header, entries, t.original_size, reader.position, t.crc, _counts(entries)
        )

    start = src.tell()
    size = src.seek(0, os.SEEK_END) - start
    src.seek(start)
    r = _Reader(src)
    header = _read_header(r)
    header_end = r.pos
    if size < header_end + _INDEX_HEAD.size + 4 + TRAILER_SIZE:
        raise FormatError("truncated archive: trailer missing")
    src.seek(start + size - TRAILER_SIZE)
    t = _parse_trailer(_Reader(src).read(TRAILER_SIZE, "trailer"))
    index_size = _INDEX_HEAD.size + _ENTRY.size * t.chunk_count + 4
    if t.index_offset + index_size + TRAILER_SIZE != size:
        raise FormatError("trailer does not match the archive size")
    src.seek(start + t.index_offset)
    r = _Reader(src)
    if r.read(4, "index") != INDEX_MAGIC:
        raise FormatError("index missing at the offset the trailer gives")
    entries = _read_index(r, t.chunk_count, header)
    pos = header_end
    for e in entries:  # records must tile the space between header and index exactly
        if e.offset != pos:
            raise FormatError("index offsets do not match the chunk records")
        pos += RECORD_HEADER_SIZE + e.payload_length
    if pos != t.index_offset or sum(e.original_length for e in entries) != t.original_size:
        raise FormatError("index does not match the trailer")
    return ArchiveInfo(header, entries, t.original_size, size, t.crc, _counts(entries))
