import functools
import io
import random
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from fake_lm import FakeIdentity, FakeLM, factory, text
from fake_pipe import Pipe
from strict import missing

import lmzip
from lmzip import container
from lmzip.codecs import zstd_compress
from lmzip.container import (
    END_SIZE,
    MAX_CHUNK_SIZE,
    TRAILER_SIZE,
    ArchiveReader,
    ArchiveWriter,
    Codec,
    Header,
    ModelInfo,
    uvarint,
)
from lmzip.errors import (
    CorruptChunkError,
    FormatError,
    LmzipError,
    ModelMismatchError,
)
from lmzip.pipeline import (
    DECODE_LOOKAHEAD,
    EVEN_CHUNKS_MAX,
    LM_RECORD_COST,
    CompressOptions,
    DecompressOptions,
    _lm_choices,
    compress_stream,
    decompress_stream,
    read_archive_info,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


compress = lmzip.compress
decompress = lmzip.decompress


SAMPLES = {
    "empty": b"",
    "one": b"x",
    "random": random.Random(1).randbytes(5000),
    "text": text(6000),
    "zeros": bytes(3000),
}


def chunk_lengths(size: int, chunk_size: int, batch: int) -> list[int]:
    """The chunks an input of ``size`` bytes is cut into: whole chunks, the last one short,
    except where the first group holds the whole input in two chunks or more: as many
    chunks of equal length (pipeline._even_chunks)."""
    n = -(-size // chunk_size)
    if 2 <= n <= EVEN_CHUNKS_MAX and (n < batch or (n == batch and size % chunk_size)):
        chunk_size = -(-size // n)
    return [min(chunk_size, size - i) for i in range(0, size, chunk_size)]


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("use_lm", [False, True])
def test_round_trip(name: str, use_lm: bool) -> None:
    data = SAMPLES[name]
    lm = FakeLM()
    kw = {"chunk_size": 1024, "batch": 3, "use_lm": use_lm, "codec_factory": factory(lm)}
    archive = compress(data, **kw)
    assert decompress(archive, codec_factory=factory(lm)) == data
    info = read_archive_info(io.BytesIO(archive))
    assert info.original_size == len(data)
    assert info.compressed_size == len(archive)
    lengths = chunk_lengths(len(data), 1024, 3)
    assert len(info.chunks) == -(-len(data) // 1024)
    assert sum(r.chunk_count for r in info.records) == len(info.chunks)
    assert [c.original_length for c in info.chunks] == lengths
    assert [c.original_offset for c in info.chunks] == [sum(lengths[:i]) for i in range(len(lengths))]
    if not data:
        assert lm.encode_calls == []  # an empty input never loads the model


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 127, 128, 129, 64 * 5 - 1, 64 * 5, 64 * 5 + 1])
def test_chunk_boundaries(size: int) -> None:
    data = text(size, seed=size)
    lm = FakeLM()
    archive = compress(data, chunk_size=64, batch=2, codec_factory=factory(lm))
    info = read_archive_info(io.BytesIO(archive))
    assert [c.original_length for c in info.chunks] == chunk_lengths(size, 64, 2)
    assert all(n <= 2 for n in lm.encode_calls)  # batches bound memory
    assert decompress(archive, codec_factory=factory(lm)) == data


@pytest.mark.parametrize(
    ("size", "batch", "want"),
    [
        (17 * 1024, 32, [8704, 8704]),  # 16 KiB + 1 KiB: two chunks side by side all the way
        (16 * 1024, 32, [16384]),  # one chunk: as it is
        (100, 32, [100]),
        (2 * 16384 + 3, 32, [10924, 10924, 10923]),  # the last shorter by less than the count
        (2 * 16384, 2, [16384, 16384]),  # a full first group: nothing to even out
        (2 * 16384 + 5, 2, [16384, 16384, 5]),  # more than one group: the chunk size stays
        (9 * 16384 + 5, 32, [16384] * 9 + [5]),  # more than EVEN_CHUNKS_MAX chunks: as it is
    ],
)
def test_an_input_of_one_group_is_cut_evenly(size: int, batch: int, want: list[int]) -> None:
    """A file of one group is cut into as many chunks as before, of equal length, so
    that lock step decodes them side by side to the end; the header says the length."""
    data = text(size, seed=3)
    for use_lm in (False, True):
        lm = FakeLM()
        archive = compress(data, chunk_size=16384, batch=batch, use_lm=use_lm, codec_factory=factory(lm))
        info = read_archive_info(io.BytesIO(archive))
        assert [c.original_length for c in info.chunks] == want == chunk_lengths(size, 16384, batch)
        assert info.header.chunk_size == (want[0] if len(want) > 1 else 16384)  # one chunk: as asked
        assert decompress(archive, codec_factory=factory(lm)) == data


def test_codec_choice_and_stats() -> None:
    rnd = random.Random(2).randbytes(4096)
    data = text(4096) + rnd + b"\xff\xfe" + bytes(4094) + text(4096) + rnd
    lm = FakeLM()
    out = io.BytesIO()
    stats = compress_stream(io.BytesIO(data), out, CompressOptions(chunk_size=4096, codec_factory=factory(lm)))
    info = read_archive_info(io.BytesIO(out.getvalue()))
    # lm chunks are records of their own; the random and the zeros chunk between them
    # make one zstd run; the last random chunk alone is stored.
    assert [c.codec for c in info.chunks] == [Codec.LM, Codec.ZSTD, Codec.ZSTD, Codec.LM, Codec.STORED]
    assert [r.kind for r in info.records] == ["model", "lm", "zstd", "lm", "stored"]
    assert [r.chunk_count for r in info.records] == [0, 1, 2, 1, 1]
    assert [c.record for c in info.chunks] == [1, 2, 2, 3, 4]
    assert stats.chunks == {"stored": 1, "zstd": 2, "lm": 2, "spans": 0, "lzma": 0} == info.codec_counts
    assert stats.original_bytes == len(data) and stats.compressed_bytes == len(out.getvalue())
    # payloads: a chunk's record payload is counted once, on the record's first chunk
    assert sum(c.payload_length for c in info.chunks) == sum(r.payload_length for r in info.records[1:])
    assert info.chunks[4].payload_length == 4096 and info.chunks[2].payload_length == 0
    assert sum(r.size for r in info.records) + info.records[0].offset < len(out.getvalue())
    assert info.model is not None and info.model.name == "fake-zlib"
    assert info.model.context_window == 512 and info.model.numerics_version == 3
    dec_lm = FakeLM()
    stats2 = decompress_stream(
        io.BytesIO(out.getvalue()), io.BytesIO(), DecompressOptions(codec_factory=factory(dec_lm))
    )
    assert stats2.chunks == stats.chunks and dec_lm.decode_calls == [2]


def test_runs_stay_within_a_group() -> None:
    data = random.Random(8).randbytes(10 * 1024 - 3)
    archive = compress(data, chunk_size=1024, batch=4, use_lm=False)
    info = read_archive_info(io.BytesIO(archive))
    assert [(r.kind, r.first_chunk, r.chunk_count) for r in info.records] == [
        ("stored", 0, 4),
        ("stored", 4, 4),
        ("stored", 8, 2),
    ]
    assert [r.original_offset for r in info.records] == [0, 4096, 8192]
    assert decompress(archive, batch=3) == data


def test_run_records_split_at_the_record_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    data = text(10_000)
    big = compress(data, chunk_size=1000, use_lm=False)
    monkeypatch.setattr(container, "MAX_RECORD_SIZE", 3500)  # 3 chunks of 1000 bytes
    archive = compress(data, chunk_size=1000, use_lm=False)
    info = read_archive_info(io.BytesIO(archive))
    assert [r.chunk_count for r in info.records] == [3, 3, 3, 1]
    assert decompress(archive) == data
    with pytest.raises(FormatError, match="record 0: original length 10000 outside"):
        decompress(big)
    with pytest.raises(FormatError, match="record 0: original length"):
        read_archive_info(io.BytesIO(big))


class MarginalLM(FakeLM):
    """An lm that beats zstd and stored by `saving` bytes on every chunk (never decoded)."""

    encode_texts = None  # lm records only (no spans support)

    def __init__(self, saving: int) -> None:
        super().__init__()
        self.saving = saving

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
        self.encode_calls.append(len(chunks))
        best = [min(len(c), len(zstd_compress(c))) for c in chunks]
        return [(b"x" * (n - self.saving), 1) for n in best]


def test_lm_must_pay_for_its_records() -> None:
    rnd = random.Random(14).randbytes(1000)
    group = [rnd] * 3
    cost = LM_RECORD_COST

    def choices(savings: list[int], model_cost: int) -> list[bool]:
        return _lm_choices(group, [(b"x" * (1000 - s), 1) for s in savings], model_cost)

    assert choices([cost, cost, cost], 0) == [False] * 3  # saves no more than its framing
    assert choices([cost + 1, 0, cost + 50], 0) == [True, False, True]
    assert choices([cost + 50, 0, cost + 50], 100) == [False] * 3  # does not pay for the model record
    assert choices([cost + 50, 0, cost + 51], 100) == [True, False, True]
    assert _lm_choices(group, [None, (rnd, 1), (b"x" * 999, 1)], 0) == [False] * 3
    # End to end: an lm that barely wins leaves the archive as if there were none.
    data = random.Random(15).randbytes(40_000)
    lm = MarginalLM(saving=20)
    assert compress(data, chunk_size=4096, batch=4, codec_factory=factory(lm)) == compress(
        data, chunk_size=4096, batch=4, use_lm=False
    )
    assert lm.encode_calls == [4, 4, 2]


def test_no_model_record_unless_the_lm_wins() -> None:
    data = random.Random(9).randbytes(5000)  # the fake lm never beats stored on this
    lm = FakeLM()
    with_lm = compress(data, chunk_size=1024, codec_factory=factory(lm))
    assert lm.encode_calls == []  # all BINARY spans: no text reaches the lm
    assert with_lm == compress(data, chunk_size=1024, use_lm=False)
    assert read_archive_info(io.BytesIO(with_lm)).model is None


def test_model_record_in_a_later_group() -> None:
    data = random.Random(10).randbytes(2048) + text(1024) + random.Random(11).randbytes(1024) + text(1024)
    lm = FakeLM()
    archive = compress(data, chunk_size=1024, batch=2, codec_factory=factory(lm))
    info = read_archive_info(io.BytesIO(archive))
    assert [r.kind for r in info.records] == ["stored", "model", "lm", "stored", "lm"]
    assert info.model is not None and info.model.name == "fake-zlib"
    dec = FakeLM()
    assert decompress(archive, batch=1, codec_factory=factory(dec)) == data
    # One group: up to DECODE_LOOKAHEAD x batch lm records, the stored ones between them too.
    assert dec.decode_calls == [2]


def test_decompression_hands_the_codec_several_batches() -> None:
    data = text(10 * 1024)
    archive = compress(data, chunk_size=1024, batch=2, codec_factory=factory(FakeLM()))
    assert [r.kind for r in read_archive_info(io.BytesIO(archive)).records].count("lm") == 10
    dec = FakeLM()
    assert decompress(archive, batch=2, codec_factory=factory(dec)) == data
    assert dec.decode_calls == [2 * DECODE_LOOKAHEAD, 10 - 2 * DECODE_LOOKAHEAD]


def test_no_lm_chunks_never_loads_model() -> None:
    archive = compress(random.Random(3).randbytes(3000), chunk_size=1000, use_lm=False)

    def refuse(options):
        raise AssertionError("model must not be loaded")

    assert decompress(archive, codec_factory=refuse) == random.Random(3).randbytes(3000)


def test_model_mismatch() -> None:
    data = text(3000)
    archive = compress(data, chunk_size=1000, codec_factory=factory(FakeLM()))
    for other in (
        FakeIdentity(name="other", model_hash=b"X" * 32),
        FakeIdentity(tokenizer_hash=b"Y" * 32),
        FakeIdentity(numerics_version=4),
        FakeIdentity(context_window=1024),
    ):
        with pytest.raises(ModelMismatchError, match="fake-zlib"):
            decompress(archive, codec_factory=factory(FakeLM(other)))


def test_decompress_asks_for_the_archived_hashes_never_the_name() -> None:
    archive = compress(text(3000), chunk_size=1000, codec_factory=factory(FakeLM()))
    asked = []

    def record(options):
        asked.append((options.model, options.archive_model))
        return FakeLM()

    decompress(archive, codec_factory=record)
    [(model, want)] = asked
    assert model is None  # the stored name is not a --model argument
    assert want == read_archive_info(io.BytesIO(archive)).model
    assert (want.model_hash, want.tokenizer_hash) == (b"M" * 32, b"T" * 32)
    decompress(archive, codec_factory=record, model="mine")  # the user's --model goes through as given
    assert asked[-1][0] == "mine"


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("/home/someone/models/My-Model", "My-Model"),
        ("C:\\models\\My-Model\\", "My-Model"),
        ("HuggingFaceTB/SmolLM2-135M", "SmolLM2-135M"),
        ("../..", "model"),
        ("a\x1b[2Jb\nc\x00", "a[2Jbc"),
        ("\u00e9" * 200, "\u00e9" * 127),  # cut to 255 bytes on a character boundary
    ],
)
def test_writers_store_a_label_never_a_path(name: str, label: str) -> None:
    data = text(20000)
    archive = compress(data, chunk_size=5000, codec_factory=factory(FakeLM(FakeIdentity(name=name))))
    info = read_archive_info(io.BytesIO(archive))
    assert info.model is not None and info.model.name == label
    assert decompress(archive, codec_factory=factory(FakeLM())) == data  # found by hash, not by name


def test_name_and_mtime_in_header() -> None:
    archive = compress(b"hello", use_lm=False, name="héllo.txt", mtime=-5)
    info = read_archive_info(io.BytesIO(archive))
    assert (info.name, info.mtime) == ("héllo.txt", -5)
    for bad in ("../evil", "a\\b", "", "..", "x" * 5000):
        archive = compress(b"hello", use_lm=False, name=bad)
        assert read_archive_info(io.BytesIO(archive)).name is None
    with pytest.raises(ValueError):
        Header(chunk_size=10, name="a/b").pack()


def test_pipe_input_and_info_on_pipe() -> None:
    data = text(5000)
    pipe = functools.partial(Pipe, step=7)
    archive = compress(data, chunk_size=512, use_lm=False)
    out = io.BytesIO()
    compress_stream(pipe(data), out, CompressOptions(chunk_size=512, use_lm=False))
    assert out.getvalue() == archive
    assert decompress_stream(pipe(archive), io.BytesIO(), DecompressOptions()).original_bytes
    info = read_archive_info(pipe(archive))
    assert info == read_archive_info(io.BytesIO(archive))


def test_progress_and_verify_only() -> None:
    data = text(10_000)
    archive = compress(data, chunk_size=1000, batch=4, use_lm=False)
    seen: list[int] = []
    compress_stream(io.BytesIO(data), io.BytesIO(), CompressOptions(chunk_size=1000, use_lm=False), seen.append)
    assert sum(seen) == len(data)
    seen.clear()
    stats = decompress_stream(io.BytesIO(archive), None, DecompressOptions(batch=4), seen.append, verify_only=True)
    assert sum(seen) == len(archive) and stats.original_bytes == len(data)


def test_importing_pipeline_does_not_import_torch() -> None:
    code = "import lmzip.pipeline, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# ------------------------------------------------------------------ damaged archives


def outcome(archive: bytes, lm: FakeLM | None = None) -> bytes | None:
    """Decompressed bytes, or None for an LmzipError; anything else fails the test."""
    try:
        return decompress(archive, codec_factory=factory(lm or FakeLM()))
    except LmzipError:
        return None


def info_ok(archive: bytes) -> bool:
    try:
        read_archive_info(io.BytesIO(archive))
        return True
    except LmzipError:
        return False


MIXED = text(2500) + random.Random(4).randbytes(700) + bytes(800)


@pytest.fixture(scope="module")
def mixed_archive() -> bytes:
    return compress(MIXED, chunk_size=512, batch=2, name="f.txt", mtime=1, codec_factory=factory(FakeLM()))


def test_truncated_everywhere(mixed_archive: bytes) -> None:
    assert outcome(mixed_archive) == MIXED
    for cut in range(0, len(mixed_archive), 97):
        assert outcome(mixed_archive[:cut]) is None, cut
        assert not info_ok(mixed_archive[:cut]), cut
    assert outcome(mixed_archive[:-1]) is None


def test_truncation_messages(mixed_archive: bytes) -> None:
    with pytest.raises(FormatError, match="not an lmzip file"):
        decompress(b"")
    with pytest.raises(FormatError, match=r"truncated archive: record \d+ cut short"):
        decompress(mixed_archive[:300])


def test_flipped_bits_everywhere(mixed_archive: bytes) -> None:
    # Header and end are under CRCs, record fields are under the end's CRC of them,
    # the model record's body is under its CRC, and every record's data is checked
    # (length and CRC32) after decoding. A flipped payload bit that the decoder ignores
    # (deflate's or the range coder's final padding) yields the exact original: not an
    # error. Every other flip is one.
    info = read_archive_info(io.BytesIO(mixed_archive))
    payload_bytes = {
        pos
        for r in info.records
        if r.kind != "model"
        for pos in range(r.offset + r.size - r.payload_length, r.offset + r.size)
    }
    rng = random.Random(5)
    detected = 0
    for pos in range(0, len(mixed_archive)):
        damaged = bytearray(mixed_archive)
        damaged[pos] ^= 1 << rng.randrange(8)
        got = outcome(bytes(damaged))
        if pos in payload_bytes:
            assert got in (None, MIXED), pos
        else:
            assert got is None, pos
        detected += got is None
        info_ok(bytes(damaged))  # may succeed (payload bits) but must not crash
    assert detected > 0.95 * len(mixed_archive)


def test_garbage_never_crashes() -> None:
    rng = random.Random(6)
    good = compress(text(600), chunk_size=128, codec_factory=factory(FakeLM()))
    for n in range(200):
        blob = rng.randbytes(rng.randrange(0, 400))
        if n % 2:  # a valid start makes the parser go deeper
            blob = good[: rng.randrange(len(good))] + blob
        assert outcome(blob) in (None, text(600))
        info_ok(blob)


def test_wrong_magic_and_version() -> None:
    archive = compress(b"abc", use_lm=False)
    with pytest.raises(FormatError, match="not an lmzip file"):
        decompress(b"PK\x03\x04" + archive[4:])
    with pytest.raises(FormatError, match="not an lmzip file"):
        read_archive_info(io.BytesIO(b"\x1f\x8b" + archive[2:]))
    v7 = archive[:4] + b"\x07" + archive[5:]
    with pytest.raises(FormatError, match=r"unsupported format version 7 \(this lmzip reads "):
        decompress(v7)
    with pytest.raises(FormatError, match="unsupported format version 7"):
        read_archive_info(io.BytesIO(v7))


def rewrite_header(archive: bytes, chunk_size: int) -> bytes:
    """Sets the header's chunk size and re-seals the header CRC (no name, no mtime,
    made with a chunk size below 128: a 1-byte varint)."""
    head = archive[:6] + uvarint(chunk_size)
    return head + struct.pack("<I", zlib.crc32(head)) + archive[11:]


def as_version_4(archive: bytes, original: bytes) -> bytes:
    """The same records written as format v4 (with an index and trailer; no model record)."""
    reader = ArchiveReader(io.BytesIO(archive))
    out = io.BytesIO()
    writer = ArchiveWriter(out, Header(reader.header.chunk_size, version=4))
    pos = 0
    for rec, payload in reader.records():
        writer.add(rec.codec, original[pos : pos + rec.original_length], payload)
        pos += rec.original_length
    writer.close(zlib.crc32(original))
    return out.getvalue()


def reseal_tail(archive: bytes, index: bytes, index_size: int | None = None) -> bytes:
    """Replaces the index (from its mark) and re-seals the trailer around it."""
    index_offset = len(archive) - TRAILER_SIZE - struct.unpack("<I", archive[-12:-8])[0]
    size = len(index) if index_size is None else index_size
    head = archive[-TRAILER_SIZE : -TRAILER_SIZE + 4] + struct.pack("<I", size)
    return archive[:index_offset] + index + head + struct.pack("<I", zlib.crc32(head, zlib.crc32(index))) + b"LMZE"


def test_huge_declared_lengths() -> None:
    archive = compress(b"hello world" * 10, chunk_size=64, use_lm=False)
    assert archive[11:14] == bytes([Codec.ZSTD, 110, len(archive) - 11 - 7 - END_SIZE])
    assert decompress(rewrite_header(archive, 64)) == b"hello world" * 10
    with pytest.raises(FormatError, match="chunk size"):
        decompress(rewrite_header(archive, MAX_CHUNK_SIZE + 1))
    # A record claiming 4 GiB or 2**63 original / payload bytes: rejected before any allocation.
    for field_offset in (12, 13):
        for huge in (0xFFFFFFFF, 1 << 63):
            damaged = archive[:field_offset] + uvarint(huge) + archive[field_offset + 1 :]
            with pytest.raises(FormatError, match="record 0: (original|payload) length"):
                decompress(damaged)
        too_long = archive[:field_offset] + b"\xff" * 10 + b"\x01" + archive[field_offset + 1 :]
        with pytest.raises(FormatError, match="record 0: varint too large"):
            decompress(too_long)
    # Format v4: an index claiming 2**60 records: info must not try to read that many.
    archive = as_version_4(archive, b"hello world" * 10)
    assert decompress(archive) == b"hello world" * 10
    index_offset = len(archive) - TRAILER_SIZE - 5
    assert archive[index_offset : index_offset + 2] == b"L\x01"
    entry = archive[index_offset + 2 : index_offset + 5]  # kind, original length, payload length
    damaged = reseal_tail(archive, b"L" + uvarint(1 << 60) + entry)
    with pytest.raises(FormatError, match="index lists"):
        read_archive_info(io.BytesIO(damaged))
    with pytest.raises(FormatError, match="index lists"):
        decompress(damaged)
    # A trailer claiming a 4 GiB index.
    damaged = reseal_tail(archive, b"L\x01" + entry, index_size=0xFFFFFFFF)
    with pytest.raises(FormatError, match="trailer does not match"):
        read_archive_info(io.BytesIO(damaged))
    with pytest.raises(FormatError, match="trailer does not match"):
        decompress(damaged)


def test_chunk_crc_mismatch_names_the_chunk() -> None:
    class Liar(FakeLM):
        def decode_chunks(self, items):
            return [b"y" * len(d) for d in super().decode_chunks(items)]

    archive = compress(text(3000), chunk_size=1000, codec_factory=factory(FakeLM()))
    with pytest.raises(CorruptChunkError, match="chunk 0: CRC mismatch"):
        decompress(archive, codec_factory=factory(Liar()))

    class Crasher(FakeLM):
        def decode_chunks(self, items):
            raise IndexError("boom")

    with pytest.raises(CorruptChunkError, match="lm decoding failed"):
        decompress(archive, codec_factory=factory(Crasher()))


def test_header_validation_on_write() -> None:
    with pytest.raises(ValueError):
        Header(chunk_size=0).pack()
    with pytest.raises(ValueError):
        ModelInfo("m" * 256, b"M" * 32, b"T" * 32, 1, 1).pack_body()
    with pytest.raises(ValueError):
        ModelInfo("m", b"M" * 31, b"T" * 32, 1, 1).pack_body()


# ------------------------------------------------------------------ corpus


@pytest.mark.skipif(not CORPUS.is_dir(), reason=missing(f"../shared corpus not found at {CORPUS}"))
@pytest.mark.parametrize(
    "name", sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file()) if CORPUS.is_dir() else []
)
def test_corpus_round_trip(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    archive = compress(data, chunk_size=65536, use_lm=False)
    assert decompress(archive) == data
    assert len(archive) <= len(data) + 64


def test_random_data_growth_is_exactly_the_framing() -> None:
    data = random.Random(7).randbytes(10 * 1024 + 5)
    archive = compress(data, chunk_size=1024, use_lm=False)
    empty = compress(b"", chunk_size=1024, use_lm=False)
    assert len(empty) == 12 + END_SIZE == 25  # header, end
    # one stored record for the group: kind, varint length, CRC
    assert len(archive) == len(data) + len(empty) + (1 + 2 + 4)


@pytest.mark.skipif(not (CORPUS / "fireworks.jpeg").is_file(), reason=missing(f"../shared corpus not at {CORPUS}"))
@pytest.mark.parametrize("use_lm", [False, True])
def test_fireworks_within_64_bytes_of_zstd(use_lm: bool) -> None:
    data = (CORPUS / "fireworks.jpeg").read_bytes()
    zstd19 = len(zstandard.ZstdCompressor(level=19).compress(data))
    archive = compress(data, use_lm=use_lm, codec_factory=factory(FakeLM()))
    assert len(archive) <= zstd19 + 64, (len(archive), zstd19)
    assert decompress(archive) == data
    # an lm that wins every chunk by a hair must not cost the model record and framing
    marginal = compress(data, use_lm=use_lm, codec_factory=factory(MarginalLM(saving=10)))
    assert marginal == archive


@pytest.mark.parametrize("use_lm", [False, True])
def test_random_100k_growth(use_lm: bool) -> None:
    data = random.Random(12).randbytes(100_000)
    archive = compress(data, use_lm=use_lm, codec_factory=factory(FakeLM()))
    assert len(archive) <= len(data) * 1.005 + 64
    assert len(archive) - len(data) < 64  # in fact: 13 header + 8 record + 6 index + 16 trailer
    assert decompress(archive) == data


def test_hostile_stored_name_rejected_on_read() -> None:
    archive = compress(b"hi", use_lm=False, name="ab")
    head_len = 6 + 3 + 1 + 2 + 4  # fixed part, chunk size varint, name length, name, CRC
    head = bytearray(archive[: head_len - 4])
    assert head[10:12] == b"ab"
    head[10:12] = b"a/"  # the name field, re-sealed with a valid CRC
    forged = bytes(head) + struct.pack("<I", zlib.crc32(head)) + archive[head_len:]
    with pytest.raises(FormatError, match="file name"):
        read_archive_info(io.BytesIO(forged))


@dataclass(frozen=True)
class BareIdentity:  # like lmzip.engine.loader.ModelIdentity: no numerics / window
    name: str
    model_hash: bytes
    tokenizer_hash: bytes


def test_identity_fields_may_live_on_the_codec() -> None:
    def engine_like(numerics: int, window: int) -> FakeLM:
        lm = FakeLM()
        lm.identity = BareIdentity("é" * 200, b"M" * 32, b"T" * 32)  # type: ignore[assignment]
        lm.numerics_version, lm.context_window = numerics, window  # type: ignore[attr-defined]
        return lm

    archive = compress(text(20000), codec_factory=factory(engine_like(2, 256)))
    model = read_archive_info(io.BytesIO(archive)).model
    assert model is not None
    assert (model.numerics_version, model.context_window) == (2, 256)
    assert model.name == "é" * 127  # cut to 255 bytes on a character boundary
    assert decompress(archive, codec_factory=factory(engine_like(2, 256))) == text(20000)
    with pytest.raises(ModelMismatchError, match="window 256.*window 128"):
        decompress(archive, codec_factory=factory(engine_like(2, 128)))


@pytest.mark.parametrize("size", [0, -1, MAX_CHUNK_SIZE + 1])
def test_bad_chunk_size_option(size: int) -> None:
    with pytest.raises(LmzipError, match="chunk size"):
        compress(b"abc", chunk_size=size, use_lm=False)
