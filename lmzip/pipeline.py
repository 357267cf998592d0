"""Streaming compress / decompress: the API the CLI calls.

Input is read in groups of `batch` chunks. Each group is encoded as a whole: the
lm codec scores all its chunks at once, a chunk whose lm payload wins becomes an lm
record, and every run of other consecutive chunks of the group becomes one
stored/zstd record. Memory is bounded by a group (plus a few bytes of index per
record), so pipes of any length work. Importing this module never imports torch:
the LM codec is loaded lazily, and only when a chunk needs it.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from lmzip.codecs import decode_plain, encode_plain, lm_saving
from lmzip.container import (
    MAX_MODEL_NAME,
    ArchiveInfo,
    ArchiveReader,
    ArchiveWriter,
    Codec,
    Header,
    ModelInfo,
    Record,
    check_chunk_size,
    max_record_chunks,
    read_full,
    read_info,
    storable_name,
    uvarint,
)
from lmzip.errors import CorruptChunkError, LmzipError, ModelMismatchError

ProgressFn = Callable[[int], None]


class ModelIdentity(Protocol):
    name: str
    model_hash: bytes
    tokenizer_hash: bytes


class LMCodec(Protocol):
    identity: ModelIdentity

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]: ...

    # Any number of items: the codec keeps at most its batch in flight, in item order.
    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]: ...


DECODE_LOOKAHEAD = 4  # lm records per decompression group, in units of --batch


@dataclass
class CompressOptions:
    chunk_size: int = 16384  # bytes per chunk
    model: str | None = None  # None = default model
    device: str = "cpu"
    threads: int | None = None
    batch: int = 32  # chunks per engine batch (and per read: bounds memory)
    name: str | None = None  # stored like gzip -N (basename only)
    mtime: int | None = None
    use_lm: bool = True
    window: int | None = None  # LM context window in tokens; None = the engine's default
    memory_block: int | None = None  # file-wide memory block (positions); None = default, 0 = no memory
    codec_factory: Callable[[CompressOptions], LMCodec] | None = None  # None: load_lm_codec


@dataclass
class DecompressOptions:
    model: str | None = None  # None = the model the archive names
    device: str = "cpu"
    threads: int | None = None
    batch: int = 32
    window: int | None = None  # set from the archive header
    memory_block: int | None = None  # set from the archive's model record (0: no memory)
    memory_group: int = 0  # likewise
    codec_factory: Callable[[DecompressOptions], LMCodec] | None = None


@dataclass
class Stats:
    original_bytes: int = 0
    compressed_bytes: int = 0
    chunks: dict[str, int] = field(default_factory=lambda: {c.name.lower(): 0 for c in Codec})


def load_codec(options: CompressOptions | DecompressOptions) -> LMCodec:
    """The LM codec the options ask for (the codec_factory's, if set), its file-wide
    memory empty: a factory may hand out one codec for several archives."""
    if options.codec_factory is not None:
        codec = options.codec_factory(options)  # type: ignore[arg-type]
        reset = getattr(codec, "reset_memory", None)
        if reset is not None:
            reset()
        return codec
    from lmzip.lm_codec import DEFAULT_MEMORY_BLOCK, load_lm_codec  # torch is imported only here

    block = options.memory_block
    return load_lm_codec(
        model=options.model,
        device=options.device,
        threads=options.threads,
        batch=options.batch,
        window=options.window,
        memory_block=DEFAULT_MEMORY_BLOCK if block is None else block,
        memory_group=getattr(options, "memory_group", 0),
    )


def _identity(codec: LMCodec, group: int = 0) -> ModelInfo:
    """What pins the codec's predictions. numerics_version and context_window may live
    on the identity or on the codec itself."""
    ident = codec.identity

    def pick(name: str) -> int:
        value = getattr(ident, name, None)
        return int(value if value is not None else getattr(codec, name, 0))

    return ModelInfo(
        name=ident.name.encode("utf-8")[:MAX_MODEL_NAME].decode("utf-8", "ignore"),
        model_hash=bytes(ident.model_hash),
        tokenizer_hash=bytes(ident.tokenizer_hash),
        numerics_version=pick("numerics_version"),
        context_window=pick("context_window"),
        # with memory: the writer's chunks per group (``group``), else the codec's own
        memory_group=(group or pick("memory_group")) if pick("memory_block") else 0,
        memory_block=pick("memory_block"),
    )


def _read_groups(src: BinaryIO, chunk_size: int, batch: int) -> Iterator[list[bytes]]:
    """Groups of up to `batch` full chunks (only the very last chunk may be short)."""
    while True:
        group = []
        for _ in range(batch):
            chunk = read_full(src, chunk_size)
            if chunk:
                group.append(chunk)
            if len(chunk) < chunk_size:
                if group:
                    yield group
                return
        yield group


# What an lm record costs beyond its payload: its framing and index entry (about 20
# bytes with 16 KiB chunks) and the extra stored/zstd record when it splits a run
# (about 12). A chunk goes to the lm only when it saves more than that.
LM_RECORD_COST = 32


def _lm_choices(group: list[bytes], lm_results: list[tuple[bytes, int] | None], model_cost: int) -> list[bool]:
    """Which chunks of a group become lm records. `model_cost`: the bytes of the model
    identity record if the archive has none yet; the group's lm records must save more
    than that together, or none is made (the model may still pay off in a later group)."""
    savings = [lm_saving(data, lm) - LM_RECORD_COST for data, lm in zip(group, lm_results, strict=True)]
    if sum(s for s in savings if s > 0) <= model_cost:
        return [False] * len(group)
    return [s > 0 for s in savings]


def _segments(
    group: list[bytes], lm_results: list[tuple[bytes, int] | None], use_lm: list[bool], run_limit: int
) -> Iterator[tuple[list[bytes], tuple[bytes, int] | None]]:
    """The records of a group: ([chunk], (payload, tokens)) for an lm record, (chunks,
    None) for a run of up to run_limit consecutive other chunks."""
    run: list[bytes] = []
    for data, lm, chosen in zip(group, lm_results, use_lm, strict=True):
        if chosen and lm is not None:
            if run:
                yield run, None
                run = []
            yield [data], lm
        else:
            run.append(data)
            if len(run) >= run_limit:
                yield run, None
                run = []
    if run:
        yield run, None


def compress_stream(
    src: BinaryIO, dst: BinaryIO, options: CompressOptions, progress: ProgressFn | None = None
) -> Stats:
    """Compress src into dst. `progress(n)` is called with the number of input bytes
    just consumed (an increment, like rich's `advance`)."""
    check_chunk_size(options.chunk_size, LmzipError)
    batch = max(1, options.batch)
    groups = _read_groups(src, options.chunk_size, batch)
    first = next(groups, None)
    # An empty input never loads the codec. The model identity is a record written
    # before the first lm record, so the header does not wait for the model.
    codec = load_codec(options) if options.use_lm and first else None
    # A name that is not a plain basename (e.g. has a backslash) is left out rather
    # than failing: restoring it could never be safe anyway.
    name = options.name if options.name and storable_name(options.name) else None
    writer = ArchiveWriter(dst, Header(chunk_size=options.chunk_size, name=name, mtime=options.mtime))
    run_limit = max_record_chunks(options.chunk_size)
    stats = Stats()
    crc = 0
    for group in itertools.chain([first] if first else [], groups):
        lm_results = codec.encode_chunks(group) if codec else [None] * len(group)
        if len(lm_results) != len(group):
            raise LmzipError("lm codec returned the wrong number of chunks")
        for data in group:
            crc = zlib.crc32(data, crc)
        use_lm = [False] * len(group)
        if codec is not None:
            model_cost = 0
            if not writer.has_model:  # the model record and its index entry: 2 kind bytes, 2 B, CRC, body
                body = len(_identity(codec, batch).pack_body())
                model_cost = 2 + 2 * len(uvarint(body)) + 4 + body
            use_lm = _lm_choices(group, lm_results, model_cost)
            finish = getattr(codec, "finish_group", None)
            if finish is not None:  # file-wide memory: code the chosen chunks with it
                lm_results = finish(use_lm)
        for chunks, lm in _segments(group, lm_results, use_lm, run_limit):
            if lm is not None:
                if not writer.has_model:
                    assert codec is not None
                    writer.add_model(_identity(codec, batch))
                writer.add(Codec.LM, chunks[0], lm[0], lm[1])
                stats.chunks["lm"] += 1
            else:
                data = b"".join(chunks)
                best = encode_plain(data)
                writer.add(best.codec, data, best.payload)
                stats.chunks[best.codec.name.lower()] += len(chunks)
        n = sum(map(len, group))
        stats.original_bytes += n
        if progress:
            progress(n)
    stats.compressed_bytes = writer.close(crc)
    return stats


def _describe(m: ModelInfo) -> str:
    memory = f", memory group {m.memory_group} block {m.memory_block}" if m.memory_block else ""
    return (
        f"hash {m.model_hash[:6].hex()}, tokenizer {m.tokenizer_hash[:6].hex()}, "
        f"numerics v{m.numerics_version}, window {m.context_window}{memory}"
    )


class _Decoder:
    """Decodes groups of records; loads the LM codec at the first lm record."""

    def __init__(self, reader: ArchiveReader, options: DecompressOptions) -> None:
        self.reader = reader
        self.options = options
        self.codec: LMCodec | None = None

    def lm_codec(self) -> LMCodec:
        if self.codec is None:
            m = self.reader.model
            assert m is not None  # the reader rejects an lm record before the model record
            opts = dataclasses.replace(
                self.options,
                model=self.options.model or m.name,
                window=m.context_window,
                memory_block=m.memory_block,
                memory_group=m.memory_group,
            )
            codec = load_codec(opts)
            mine = _identity(codec)
            # the memory group is the archive's layout (decompress_stream groups by it), not the codec's
            keys = ("model_hash", "tokenizer_hash", "numerics_version", "context_window", "memory_block")
            if any(getattr(m, k) != getattr(mine, k) for k in keys):
                raise ModelMismatchError(
                    f"archive needs model {m.name!r} ({_describe(m)}); loaded {mine.name!r} ({_describe(mine)})"
                )
            self.codec = codec
        return self.codec

    def decode(self, group: list[tuple[Record, bytes]]) -> list[bytes]:
        lm_recs = [rec for rec, _ in group if rec.codec == Codec.LM]
        lm_out: Iterator[bytes] = iter(())
        if lm_recs:
            codec = self.lm_codec()
            items = [(p, rec.token_count) for rec, p in group if rec.codec == Codec.LM]
            try:
                decoded = codec.decode_chunks(items)
            except LmzipError:
                raise
            except Exception as e:  # garbage that passed the checks: report, don't crash
                first, last = lm_recs[0].first_chunk, lm_recs[-1].first_chunk
                raise CorruptChunkError(f"chunks {first}-{last}: lm decoding failed ({type(e).__name__}: {e})") from e
            if len(decoded) != len(items):
                raise CorruptChunkError("lm codec returned the wrong number of chunks")
            lm_out = iter(decoded)
        out = []
        for rec, payload in group:
            try:
                data = next(lm_out) if rec.codec == Codec.LM else decode_plain(rec.codec, payload, rec.original_length)
            except CorruptChunkError as e:
                raise CorruptChunkError(f"{rec.label}: {e}") from None
            if len(data) != rec.original_length or zlib.crc32(data) != rec.crc:
                raise CorruptChunkError(f"{rec.label}: CRC mismatch")
            out.append(data)
        return out


def decompress_stream(
    src: BinaryIO,
    dst: BinaryIO | None,
    options: DecompressOptions,
    progress: ProgressFn | None = None,
    verify_only: bool = False,
) -> Stats:
    """Decompress src into dst (nothing is written when verify_only). Every chunk CRC,
    the index, the trailer and the whole-stream CRC are checked. `progress(n)` gets
    the number of archive bytes just consumed."""
    reader = ArchiveReader(src)
    decoder = _Decoder(reader, options)
    batch = max(1, options.batch)
    # The codec decodes `batch` lm records at a time in lock step. A group hands it
    # DECODE_LOOKAHEAD times as many, so that a slot freed by a short chunk takes the next
    # one instead of idling until the group's longest chunk ends (groups of exactly
    # `batch` used 58% of the slot-steps on a 20 MB text; x4 simulates to 84%). Memory
    # stays bounded: up to that many chunks of data plus one record per group.
    group_lm = DECODE_LOOKAHEAD * batch
    group_bytes = group_lm * reader.header.chunk_size
    stats = Stats()
    crc = 0
    reported = 0

    def flush(group: list[tuple[Record, bytes]]) -> None:
        nonlocal crc, reported
        for data in decoder.decode(group):
            crc = zlib.crc32(data, crc)
            stats.original_bytes += len(data)
            if not verify_only and dst is not None:
                dst.write(data)
        for rec, _ in group:
            stats.chunks[rec.codec.name.lower()] += rec.chunk_count
        group.clear()
        if progress:
            progress(reader.position - reported)
            reported = reader.position

    group: list[tuple[Record, bytes]] = []
    lm_count = pending = 0
    for rec, payload in reader.records():
        # File-wide memory: a memory group's lm records decode together (their chunks
        # share the memory block by block), and one group's records before the next's.
        memory_group = reader.model.memory_group if reader.model is not None else 0
        if memory_group and group and rec.first_chunk // memory_group != group[0][0].first_chunk // memory_group:
            flush(group)
            lm_count = pending = 0
        group.append((rec, payload))
        lm_count += rec.codec == Codec.LM
        pending += rec.original_length
        if not memory_group and (lm_count >= group_lm or pending >= group_bytes):
            flush(group)
            lm_count = pending = 0
    flush(group)
    assert reader.crc is not None  # set once records() is exhausted
    if crc != reader.crc:
        raise CorruptChunkError("whole-stream CRC mismatch")
    stats.compressed_bytes = reader.position
    if progress and reader.position > reported:
        progress(reader.position - reported)
    return stats


def read_archive_info(src: BinaryIO) -> ArchiveInfo:
    """Header, per-chunk index and trailer, without decoding (never imports torch)."""
    return read_info(src)
