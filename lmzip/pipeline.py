"""Streaming compress / decompress: the API the CLI calls.

Input is read in groups of `batch` chunks. Each group is encoded as a whole: the
lm codec scores all its chunks at once (the TEXT spans of each: lmzip/spans.py), a
chunk whose model-coded payload wins becomes an lm record (pure text) or a spans
record (format v3: text, runs, binary), and every run of other consecutive chunks of
the group becomes one stored/zstd record. Memory is bounded by a group (plus a few
bytes of index per record), so pipes of any length work. Importing this module never imports torch:
the LM codec is loaded lazily, and only when a chunk needs it.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from lmzip import defaults, spans
from lmzip.codecs import Encoded, decode_plain, decode_plain_into, encode_plain, lm_saving, zstd_compress
from lmzip.container import (
    MAX_OVERHEAD,
    ArchiveInfo,
    ArchiveReader,
    ArchiveWriter,
    Codec,
    Header,
    ModelInfo,
    Payload,
    Record,
    check_chunk_size,
    max_record_chunks,
    members,
    model_label,
    model_record_size,
    printable_label,
    read_full,
    read_info,
    read_infos,
    record_cost,
    storable_name,
)
from lmzip.errors import CorruptChunkError, FormatError, LmzipError, ModelMismatchError

ProgressFn = Callable[[int], None]


class ModelIdentity(Protocol):
    name: str
    model_hash: bytes
    tokenizer_hash: bytes


class ModelCodec(Protocol):
    """What the pipeline needs from the model's codec (lmzip.lm_codec.LMCodec; the tests'
    fakes). Optional members, asked for by name: encode_texts / decode_texts (spans
    records), finish_group / fresh / memory_block (file-wide memory), numerics_version /
    context_window / memory_group on the codec or its identity (_identity); docs/DESIGN.md
    "The LM codec interface used by the pipeline" has the whole contract."""

    identity: ModelIdentity

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]: ...

    # Any number of items: the codec keeps at most its batch in flight, in item order.
    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]: ...


DECODE_LOOKAHEAD = 4  # lm records per decompression group, in units of --batch
# Memory bounds (bytes), whatever the chunk size, the record sizes and their number
# (docs/DESIGN.md "Memory"): a decompression group holds at most DECODE_GROUP_BYTES of
# original data (one lm record may exceed it: an lm chunk is decoded whole); a stored or
# zstd record larger than STREAM_RECORD_BYTES is decoded straight to the output in pieces
# (container.PIECE); a compression group reads at most COMPRESS_GROUP_BYTES of input
# (at least one chunk). With file-wide memory a decompression group is one memory group
# (a compression group), at most MAX_MEMORY_GROUP_BYTES of original data.
DECODE_GROUP_BYTES = 16 << 20
STREAM_RECORD_BYTES = 4 << 20
COMPRESS_GROUP_BYTES = 64 << 20
MAX_MEMORY_GROUP_BYTES = COMPRESS_GROUP_BYTES


@dataclass
class CompressOptions:
    chunk_size: int = defaults.CHUNK_SIZE  # bytes per chunk
    model: str | None = None  # None = default model
    device: str = "cpu"
    threads: int | None = None
    batch: int = defaults.BATCH  # chunks per engine batch (and per read: bounds memory)
    name: str | None = None  # stored like gzip -N (basename only)
    mtime: int | None = None
    use_lm: bool = True
    window: int | None = None  # LM context window in tokens; None = defaults.WINDOW
    memory_block: int | None = None  # file-wide memory block (positions); None = default, 0 = no memory
    codec_factory: Callable[[CompressOptions], ModelCodec] | None = None  # None: load_lm_codec


@dataclass
class DecompressOptions:
    model: str | None = None  # None: the model with the archive's hashes (never what its name says)
    device: str = "cpu"
    threads: int | None = None
    batch: int = defaults.BATCH
    window: int | None = None  # set from the archive's model record
    archive_model: ModelInfo | None = None  # set from the archive's model record
    memory_block: int | None = None  # set from the archive's model record (0: no memory)
    memory_group: int = 0  # likewise
    codec_factory: Callable[[DecompressOptions], ModelCodec] | None = None


@dataclass
class Stats:
    original_bytes: int = 0
    compressed_bytes: int = 0
    chunks: dict[str, int] = field(default_factory=lambda: {c.name.lower(): 0 for c in Codec})


def load_codec(options: CompressOptions | DecompressOptions) -> ModelCodec:
    """The LM codec the options ask for (the codec_factory's, if set), its file-wide
    memory empty: a factory may hand out one codec for several archives."""
    if options.codec_factory is not None:
        codec = options.codec_factory(options)  # type: ignore[arg-type]
        fresh = getattr(codec, "fresh", None)  # a codec of its own memory: one per archive
        return fresh() if fresh is not None else codec
    from lmzip.threads import prepare_openmp

    prepare_openmp()  # before torch loads libgomp: see lmzip/threads.py
    from lmzip.lm_codec import DEFAULT_MEMORY_BLOCK, load_lm_codec  # torch is imported only here

    block = options.memory_block
    return load_lm_codec(
        model=options.model,
        device=options.device,
        threads=options.threads,
        batch=options.batch,
        window=options.window,
        want=getattr(options, "archive_model", None),
        memory_block=DEFAULT_MEMORY_BLOCK if block is None else block,
        memory_group=getattr(options, "memory_group", 0),
    )


def _identity(codec: ModelCodec, group: int = 0) -> ModelInfo:
    """What pins the codec's predictions. numerics_version and context_window may live
    on the identity or on the codec itself."""
    ident = codec.identity

    def pick(name: str) -> int:
        value = getattr(ident, name, None)
        return int(value if value is not None else getattr(codec, name, 0))

    return ModelInfo(
        name=model_label(ident.name),  # a label: the model's own name, never a path
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


def group_chunks(batch: int, chunk_size: int) -> int:
    """Chunks per read group: ``batch``, fewer where chunks are large (COMPRESS_GROUP_BYTES)."""
    return min(max(1, batch), max(1, COMPRESS_GROUP_BYTES // chunk_size))


def cut_input(data: bytes, chunk_size: int, batch: int) -> tuple[list[bytes], int]:
    """(chunks, the chunk size the archive records) of an input held in memory, cut as
    compress_stream cuts a stream (``batch``: group_chunks)."""
    groups = list(_read_groups(io.BytesIO(data), chunk_size, batch))
    if not groups:
        return [], chunk_size
    first, size = _even_chunks(groups[0], chunk_size, batch)
    return first + [c for g in groups[1:] for c in g], size


# At most this many chunks are evened out (_even_chunks): with more, lock step keeps most
# slots busy anyway (alice29.txt's ten chunks decoded 1.6% faster evened, 87.5 against
# 88.9 s, in an archive 41 bytes larger; scripts/decode_speed.py, docs/decode_speed.md).
EVEN_CHUNKS_MAX = 8


def _even_chunks(group: list[bytes], chunk_size: int, batch: int) -> tuple[list[bytes], int]:
    """(chunks, chunk size) of a first group: when it holds the whole input in 2 to
    EVEN_CHUNKS_MAX chunks, as many chunks of equal length (the last shorter by less than
    their number), else ``group`` and ``chunk_size`` as they are.

    Lock step decodes a group's chunks side by side and runs as long as its longest one:
    17 KiB in chunks of 16 and 1 KiB decode one chunk at a time after the first KiB, in
    two of 8.5 KiB side by side all the way. The number of chunks, and so the chunk starts
    the model pays for, stays the same; the header records the new chunk size."""
    whole = len(group) < batch or len(group[-1]) < chunk_size
    if not 2 <= len(group) <= EVEN_CHUNKS_MAX or not whole:
        return group, chunk_size
    data = b"".join(group)
    size = -(-len(data) // len(group))
    return [data[i : i + size] for i in range(0, len(data), size)], size


# A bound on what an lm record costs beyond its payload: its framing (10 bytes with 16
# KiB chunks in format v5; 20 with the index entry of v2-v4) and the extra stored/zstd
# record when it splits a run (about 10). A chunk goes to the lm only when it saves more.
# (Kept at the v2-v4 figure: the records chosen, and so the archives, stay as they were.)
LM_RECORD_COST = 32


def _lm_choices(group: list[bytes], lm_results: list[tuple[bytes, int] | None], model_cost: int) -> list[bool]:
    """Which chunks of a group become lm records. `model_cost`: the bytes of the model
    identity record if the archive has none yet; the group's lm records must save more
    than that together, or none is made (the model may still pay off in a later group)."""
    savings = [lm_saving(data, lm) - LM_RECORD_COST for data, lm in zip(group, lm_results, strict=True)]
    if sum(s for s in savings if s > 0) <= model_cost:
        return [False] * len(group)
    return [s > 0 for s in savings]


@dataclass(frozen=True)
class _Candidate:
    """One chunk coded with the model: an lm record (pure text) or a spans record."""

    codec: Codec
    payload: bytes
    tokens: int
    text_index: int = -1  # which of the texts given to the codec's encode_texts (-1: none)


def _candidates(codec: ModelCodec | None, group: list[bytes]) -> list[_Candidate | None]:
    """The model-coded record each chunk could become: lm when the chunk is one TEXT span
    without escapes (the very payload of format v2), else spans (lmzip/spans.py)."""
    if codec is None:
        return [None] * len(group)
    if getattr(codec, "encode_texts", None) is None:  # an LM codec without spans support: lm records only
        lm = codec.encode_chunks(group)
        if len(lm) != len(group):
            raise LmzipError("lm codec returned the wrong number of chunks")
        return [None if r is None else _Candidate(Codec.LM, r[0], r[1]) for r in lm]
    plans = [spans.segment(data) for data in group]
    parts = [spans.split(data, plan) for data, plan in zip(group, plans, strict=True)]
    todo = [i for i, (text, _) in enumerate(parts) if text]
    coded = codec.encode_texts([parts[i][0] for i in todo]) if todo else []
    if len(coded) != len(todo):
        raise LmzipError("lm codec returned the wrong number of texts")
    by_chunk = dict(zip(todo, coded, strict=True))
    text_index = {chunk: k for k, chunk in enumerate(todo)}  # chunk -> its place in encode_texts' call
    out: list[_Candidate | None] = []
    for i, (data, plan) in enumerate(zip(group, plans, strict=True)):
        payload, tokens, escapes = by_chunk.get(i, (b"", 0, 0))
        if len(plan) == 1 and plan[0].kind == spans.TEXT and not escapes and tokens:
            out.append(_Candidate(Codec.LM, payload, tokens, text_index[i]))
            continue
        binary = parts[i][1]
        side = encode_plain(binary).payload if binary else b""
        body = spans.pack_payload(plan, escapes, payload, side)
        out.append(_Candidate(Codec.SPANS, body, tokens) if len(body) <= len(data) + MAX_OVERHEAD else None)
    return out


Runs = dict[tuple[int, int], Encoded]  # a group's runs group[start:stop] -> their record's payload


def _choose(
    group: list[bytes], cands: list[_Candidate | None], model_cost: int, header: Header, runs: Runs | None = None
) -> list[_Candidate | None]:
    """Per chunk: the model-coded record to write, or None (a stored/zstd/lzma run). Plans:
    (a) lm records picked as format v2 picks them (`_lm_choices`), (b) the same rule over
    lm and spans candidates, (c) none. When (a) and (b) differ, the smallest in exact
    bytes wins, (a) on ties: a group never costs more than without spans records. The
    runs coded to cost the plans are left in `runs`, for the writer to reuse."""
    alone = [0] * len(group)  # each chunk's own stored/zstd size, computed once
    for i, (data, c) in enumerate(zip(group, cands, strict=True)):
        if c is not None and len(c.payload) < len(data):
            alone[i] = min(len(data), len(zstd_compress(data)))

    def pick(pool: list[_Candidate | None]) -> list[_Candidate | None]:
        savings = [alone[i] - len(c.payload) - LM_RECORD_COST if c and alone[i] else -1 for i, c in enumerate(pool)]
        if sum(x for x in savings if x > 0) <= model_cost:
            return [None] * len(group)
        return [c if x > 0 else None for c, x in zip(pool, savings, strict=True)]

    plans = [pick([c if c is not None and c.codec == Codec.LM else None for c in cands]), pick(cands)]
    if plans[1] == plans[0]:
        return plans[0]
    plans.append([None] * len(group))
    runs = {} if runs is None else runs
    costs = [_plan_cost(group, plan, model_cost, header, runs) for plan in plans]
    return plans[costs.index(min(costs))]


def _run_record(group: list[bytes], start: int, stop: int, try_lzma: bool, runs: Runs) -> Encoded:
    """The record of the run group[start:stop]: coded once, whoever asks first."""
    if (start, stop) not in runs:
        runs[start, stop] = encode_plain(b"".join(group[start:stop]), try_lzma)
    return runs[start, stop]


def _plan_cost(group: list[bytes], plan: list[_Candidate | None], model_cost: int, header: Header, runs: Runs) -> int:
    """Exact bytes the group's records (and the model identity record, if it needs one) take."""
    total = model_cost if any(plan) else 0
    for start, stop, cand in _segments(plan, max_record_chunks(header.chunk_size)):
        original = sum(len(c) for c in group[start:stop])
        if cand is None:  # a run, coded as the writer with a model codes it
            run = _run_record(group, start, stop, True, runs)
            total += record_cost(run.codec, header, original, len(run.payload))
        else:
            total += record_cost(cand.codec, header, original, len(cand.payload), cand.tokens)
    return total


def _segments(chosen: list[_Candidate | None], run_limit: int) -> Iterator[tuple[int, int, _Candidate | None]]:
    """The records of a group, as (start, stop, candidate) over its chunks: one chunk and
    its candidate for an lm or spans record, a run of up to run_limit consecutive other
    chunks and None."""
    start = 0
    for i, cand in enumerate(chosen):
        if cand is not None or i - start >= run_limit:
            if start < i:
                yield start, i, None
            start = i
        if cand is not None:
            yield i, i + 1, cand
            start = i + 1
    if start < len(chosen):
        yield start, len(chosen), None


def compress_stream(
    src: BinaryIO, dst: BinaryIO, options: CompressOptions, progress: ProgressFn | None = None
) -> Stats:
    """Compress src into dst. `progress(n)` is called with the number of input bytes
    just consumed (an increment, like rich's `advance`)."""
    check_chunk_size(options.chunk_size, LmzipError)
    batch = group_chunks(options.batch, options.chunk_size)
    groups = _read_groups(src, options.chunk_size, batch)
    first = next(groups, None)
    chunk_size = options.chunk_size
    if first is not None:
        first, chunk_size = _even_chunks(first, chunk_size, batch)
    # An empty input never loads the codec. The model identity is a record written
    # before the first lm record, so the header does not wait for the model.
    codec = load_codec(options) if options.use_lm and first else None
    # A name that is not a plain basename (e.g. has a backslash) is left out rather
    # than failing: restoring it could never be safe anyway.
    name = options.name if options.name and storable_name(options.name) else None
    writer = ArchiveWriter(dst, Header(chunk_size=chunk_size, name=name, mtime=options.mtime))
    run_limit = max_record_chunks(chunk_size)
    stats = Stats()
    crc = 0
    for group in itertools.chain([first] if first else [], groups):
        cands = _candidates(codec, group)
        for data in group:
            crc = zlib.crc32(data, crc)
        chosen: list[_Candidate | None] = [None] * len(group)
        runs: Runs = {}  # the runs _choose coded, reused below (lzma -9e is slow)
        if codec is not None:
            model_cost = 0
            if not writer.has_model:  # the model record (and before v5 its index entry)
                model_cost = model_record_size(_identity(codec, batch))
            chosen = _choose(group, cands, model_cost, writer.header, runs)
            finish = getattr(codec, "finish_group", None)
            if finish is not None:  # file-wide memory: code the chosen lm chunks with it
                chosen = _with_memory(finish, chosen)
        for start, stop, cand in _segments(chosen, run_limit):
            if cand is not None:
                if not writer.has_model:
                    assert codec is not None
                    writer.add_model(_identity(codec, batch))
                writer.add(cand.codec, group[start], cand.payload, cand.tokens)
                stats.chunks[cand.codec.name.lower()] += 1
            else:  # --no-lm / -1 keep zstd's speed: no lzma without a model
                best = _run_record(group, start, stop, codec is not None, runs)
                writer.add(best.codec, b"".join(group[start:stop]), best.payload)
                stats.chunks[best.codec.name.lower()] += stop - start
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
    """Decodes groups of records of one archive; loads the LM codec at the first lm
    record. `codecs`: the codecs loaded for earlier archives of the same stream, by
    (model hash, tokenizer hash, numerics version, window), reused when this archive
    needs the same."""

    def __init__(
        self, reader: ArchiveReader, options: DecompressOptions, codecs: dict[tuple, ModelCodec] | None = None
    ) -> None:
        self.reader = reader
        self.options = options
        self.codec: ModelCodec | None = None
        self.codecs = {} if codecs is None else codecs

    def lm_codec(self) -> ModelCodec:
        if self.codec is None:
            m = self.reader.model
            assert m is not None  # the reader rejects an lm record before the model record
            # The archive's name is a label: the model is the user's --model, or the one
            # with the archive's hashes (lmzip.engine.loader.find_model).
            opts = dataclasses.replace(
                self.options,
                window=m.context_window,
                archive_model=m,
                memory_block=m.memory_block,
                memory_group=m.memory_group,
            )
            key = (m.model_hash, m.tokenizer_hash, m.numerics_version, m.context_window, m.memory_block, m.memory_group)
            cached = self.codecs.get(key)
            fresh = getattr(cached, "fresh", None)  # an earlier archive's codec: its engine, an empty memory
            codec = load_codec(opts) if cached is None else fresh() if fresh is not None else cached
            self.codecs[key] = codec
            mine = _identity(codec)
            # the memory group is the archive's layout (decompress_stream groups by it), not the codec's
            keys = ("model_hash", "tokenizer_hash", "numerics_version", "context_window", "memory_block")
            if any(getattr(m, k) != getattr(mine, k) for k in keys):
                raise ModelMismatchError(
                    f"archive needs model '{printable_label(m.name)}' ({_describe(m)}); "
                    f"loaded '{printable_label(mine.name)}' ({_describe(mine)})"
                )
            self.codec = codec
        return self.codec

    def decode(self, group: list[tuple[Record, bytes]]) -> list[bytes]:
        parsed: dict[int, spans.SpansPayload] = {}
        for rec, payload in group:
            if rec.codec == Codec.SPANS:
                try:
                    parsed[rec.index] = spans.parse_payload(payload, rec.original_length, rec.token_count)
                except CorruptChunkError as e:
                    raise CorruptChunkError(f"{rec.label}: {e}") from None
        # (record, payload, tokens, escapes) of every text the model decodes, in archive order
        texts = []
        for rec, payload in group:
            if rec.codec == Codec.LM:
                texts.append((rec, payload, rec.token_count, 0))
            elif rec.codec == Codec.SPANS:
                sp = parsed[rec.index]
                if rec.token_count or sp.escapes:
                    texts.append((rec, sp.coded, rec.token_count, sp.escapes))
        lm_recs = [t[0] for t in texts]
        lm_out: Iterator[bytes] = iter(())
        if lm_recs:
            codec = self.lm_codec()
            try:
                if getattr(codec, "memory_block", 0):
                    decoded = _decode_with_memory(codec, texts)
                elif any(t[0].codec == Codec.SPANS for t in texts):
                    decode_texts = getattr(codec, "decode_texts", None)
                    if decode_texts is None:
                        raise LmzipError("this LM codec cannot decode spans records")
                    decoded = decode_texts([t[1:] for t in texts])
                else:
                    decoded = codec.decode_chunks([(t[1], t[2]) for t in texts])
            except LmzipError:
                raise
            except Exception as e:  # garbage that passed the checks: report, don't crash
                first, last = lm_recs[0].first_chunk, lm_recs[-1].first_chunk
                raise CorruptChunkError(f"chunks {first}-{last}: lm decoding failed ({type(e).__name__}: {e})") from e
            if len(decoded) != len(texts):
                raise CorruptChunkError("lm codec returned the wrong number of chunks")
            lm_out = iter(decoded)
        out = []
        for rec, payload in group:
            try:
                if rec.codec == Codec.LM:
                    data = next(lm_out)
                elif rec.codec == Codec.SPANS:
                    sp = parsed[rec.index]
                    text = next(lm_out) if rec.token_count or sp.escapes else b""
                    data = _join_spans(sp, text)
                else:
                    data = decode_plain(rec.codec, payload, rec.original_length)
            except CorruptChunkError as e:
                raise CorruptChunkError(f"{rec.label}: {e}") from None
            if len(data) != rec.original_length or zlib.crc32(data) != rec.crc:
                raise CorruptChunkError(f"{rec.label}: CRC mismatch")
            out.append(data)
        return out


def _decode_with_memory(codec: ModelCodec, texts: list[tuple[Record, bytes, int, int]]) -> list[bytes]:
    """File-wide memory: the group's lm records share it, decoded together in chunk order
    (codec.decode_chunks); spans records' texts are coded without it (decode_texts)."""
    decoded = [b""] * len(texts)
    lm = [i for i, t in enumerate(texts) if t[0].codec == Codec.LM]
    sp = [i for i, t in enumerate(texts) if t[0].codec != Codec.LM]
    if lm:
        out = codec.decode_chunks([(texts[i][1], texts[i][2]) for i in lm])
        for i, data in zip(lm, out, strict=True):
            decoded[i] = data
    if sp:
        out = codec.decode_texts([texts[i][1:] for i in sp])  # type: ignore[attr-defined]
        for i, data in zip(sp, out, strict=True):
            decoded[i] = data
    return decoded


def _with_memory(
    finish: Callable[[list[int]], list[tuple[bytes, int]]],
    chosen: list[_Candidate | None],
) -> list[_Candidate | None]:
    """The chosen lm records coded again with the codec's file-wide memory, in chunk order
    (the order the decoder replays); the memory then holds them. Spans records keep their
    payloads (the memory covers lm records only). Which chunks become lm records was
    decided on the model's own payloads: the memory only makes them smaller, as a rule."""
    lm = [i for i, c in enumerate(chosen) if c is not None and c.codec == Codec.LM]
    coded = finish([chosen[i].text_index for i in lm])  # type: ignore[union-attr]
    out = list(chosen)
    for i, (payload, tokens) in zip(lm, coded, strict=True):
        out[i] = _Candidate(Codec.LM, payload, tokens, chosen[i].text_index)  # type: ignore[union-attr]
    return out


def _join_spans(sp: spans.SpansPayload, text: bytes) -> bytes:
    """A spans record's chunk from its parsed payload and its decoded text."""
    if len(text) != sp.text_length:
        raise CorruptChunkError("spans text has the wrong length")
    binary = b""
    if sp.binary_length:
        binary = sp.side if sp.side_stored else decode_plain(Codec.ZSTD, sp.side, sp.binary_length)
    return spans.join(sp.spans, text, binary)


def decompress_stream(
    src: BinaryIO,
    dst: BinaryIO | None,
    options: DecompressOptions,
    progress: ProgressFn | None = None,
    verify_only: bool = False,
) -> Stats:
    """Decompress src into dst (nothing is written when verify_only). Every chunk CRC,
    the index, the trailer and the whole-stream CRC are checked. Concatenated archives
    (`cat a.lmz b.lmz`) decode one after the other, like gzip members; anything else
    after an archive is an error. `progress(n)` gets the number of archive bytes just
    consumed."""
    stats = Stats()
    decoder: _Decoder | None = None
    done = 0  # archive bytes of the members before this one
    for reader in members(src):
        decoder = _Decoder(reader, options, decoder.codecs if decoder else None)
        reported = _decompress_member(reader, decoder, dst, options, stats, progress, verify_only, done)
        done += reader.position
        if progress and done > reported:
            progress(done - reported)
    stats.compressed_bytes = done
    return stats


def _decompress_member(
    reader: ArchiveReader,
    decoder: _Decoder,
    dst: BinaryIO | None,
    options: DecompressOptions,
    stats: Stats,
    progress: ProgressFn | None,
    verify_only: bool,
    done: int,
) -> int:
    """Decodes one archive; returns the progress reported so far (in stream bytes)."""
    batch = max(1, options.batch)
    # The codec decodes `batch` lm records at a time in lock step. A group hands it
    # DECODE_LOOKAHEAD times as many, so that a slot freed by a short chunk takes the next
    # one instead of idling until the group's longest chunk ends (groups of exactly
    # `batch` used 58% of the slot-steps on a 20 MB text; x4 simulates to 84%). Memory
    # stays bounded by DECODE_GROUP_BYTES of original data per group; a large stored or
    # zstd record goes straight to the output (decode_plain_into).
    group_lm = DECODE_LOOKAHEAD * batch
    crc = 0
    reported = done

    def emit(data: bytes) -> None:
        if not verify_only and dst is not None:
            dst.write(data)

    def emit_piece(data: bytes) -> None:  # a piece of a streamed record
        nonlocal crc
        crc = zlib.crc32(data, crc)
        emit(data)

    def report() -> None:
        nonlocal reported
        if progress:
            progress(done + reader.position - reported)
            reported = done + reader.position

    def flush(group: list[tuple[Record, bytes]]) -> None:
        nonlocal crc
        for data in decoder.decode(group):
            crc = zlib.crc32(data, crc)
            stats.original_bytes += len(data)
            emit(data)
        for rec, _ in group:
            stats.chunks[rec.codec.name.lower()] += rec.chunk_count
        group.clear()
        report()

    group: list[tuple[Record, bytes]] = []
    lm_count = pending = 0
    # File-wide memory (numerics v5): a memory group's lm records decode together (their
    # chunks share the memory block by block), one group after another. Such a group is at
    # most MAX_MEMORY_GROUP_BYTES of original data (the reader checks the model record), so
    # it is decoded whole, large stored/zstd records included, instead of by the budget.
    memory_group = 0
    for rec, body in reader.entries():
        if not memory_group and reader.model is not None and reader.model.memory_block:
            memory_group = reader.model.memory_group  # set by the model record, before any lm record
            if memory_group * reader.header.chunk_size > MAX_MEMORY_GROUP_BYTES:
                raise FormatError(
                    f"memory group of {memory_group} chunks of {reader.header.chunk_size} bytes "
                    f"exceeds {MAX_MEMORY_GROUP_BYTES} bytes"
                )
        if memory_group:
            if group and rec.first_chunk // memory_group != group[0][0].first_chunk // memory_group:
                flush(group)
            group.append((rec, body.read()))
            continue
        if rec.codec not in (Codec.LM, Codec.SPANS) and rec.original_length > STREAM_RECORD_BYTES:
            flush(group)  # output stays in order
            lm_count = pending = 0
            stats.original_bytes += _stream_record(rec, body, emit_piece)
            stats.chunks[rec.codec.name.lower()] += rec.chunk_count
            report()
            continue
        if group and pending + rec.original_length > DECODE_GROUP_BYTES:
            flush(group)
            lm_count = pending = 0
        group.append((rec, body.read()))
        lm_count += rec.codec in (Codec.LM, Codec.SPANS)
        pending += rec.original_length
        if lm_count >= group_lm:
            flush(group)
            lm_count = pending = 0
    flush(group)
    assert reader.crc is not None  # set once entries() is exhausted
    if crc != reader.crc:
        raise CorruptChunkError("whole-stream CRC mismatch")
    return reported


def _stream_record(rec: Record, body: Payload, emit: Callable[[bytes], None]) -> int:
    """Decodes a stored or zstd record to `emit` in pieces; returns its length. Its data
    is checked (length, CRC) once all of it went out, as gzip checks a member."""
    try:
        n, crc = decode_plain_into(rec.codec, body, rec.original_length, emit)
    except CorruptChunkError as e:
        raise CorruptChunkError(f"{rec.label}: {e}") from None
    if n != rec.original_length or crc != rec.crc:
        raise CorruptChunkError(f"{rec.label}: CRC mismatch")
    return n


def read_archive_info(src: BinaryIO) -> ArchiveInfo:
    """Header, per-chunk index and trailer, without decoding (never imports torch). Of
    concatenated archives, the first one's (as gzip -N takes the first member's name)."""
    start = src.tell() if src.seekable() else None
    try:
        return read_info(src)
    except LmzipError:
        if start is None:
            raise
        src.seek(start)  # the trailer-first reading fails on concatenated archives
        try:
            infos = read_infos(src)
        except LmzipError:
            infos = []
        if len(infos) < 2:
            raise
        return infos[0]


def read_archive_infos(src: BinaryIO) -> list[ArchiveInfo]:
    """The info of every archive in src (one, unless archives were concatenated)."""
    return read_infos(src)
