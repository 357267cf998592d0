"""Streaming compress / decompress: the API the CLI calls.

Memory is bounded by `batch` chunks (plus 17 bytes of index per chunk), so pipes
of any length work. Importing this module never imports torch: the LM codec is
loaded lazily, and only when a chunk needs it.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from lmzip.codecs import choose_best, decode_plain
from lmzip.container import (
    MAX_MODEL_NAME,
    ArchiveInfo,
    ArchiveReader,
    ArchiveWriter,
    Codec,
    Header,
    Record,
    check_chunk_size,
    read_full,
    read_info,
    storable_name,
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

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]: ...


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
    codec_factory: Callable[[CompressOptions], LMCodec] | None = None  # None: load_lm_codec


@dataclass
class DecompressOptions:
    model: str | None = None  # None = the model the archive names
    device: str = "cpu"
    threads: int | None = None
    batch: int = 32
    window: int | None = None  # set from the archive header
    codec_factory: Callable[[DecompressOptions], LMCodec] | None = None


@dataclass
class Stats:
    original_bytes: int = 0
    compressed_bytes: int = 0
    chunks: dict[str, int] = field(default_factory=lambda: {c.name.lower(): 0 for c in Codec})


def _load_codec(options: CompressOptions | DecompressOptions) -> LMCodec:
    if options.codec_factory is not None:
        return options.codec_factory(options)  # type: ignore[arg-type]
    from lmzip.lm_codec import load_lm_codec  # torch is imported only here

    return load_lm_codec(
        model=options.model,
        device=options.device,
        threads=options.threads,
        batch=options.batch,
        window=options.window,
    )


def _identity(codec: LMCodec) -> dict[str, object]:
    """The header fields that pin the codec's predictions. numerics_version and
    context_window may live on the identity or on the codec itself."""
    ident = codec.identity

    def pick(name: str) -> int:
        value = getattr(ident, name, None)
        return int(value if value is not None else getattr(codec, name, 0))

    name = ident.name.encode("utf-8")[:MAX_MODEL_NAME].decode("utf-8", "ignore")
    return {
        "model_name": name,  # only a hint for loading; the hashes decide
        "model_hash": bytes(ident.model_hash),
        "tokenizer_hash": bytes(ident.tokenizer_hash),
        "numerics_version": pick("numerics_version"),
        "context_window": pick("context_window"),
    }


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


def compress_stream(
    src: BinaryIO, dst: BinaryIO, options: CompressOptions, progress: ProgressFn | None = None
) -> Stats:
    """Compress src into dst. `progress(n)` is called with the number of input bytes
    just consumed (an increment, like rich's `advance`)."""
    check_chunk_size(options.chunk_size, LmzipError)
    batch = max(1, options.batch)
    groups = _read_groups(src, options.chunk_size, batch)
    first = next(groups, None)
    # The header carries the LM identity, so the codec loads before anything is
    # written; an empty input never loads it.
    codec = _load_codec(options) if options.use_lm and first else None
    # A name that is not a plain basename (e.g. has a backslash) is left out rather
    # than failing: restoring it could never be safe anyway.
    name = options.name if options.name and storable_name(options.name) else None
    header = Header(
        chunk_size=options.chunk_size,
        name=name,
        mtime=options.mtime,
        **(_identity(codec) if codec else {}),  # type: ignore[arg-type]
    )
    writer = ArchiveWriter(dst, header)
    stats = Stats()
    crc = 0
    for group in itertools.chain([first] if first else [], groups):
        lm_results = codec.encode_chunks(group) if codec else [None] * len(group)
        for data, lm in zip(group, lm_results, strict=True):
            best = choose_best(data, lm)
            writer.add(best.codec, data, best.payload, best.token_count)
            stats.chunks[best.codec.name.lower()] += 1
            crc = zlib.crc32(data, crc)
        n = sum(map(len, group))
        stats.original_bytes += n
        if progress:
            progress(n)
    stats.compressed_bytes = writer.close(crc)
    return stats


def _describe(fields: dict) -> str:
    return (
        f"hash {fields['model_hash'][:6].hex()}, tokenizer {fields['tokenizer_hash'][:6].hex()}, "
        f"numerics v{fields['numerics_version']}, window {fields['context_window']}"
    )


class _Decoder:
    """Decodes groups of records; loads the LM codec at the first lm chunk."""

    def __init__(self, header: Header, options: DecompressOptions) -> None:
        self.header = header
        self.options = options
        self.codec: LMCodec | None = None

    def lm_codec(self) -> LMCodec:
        if self.codec is None:
            h = self.header
            opts = dataclasses.replace(
                self.options, model=self.options.model or h.model_name, window=h.context_window
            )
            codec = _load_codec(opts)
            mine = _identity(codec)
            keys = ("model_hash", "tokenizer_hash", "numerics_version", "context_window")
            if any(getattr(h, k) != mine[k] for k in keys):
                raise ModelMismatchError(
                    f"archive needs model {h.model_name!r} ({_describe(vars(h))}); "
                    f"loaded {mine['model_name']!r} ({_describe(mine)})"
                )
            self.codec = codec
        return self.codec

    def decode(self, group: list[tuple[Record, bytes]]) -> list[bytes]:
        lm_items = [(p, rec.token_count) for rec, p in group if rec.codec == Codec.LM]
        lm_out: Iterator[bytes] = iter(())
        if lm_items:
            codec = self.lm_codec()
            try:
                decoded = codec.decode_chunks(lm_items)
            except LmzipError:
                raise
            except Exception as e:  # garbage that passed the CRCs: report, don't crash
                first, last = group[0][0].index, group[-1][0].index
                raise CorruptChunkError(
                    f"chunks {first}-{last}: lm decoding failed ({type(e).__name__}: {e})"
                ) from e
            if len(decoded) != len(lm_items):
                raise CorruptChunkError("lm codec returned the wrong number of chunks")
            lm_out = iter(decoded)
        out = []
        for rec, payload in group:
            try:
                data = (
                    next(lm_out)
                    if rec.codec == Codec.LM
                    else decode_plain(rec.codec, payload, rec.original_length)
                )
            except CorruptChunkError as e:
                raise CorruptChunkError(f"chunk {rec.index}: {e}") from None
            if len(data) != rec.original_length or zlib.crc32(data) != rec.crc:
                raise CorruptChunkError(f"chunk {rec.index}: CRC mismatch")
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
    decoder = _Decoder(reader.header, options)
    batch = max(1, options.batch)
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
            stats.chunks[rec.codec.name.lower()] += 1
        group.clear()
        if progress:
            progress(reader.position - reported)
            reported = reader.position

    group: list[tuple[Record, bytes]] = []
    for item in reader.records():
        group.append(item)
        if len(group) >= batch:
            flush(group)
    flush(group)
    assert reader.trailer is not None  # set once records() is exhausted
    if crc != reader.trailer.crc:
        raise CorruptChunkError("whole-stream CRC mismatch")
    stats.compressed_bytes = reader.position
    if progress and reader.position > reported:
        progress(reader.position - reported)
    return stats


def read_archive_info(src: BinaryIO) -> ArchiveInfo:
    """Header, per-chunk index and trailer, without decoding (never imports torch)."""
    return read_info(src)
