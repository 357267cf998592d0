"""Byte layout of the .lmz format, version 2 (specified in docs/FORMAT.md), with bounds-checked parsing.

Everything a reader allocates is bounded by limits checked *before* the read:
a record never holds more than MAX_RECORD_SIZE original bytes (an lm record at
most one chunk, <= 64 MiB), a payload never exceeds its original data by more
than MAX_OVERHEAD, varints are at most 10 bytes, and the index size must agree
with the records seen (streaming) or fit the file (seeking). Every problem
raises FormatError / CorruptChunkError with a one-line message.

Records, chunks and numbering: the input is cut into chunks of `chunk_size`
bytes (the last may be shorter). A data record covers one or more consecutive
chunks (an lm record exactly one), so its original length O fixes how many:
ceil(O / chunk_size). Records are numbered from 0 in archive order, the model
identity record included; chunks are numbered from 0 in input order.
"""

from __future__ import annotations

import bisect
import enum
import io
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, overload

from lmzip.errors import CorruptChunkError, FormatError

MAGIC = b"LMZ\x00"
END_MAGIC = b"LMZE"
INDEX_MARK = 0x4C  # "L": starts the index; never a record kind
VERSION = 2

MAX_CHUNK_SIZE = 64 << 20
MAX_RECORD_SIZE = 64 << 20  # original bytes in one record (rounded down to whole chunks)
MAX_OVERHEAD = 64  # a payload may exceed its original data by this much (a forced codec on tiny data)
MAX_MODEL_NAME = 255
MAX_FILE_NAME = 4095
HASH_SIZE = 32
MAX_VARINT = 10  # bytes: enough for any value below 2**64
_U32 = (1 << 32) - 1

FLAG_NAME = 0x01  # original file name present
FLAG_MTIME = 0x02  # original mtime present
_KNOWN_FLAGS = FLAG_NAME | FLAG_MTIME

KIND_MODEL = 3  # record kind of the model identity record (data records use Codec values)
_CRC = struct.Struct("<I")
_TRAILER = struct.Struct("<III4s")  # data CRC, index size, tail CRC, end magic
TRAILER_SIZE = _TRAILER.size  # 16
# model identity body: 2 hashes, numerics and window (varints), from numerics v5 on the
# memory group and block (varints), name length (varint), name
MIN_MODEL_BODY = 2 * HASH_SIZE + 3
MAX_MODEL_BODY = 2 * HASH_SIZE + 5 + 5 + 5 + 5 + 2 + MAX_MODEL_NAME
MEMORY_NUMERICS = 5  # numerics versions from this one on carry the memory fields
MAX_MEMORY_GROUP = 1 << 16  # chunks per memory group
MAX_MEMORY_BLOCK = 1 << 20  # positions per memory block


class Codec(enum.IntEnum):
    STORED = 0
    ZSTD = 1
    LM = 2


_CODEC_IDS = frozenset(c.value for c in Codec)


# ---------------------------------------------------------------- varints


def uvarint(n: int) -> bytes:
    """A varint as archives hold them: LEB128 of 0 <= n < 2**64."""
    if not 0 <= n < 1 << 64:
        raise ValueError(f"varint out of range: {n}")
    return leb128(n)


def leb128(n: int) -> bytes:
    """Unsigned LEB128 of any n >= 0: 7 bits a byte, least significant first, high bit = more."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> int:
    if not -(1 << 63) <= n < 1 << 63:
        raise ValueError(f"mtime out of range: {n}")
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzigzag(z: int) -> int:
    return z >> 1 if not z & 1 else -(z >> 1) - 1


def max_record_chunks(chunk_size: int) -> int:
    """How many chunks one stored/zstd record may cover."""
    return max(1, MAX_RECORD_SIZE // chunk_size)


# ---------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class Header:
    chunk_size: int
    name: str | None = None  # original file name (basename only), like gzip -N
    mtime: int | None = None  # seconds since the epoch

    def pack(self) -> bytes:
        check_chunk_size(self.chunk_size, ValueError)
        flags = (FLAG_NAME if self.name is not None else 0) | (FLAG_MTIME if self.mtime is not None else 0)
        out = bytearray(MAGIC + bytes([VERSION, flags]) + uvarint(self.chunk_size))
        if self.name is not None:
            raw = self.name.encode("utf-8", "surrogateescape")
            if _bad_file_name(raw):
                raise ValueError(f"stored name must be a plain file name: {self.name!r}")
            out += uvarint(len(raw)) + raw
        if self.mtime is not None:
            out += uvarint(_zigzag(self.mtime))
        out += _CRC.pack(zlib.crc32(out))
        return bytes(out)


@dataclass(frozen=True)
class ModelInfo:
    """What pins the LM codec's predictions (the model identity record)."""

    name: str  # only a hint for loading (what `load_lm_codec(model=...)` is asked for); the rest decides
    model_hash: bytes
    tokenizer_hash: bytes
    numerics_version: int
    context_window: int
    memory_group: int = 0  # numerics >= 5: chunks per memory group (lm records sharing memory block by block)
    memory_block: int = 0  # numerics >= 5: positions per memory block

    def pack_body(self) -> bytes:
        if len(self.model_hash) != HASH_SIZE or len(self.tokenizer_hash) != HASH_SIZE:
            raise ValueError("model and tokenizer hashes must be 32 bytes")
        if not (0 <= self.numerics_version <= _U32 and 0 <= self.context_window <= _U32):
            raise ValueError("numerics version and context window must fit 32 bits")
        name = self.name.encode("utf-8")
        if len(name) > MAX_MODEL_NAME:
            raise ValueError(f"model name longer than {MAX_MODEL_NAME} bytes")
        memory = b""
        if self.numerics_version >= MEMORY_NUMERICS:
            if not (1 <= self.memory_group <= MAX_MEMORY_GROUP and 1 <= self.memory_block <= MAX_MEMORY_BLOCK):
                raise ValueError("memory group or block out of range")
            memory = uvarint(self.memory_group) + uvarint(self.memory_block)
        elif self.memory_group or self.memory_block:
            raise ValueError(f"memory fields need numerics version {MEMORY_NUMERICS} or later")
        return (
            bytes(self.model_hash)
            + bytes(self.tokenizer_hash)
            + uvarint(self.numerics_version)
            + uvarint(self.context_window)
            + memory
            + uvarint(len(name))
            + name
        )


@dataclass(frozen=True)
class Record:
    """A data record's header, as the sequential reader yields it; the payload comes with it."""

    index: int  # record number in the archive
    offset: int  # of the record in the archive
    codec: Codec
    first_chunk: int
    chunk_count: int
    original_offset: int  # of its data in the original stream
    original_length: int
    payload_length: int
    token_count: int  # lm only
    crc: int  # CRC32 of the record's original data

    @property
    def label(self) -> str:
        """How errors name it: `chunk 3` or `chunks 3-10`."""
        if self.chunk_count == 1:
            return f"chunk {self.first_chunk}"
        return f"chunks {self.first_chunk}-{self.first_chunk + self.chunk_count - 1}"


@dataclass(frozen=True)
class RecordInfo:
    """One entry of the index: where a record is and what it holds."""

    offset: int  # of the record in the archive
    size: int  # bytes of the whole record
    kind: str  # "stored", "zstd", "lm" or "model"
    original_offset: int
    original_length: int  # 0 for the model record
    payload_length: int
    token_count: int
    first_chunk: int
    chunk_count: int  # 0 for the model record


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk. `payload_length` is its record's payload, counted on the record's first
    chunk (0 on the others), so sums over chunks are the archive's payload bytes."""

    offset: int  # of its record in the archive
    original_offset: int
    original_length: int
    payload_length: int
    codec: Codec
    record: int  # record number (position in ArchiveInfo.records)


@dataclass
class ArchiveInfo:
    header: Header
    model: ModelInfo | None  # None: no lm record (nothing to load)
    records: list[RecordInfo]
    chunks: Sequence[ChunkInfo]  # computed on demand: see ChunkView
    original_size: int
    compressed_size: int
    crc: int  # CRC32 of the whole original stream
    codec_counts: dict[str, int] = field(default_factory=dict)  # chunks per codec

    @property
    def name(self) -> str | None:
        return self.header.name

    @property
    def mtime(self) -> int | None:
        return self.header.mtime


# ---------------------------------------------------------------- low-level reading


class _Reader:
    """Exact reads with position tracking; a short read is a truncated archive.
    When `capture` is a bytearray, every byte read is appended to it (for CRCs)."""

    def __init__(self, src: BinaryIO, truncated: str = "truncated archive: {} cut short") -> None:
        self.src = src
        self.pos = 0
        self.capture: bytearray | None = None
        self.truncated = truncated

    def read(self, n: int, what: str) -> bytes:
        data = self.read_upto(n)
        if len(data) != n:
            raise FormatError(self.truncated.format(what))
        return data

    def read_upto(self, n: int) -> bytes:
        data = read_full(self.src, n)
        self.pos += len(data)
        if self.capture is not None:
            self.capture += data
        return data

    def varint(self, what: str) -> int:
        value = 0
        for i in range(MAX_VARINT):
            b = self.read(1, what)[0]
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i:
                    raise FormatError(f"{what}: overlong varint (corrupt archive)")
                if value >= 1 << 64:
                    break
                return value
        raise FormatError(f"{what}: varint too large (corrupt archive)")


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
    return not raw or len(raw) > MAX_FILE_NAME or raw in (b".", b"..") or any(c in raw for c in b"/\\\x00")


def _read_header(r: _Reader) -> Header:
    head = r.read_upto(6)
    if len(head) < 4 or head[:4] != MAGIC:
        raise FormatError("not an lmzip file")
    if len(head) < 6:
        raise FormatError("truncated archive: header cut short")
    version, flags = head[4], head[5]
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this lmzip reads version {VERSION})")
    if flags & ~_KNOWN_FLAGS:
        raise FormatError(f"unsupported header flags 0x{flags:02x}")
    r.capture = bytearray(head)
    chunk_size = r.varint("header")
    name = None
    if flags & FLAG_NAME:
        n = r.varint("header")
        if not 1 <= n <= MAX_FILE_NAME:
            raise FormatError(f"stored file name length {n} outside 1..{MAX_FILE_NAME}")
        name = r.read(n, "header")
    mtime = _unzigzag(r.varint("header")) if flags & FLAG_MTIME else None
    raw, r.capture = r.capture, None
    (crc,) = _CRC.unpack(r.read(4, "header"))
    if crc != zlib.crc32(raw):
        raise FormatError("header CRC mismatch (corrupt archive)")
    check_chunk_size(chunk_size, FormatError)
    if name is not None and _bad_file_name(name):
        raise FormatError("stored file name in header is not a plain file name")
    return Header(
        chunk_size=chunk_size,
        name=None if name is None else name.decode("utf-8", "surrogateescape"),
        mtime=mtime,
    )


def _parse_model_body(i: int, body: bytes) -> ModelInfo:
    r = _Reader(io.BytesIO(body), f"record {i}: model identity malformed ({{}} cut short)")
    mhash, thash = r.read(HASH_SIZE, "hash"), r.read(HASH_SIZE, "hash")
    numerics, window = r.varint("model record"), r.varint("model record")
    group = block = 0
    if numerics >= MEMORY_NUMERICS:
        group, block = r.varint("model record"), r.varint("model record")
        if not (1 <= group <= MAX_MEMORY_GROUP and 1 <= block <= MAX_MEMORY_BLOCK):
            raise FormatError(f"record {i}: memory group {group} or block {block} out of range")
    n = r.varint("model record")
    if numerics > _U32 or window > _U32 or n > MAX_MODEL_NAME:
        raise FormatError(f"record {i}: model identity field out of range")
    name = r.read(n, "name")
    if r.read_upto(1):
        raise FormatError(f"record {i}: model identity malformed (extra bytes)")
    try:
        decoded = name.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"record {i}: model name is not UTF-8") from None
    return ModelInfo(decoded, mhash, thash, numerics, window, group, block)


# ---------------------------------------------------------------- record layout rules


@dataclass(frozen=True)
class _Fields:
    """A record's header fields (what the index repeats): kind, O (or the model body
    length B), P and T. The record's size follows from them."""

    kind: int
    length: int
    payload: int = 0
    tokens: int = 0

    def pack(self) -> bytes:
        out = bytes([self.kind]) + uvarint(self.length)
        if self.kind in (Codec.ZSTD, Codec.LM):
            out += uvarint(self.payload)
        if self.kind == Codec.LM:
            out += uvarint(self.tokens)
        return out

    @property
    def payload_length(self) -> int:
        return self.length if self.kind in (Codec.STORED, KIND_MODEL) else self.payload

    @property
    def size(self) -> int:
        return len(self.pack()) + self.payload_length + _CRC.size


def _read_fields(r: _Reader, kind: int, i: int) -> _Fields:
    """Reads the fields after the kind byte, checking each bound before the next read."""
    what = f"record {i}"
    if kind == KIND_MODEL:
        b = r.varint(what)
        if not MIN_MODEL_BODY <= b <= MAX_MODEL_BODY:
            raise FormatError(f"record {i}: model identity length {b} outside {MIN_MODEL_BODY}..{MAX_MODEL_BODY}")
        return _Fields(kind, b)
    if kind not in _CODEC_IDS:
        raise FormatError(f"record {i}: unknown record kind {kind}")
    orig = r.varint(what)
    if not 1 <= orig <= MAX_RECORD_SIZE:  # the layout check refines this; bound every read now
        raise FormatError(f"record {i}: original length {orig} outside 1..{MAX_RECORD_SIZE}")
    plen = r.varint(what) if kind != Codec.STORED else orig
    if plen > orig + MAX_OVERHEAD:
        raise FormatError(f"record {i}: payload length {plen} impossible for {orig} bytes")
    tokens = r.varint(what) if kind == Codec.LM else 0
    if kind == Codec.LM and not 1 <= tokens <= orig:
        raise FormatError(f"record {i}: token count {tokens} impossible for {orig} bytes")
    return _Fields(kind, orig, plen, tokens)


class _Layout:
    """The rules on the sequence of records, shared by writer, sequential reader and the
    index check: at most one model record, before any lm record; an lm record is one
    chunk; a stored/zstd record at most max_record_chunks chunks; only the last data
    record may end in a short chunk. Numbers records and chunks as it goes."""

    def __init__(self, header: Header) -> None:
        self.chunk_size = header.chunk_size
        self.records: list[RecordInfo] = []
        self.chunks = 0
        self.original = 0
        self.offset = 0  # archive offset of the next record (set by the caller)
        self.model = False
        self.short = False

    def add(self, f: _Fields) -> RecordInfo:
        i = len(self.records)
        if f.kind == KIND_MODEL:
            if self.model:
                raise FormatError(f"record {i}: second model identity record")
            self.model = True
            info = RecordInfo(self.offset, f.size, "model", self.original, 0, f.length, 0, self.chunks, 0)
        else:
            codec = Codec(f.kind)
            if self.short:
                raise FormatError(f"record {i}: data after the short last chunk")
            limit = self.chunk_size * (1 if codec == Codec.LM else max_record_chunks(self.chunk_size))
            if not 1 <= f.length <= limit:
                raise FormatError(f"record {i}: original length {f.length} outside 1..{limit}")
            if codec == Codec.LM and not self.model:
                raise FormatError(f"record {i}: lm record before the model identity record")
            count = -(-f.length // self.chunk_size)
            info = RecordInfo(
                self.offset,
                f.size,
                codec.name.lower(),
                self.original,
                f.length,
                f.payload_length,
                f.tokens,
                self.chunks,
                count,
            )
            self.short = f.length % self.chunk_size != 0
            self.chunks += count
            self.original += f.length
        self.records.append(info)
        self.offset += f.size
        return info


class ChunkView(Sequence[ChunkInfo]):
    """The chunks of an archive, computed from its records on demand.

    A record's declared length can stand for millions of chunks (chunk size 1, 64 MiB
    zstd record of zeros), so the list is never materialised: only what is asked for.
    """

    def __init__(self, layout: _Layout) -> None:
        self._cs = layout.chunk_size
        self._records = [(i, r) for i, r in enumerate(layout.records) if r.kind != "model"]
        self._starts: list[int] = []  # first chunk index of each data record
        n = 0
        for _, rec in self._records:
            self._starts.append(n)
            n += rec.chunk_count
        self._len = n

    def __len__(self) -> int:
        return self._len

    def __eq__(self, other: object) -> bool:  # same records, same chunks; never materialised
        if isinstance(other, ChunkView):
            return (self._cs, self._records) == (other._cs, other._records)
        return isinstance(other, Sequence) and len(other) == self._len and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    @overload
    def __getitem__(self, i: int) -> ChunkInfo: ...
    @overload
    def __getitem__(self, i: slice) -> list[ChunkInfo]: ...
    def __getitem__(self, i: int | slice) -> ChunkInfo | list[ChunkInfo]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._len))]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(i)
        r = bisect.bisect_right(self._starts, i) - 1
        index, rec = self._records[r]
        k = i - self._starts[r]
        start = k * self._cs
        return ChunkInfo(
            rec.offset,
            rec.original_offset + start,
            min(self._cs, rec.original_length - start),
            rec.payload_length if k == 0 else 0,
            Codec[rec.kind.upper()],
            index,
        )


def _chunk_infos(layout: _Layout) -> ChunkView:
    return ChunkView(layout)


def _counts(layout: _Layout) -> dict[str, int]:
    counts = {c.name.lower(): 0 for c in Codec}
    for rec in layout.records:
        if rec.kind != "model":
            counts[rec.kind] += rec.chunk_count
    return counts


# ---------------------------------------------------------------- index and trailer


def _read_index(
    r: _Reader, header: Header, expected: list[_Fields] | None, start: int, max_count: int = 0
) -> tuple[_Layout, int]:
    """Reads the index from its count on (after the mark) and the trailer; checks the
    tail CRC. `expected`: the records a sequential reader saw (entries must match);
    None: the entries are only checked against the layout rules. Returns the layout
    (record offsets from `start`, the header's end) and the whole-stream CRC."""
    r.capture = bytearray([INDEX_MARK])
    count = r.varint("index")
    if expected is not None and count != len(expected):
        raise FormatError(f"index lists {count} records, archive has {len(expected)}")
    if expected is None and count > max_count:  # entries take 2 bytes at least
        raise FormatError(f"index lists {count} records, more than its size allows")
    layout = _Layout(header)
    layout.offset = start
    for i in range(count):
        f = _read_fields(r, r.read(1, "index")[0], i)
        if expected is not None and f != expected[i]:
            raise FormatError(f"index entry {i} does not match record {i}")
        layout.add(f)
    index = r.capture
    r.capture = None
    crc, index_size, tail_crc, magic = _TRAILER.unpack(r.read(TRAILER_SIZE, "trailer"))
    if magic != END_MAGIC:
        raise FormatError("truncated archive: trailer missing")
    if tail_crc != zlib.crc32(struct.pack("<II", crc, index_size), zlib.crc32(index)):
        raise FormatError("index CRC mismatch (corrupt archive)")
    if index_size != len(index):
        raise FormatError("trailer does not match the index")
    return layout, crc


# ---------------------------------------------------------------- streaming writer / reader


class ArchiveWriter:
    """Writes header, records, index and trailer in one pass; memory is O(records) for
    the index entries (a few bytes each), so input from a pipe needs no seeking."""

    def __init__(self, dst: BinaryIO, header: Header) -> None:
        self.dst = dst
        self.header = header
        self._layout = _Layout(header)
        self._index = bytearray()
        self.pos = self._layout.offset = self._write(header.pack())

    @property
    def has_model(self) -> bool:
        return self._layout.model

    @property
    def original_size(self) -> int:
        return self._layout.original

    def _write(self, data: bytes) -> int:
        self.dst.write(data)
        return len(data)

    def _record(self, f: _Fields, crc: int, payload: bytes) -> None:
        self._layout.add(f)  # raises before anything is written
        head = f.pack()
        self._index += head
        self.pos += self._write(head + _CRC.pack(crc))
        self.pos += self._write(payload)

    def add_model(self, model: ModelInfo) -> None:
        """The model identity record: must come before the first lm record."""
        body = model.pack_body()
        self._record(_Fields(KIND_MODEL, len(body)), zlib.crc32(body), body)

    def add(self, codec: Codec, original: bytes, payload: bytes, token_count: int = 0) -> None:
        """A data record: `original` is one or more whole chunks (lm: exactly one)."""
        codec = Codec(codec)
        if codec == Codec.STORED and payload != original:
            raise ValueError("a stored payload is the original data")
        if codec != Codec.LM and token_count:
            raise ValueError("token count on a non-lm record")
        f = _Fields(codec, len(original), len(payload), token_count)
        if len(payload) > len(original) + MAX_OVERHEAD or (codec == Codec.LM and not 1 <= token_count <= len(original)):
            raise FormatError(f"record {len(self._layout.records)}: fields out of range")
        self._record(f, zlib.crc32(original), payload)

    def close(self, data_crc: int) -> int:
        """Writes index and trailer; returns the archive size. Does not close dst."""
        index = bytes([INDEX_MARK]) + uvarint(len(self._layout.records)) + self._index
        crc8 = struct.pack("<II", data_crc, len(index))
        tail = crc8 + _CRC.pack(zlib.crc32(crc8, zlib.crc32(index))) + END_MAGIC
        self.pos += self._write(index + tail)
        return self.pos


class ArchiveReader:
    """Sequential reader (works on pipes). Iterate `records()` for (Record, payload) of
    the data records; the model identity record is read on the way and sets `model`
    (always before the first lm record is yielded). When `records()` ends, the index
    and trailer have been checked against the records and `crc` is set. The caller
    checks record CRCs and the whole-stream CRC."""

    def __init__(self, src: BinaryIO) -> None:
        self._r = _Reader(src)
        self.header = _read_header(self._r)
        self.header_size = self._r.pos
        self.model: ModelInfo | None = None
        self.crc: int | None = None  # CRC32 of the whole original stream, from the trailer
        self.layout = _Layout(self.header)
        self.layout.offset = self.header_size

    @property
    def position(self) -> int:
        return self._r.pos

    def records(self) -> Iterator[tuple[Record, bytes]]:
        r, layout = self._r, self.layout
        seen: list[_Fields] = []
        while True:
            i, offset = len(seen), r.pos
            first = r.read_upto(1)
            if not first:
                raise FormatError(f"truncated archive: cut short after {i} records")
            if first[0] == INDEX_MARK:
                break
            f = _read_fields(r, first[0], i)
            info = layout.add(f)  # checks the layout before the payload is read
            seen.append(f)
            (crc,) = _CRC.unpack(r.read(4, f"record {i}"))
            payload = r.read(f.payload_length, f"record {i}")
            if f.kind == KIND_MODEL:
                if crc != zlib.crc32(payload):
                    raise CorruptChunkError(f"record {i}: model identity CRC mismatch (corrupt archive)")
                self.model = _parse_model_body(i, payload)
                continue
            yield (
                Record(
                    i,
                    offset,
                    Codec(f.kind),
                    info.first_chunk,
                    info.chunk_count,
                    info.original_offset,
                    f.length,
                    f.payload_length,
                    f.tokens,
                    crc,
                ),
                payload,
            )
        _, self.crc = _read_index(r, self.header, seen, self.header_size)
        if r.read_upto(1):
            raise FormatError("trailing garbage after archive")


# ---------------------------------------------------------------- info


def read_info(src: BinaryIO) -> ArchiveInfo:
    """Header, model identity, index and trailer. Seeks to the trailer when it can; on a
    pipe it scans (and checks) every record instead."""
    seekable = False
    try:
        seekable = src.seekable()
    except (OSError, ValueError):
        pass
    if not seekable:
        reader = ArchiveReader(src)
        for _ in reader.records():
            pass
        assert reader.crc is not None
        layout = reader.layout
        return _info(reader.header, reader.model, layout, reader.position, reader.crc)

    start = src.tell()
    size = src.seek(0, os.SEEK_END) - start
    src.seek(start)
    r = _Reader(src)
    header = _read_header(r)
    header_end = r.pos
    if size < header_end + 2 + TRAILER_SIZE:
        raise FormatError("truncated archive: trailer missing")
    src.seek(start + size - TRAILER_SIZE)
    tail = _Reader(src).read(TRAILER_SIZE, "trailer")
    _, index_size, _, magic = _TRAILER.unpack(tail)
    if magic != END_MAGIC:
        raise FormatError("truncated archive: trailer missing")
    index_offset = size - TRAILER_SIZE - index_size
    if not 2 <= index_size or index_offset < header_end:
        raise FormatError("trailer does not match the archive size")
    src.seek(start + index_offset)
    r = _Reader(src, "index malformed: {} cut short (corrupt archive)")
    if r.read(1, "index")[0] != INDEX_MARK:
        raise FormatError("index missing at the offset the trailer gives")
    layout, crc = _read_index(r, header, None, header_end, index_size // 2)
    if r.pos != index_size + TRAILER_SIZE:
        raise FormatError("index does not match the trailer")
    if layout.offset != index_offset:  # records must tile the space between header and index
        raise FormatError("index does not match the records")
    model = None
    for i, rec in enumerate(layout.records):
        if rec.kind == "model":
            src.seek(start + rec.offset)
            mr = _Reader(src)
            f = _read_fields(mr, mr.read(1, f"record {i}")[0], i)
            if f != _Fields(KIND_MODEL, rec.payload_length):
                raise FormatError(f"record {i}: does not match its index entry")
            (mcrc,) = _CRC.unpack(mr.read(4, f"record {i}"))
            body = mr.read(f.length, f"record {i}")
            if mcrc != zlib.crc32(body):
                raise CorruptChunkError(f"record {i}: model identity CRC mismatch (corrupt archive)")
            model = _parse_model_body(i, body)
    return _info(header, model, layout, size, crc)


def _info(header: Header, model: ModelInfo | None, layout: _Layout, size: int, crc: int) -> ArchiveInfo:
    chunks = _chunk_infos(layout)
    return ArchiveInfo(header, model, layout.records, chunks, layout.original, size, crc, _counts(layout))
