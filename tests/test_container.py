"""The byte layout (format v2 to v5): varints, header, hand-built records that break the layout rules,
zstd bounds, and a property-based fuzz of the parser."""

from __future__ import annotations

import io
import random
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import timedelta

import pytest
import zstandard
from fake_lm import FakeIdentity, FakeLM, factory, structs, text
from fake_pipe import Pipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipeline import compress

import lmzip
from lmzip.codecs import MAX_LZMA_DICT, lzma_compress, lzma_decompress, lzma_dict_size, zstd_decompress
from lmzip.container import (
    COMPACT_FRAMING,
    END_MARK,
    KIND_MODEL,
    KIND_MODEL_REF,
    KNOWN_MODELS,
    TRAILER_SIZE,
    VERSION,
    ArchiveReader,
    ArchiveWriter,
    Codec,
    Header,
    ModelInfo,
    _Reader,
    model_record_size,
    uvarint,
)
from lmzip.errors import CorruptChunkError, FormatError, LmzipError
from lmzip.pipeline import read_archive_info

MODEL = ModelInfo("fake-zlib", b"M" * 32, b"T" * 32, 3, 512)


def decompress(archive: bytes) -> bytes:
    return lmzip.decompress(archive, codec_factory=factory(FakeLM()))


# ------------------------------------------------------------------ varints and header


def read_varint(raw: bytes) -> int:
    return _Reader(io.BytesIO(raw)).varint("test")


@pytest.mark.parametrize("n", [0, 1, 127, 128, 16383, 16384, 2**32 - 1, 2**63, 2**64 - 1])
def test_varint_round_trip(n: int) -> None:
    raw = uvarint(n)
    assert read_varint(raw) == n and len(raw) == max(1, -(-n.bit_length() // 7))


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x80\x00", "overlong"),  # 0 in two bytes
        (b"\xff\x00", "overlong"),
        (b"\xff" * 9 + b"\x02", "too large"),  # 2**64
        (b"\x80" * 10 + b"\x01", "too large"),  # 11 bytes
        (b"\x80\x80", "cut short"),
    ],
)
def test_bad_varints(raw: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        read_varint(raw)
    with pytest.raises(ValueError):
        uvarint(-1)
    with pytest.raises(ValueError):
        uvarint(2**64)


@pytest.mark.parametrize("mtime", [0, -1, 1, 1_700_000_000, -(2**63), 2**63 - 1])
def test_header_round_trip(mtime: int) -> None:
    header = Header(chunk_size=16384, name="a.txt", mtime=mtime)
    raw = header.pack()
    assert raw[:6] == b"LMZ\x00\x05\x03" and raw[6:9] == uvarint(16384)
    assert ArchiveReader(io.BytesIO(raw)).header == header
    assert len(Header(chunk_size=16384).pack()) == 13


def test_version_1_is_refused() -> None:
    v1 = b"LMZ\x00\x01\x00" + struct.pack("<I", 16384) + b"\x00" * 30
    for read in (decompress, lambda a: read_archive_info(io.BytesIO(a))):
        with pytest.raises(FormatError, match=r"unsupported format version 1 \(this lmzip reads versions 2 to 5\)"):
            read(v1)


# ------------------------------------------------------------------ hand-built archives


def record(
    kind: int, original: bytes, payload: bytes | None = None, tokens: int = 0, version: int = VERSION
) -> tuple[bytes, bytes]:
    """(fields, whole record) for a data record of an archive with 100-byte chunks."""
    payload = original if payload is None else payload
    one_chunk = version >= COMPACT_FRAMING and kind in (Codec.LM, Codec.SPANS)
    fields = bytes([kind]) + uvarint(100 - len(original) if one_chunk else len(original))
    if kind != Codec.STORED:
        fields += uvarint(len(payload))
    if kind == Codec.LM:
        fields += uvarint(tokens)
    return fields, fields + struct.pack("<I", zlib.crc32(original)) + payload


def model_record(body: bytes | None = None) -> tuple[bytes, bytes]:
    body = MODEL.pack_body() if body is None else body
    fields = bytes([KIND_MODEL]) + uvarint(len(body))
    return fields, fields + struct.pack("<I", zlib.crc32(body)) + body


def build(records: list[tuple[bytes, bytes]], data: bytes, chunk_size: int = 100, version: int = VERSION) -> bytes:
    """An archive of these (fields, record) pairs: the fields go into the index (v2-v4)
    or the fields CRC of the end (v5), so a test can make them disagree with the records."""
    fields = b"".join(f for f, _ in records)
    if version >= COMPACT_FRAMING:
        tail = bytes([END_MARK]) + struct.pack("<II", zlib.crc32(data), zlib.crc32(fields)) + b"LMZE"
    else:
        index = bytes([END_MARK]) + uvarint(len(records)) + fields
        head = struct.pack("<II", zlib.crc32(data), len(index))
        tail = index + head + struct.pack("<I", zlib.crc32(head, zlib.crc32(index))) + b"LMZE"
    return Header(chunk_size=chunk_size, version=version).pack() + b"".join(r for _, r in records) + tail


def lm_record(data: bytes, version: int = VERSION) -> tuple[bytes, bytes]:
    payload, tokens = FakeLM().encode_chunks([data])[0]  # type: ignore[misc]
    return record(Codec.LM, data, payload, tokens, version)


def both_readers_fail(archive: bytes, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        decompress(archive)
    with pytest.raises(exc, match=match):
        read_archive_info(io.BytesIO(archive))
    with pytest.raises(exc, match=match):
        read_archive_info(Pipe(archive))  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [4, VERSION])
def test_hand_built_archive_reads(version: int) -> None:
    a, b = text(200), text(50, seed=1)
    archive = build([record(Codec.STORED, a), model_record(), lm_record(b, version)], a + b, version=version)
    assert decompress(archive) == a + b
    info = read_archive_info(io.BytesIO(archive))
    assert info.model == MODEL
    assert [(r.kind, r.first_chunk, r.chunk_count, r.original_offset) for r in info.records] == [
        ("stored", 0, 2, 0),
        ("model", 2, 0, 200),
        ("lm", 2, 1, 200),
    ]
    assert info == read_archive_info(Pipe(archive))  # type: ignore[arg-type]


# ------------------------------------------------------------------ model reference (kind 5, format v4)

KNOWN_NAME, KNOWN_HASH, KNOWN_TOKENIZER = KNOWN_MODELS[1]
KNOWN = ModelInfo("any label", KNOWN_HASH, KNOWN_TOKENIZER, 5, 1024, 32, 12)


def known_lm() -> FakeLM:
    return FakeLM(FakeIdentity(model_hash=KNOWN_HASH, tokenizer_hash=KNOWN_TOKENIZER, numerics_version=3))


def reference_record(body: bytes) -> tuple[bytes, bytes]:
    fields = bytes([KIND_MODEL_REF]) + uvarint(len(body))
    return fields, fields + struct.pack("<I", zlib.crc32(body)) + body


def test_known_model_written_as_a_reference() -> None:
    """The default model's hashes go as model number 1 (6 bytes of body, not 91), any other
    model with its hashes; both read back as the same ModelInfo, the label from the table."""
    out = io.BytesIO()
    w = ArchiveWriter(out, Header(chunk_size=100))
    w.add_model(KNOWN)
    w.close(0)
    raw = out.getvalue()
    head = len(Header(chunk_size=100).pack())
    assert raw[head] == KIND_MODEL_REF and KNOWN.pack_reference() == b"\x01\x05\x80\x08\x20\x0c"
    assert raw[head + 12] == END_MARK  # the record: kind, B = 6, CRC, 6 body bytes
    assert model_record_size(KNOWN) == 12
    assert model_record_size(KNOWN, version=4) == 12 + 2  # and v4's index entry: kind, B
    reader = ArchiveReader(io.BytesIO(raw))
    assert list(reader.records()) == []
    assert reader.model == ModelInfo(KNOWN_NAME, KNOWN_HASH, KNOWN_TOKENIZER, 5, 1024, 32, 12)
    assert model_record_size(MODEL) == len(model_record()[1]) > 6 + 64
    assert model_record_size(MODEL, version=4) == len(model_record()[1]) + len(model_record()[0])
    assert model_record_size(KNOWN, version=3) == 6 + len(KNOWN.pack_body()) + 2  # v3 has no references
    v3 = io.BytesIO()
    w = ArchiveWriter(v3, Header(chunk_size=100, version=3))
    w.add_model(KNOWN)
    w.close(0)
    assert v3.getvalue()[len(Header(chunk_size=100, version=3).pack())] == KIND_MODEL
    with pytest.raises(ValueError, match="not a known model"):
        MODEL.pack_reference()


def test_reference_archive_decodes() -> None:
    a = text(100)
    payload, tokens = known_lm().encode_chunks([a])[0]  # type: ignore[misc]
    archive = build([reference_record(b"\x01\x03\x80\x04"), record(Codec.LM, a, payload, tokens)], a)
    assert lmzip.decompress(archive, codec_factory=factory(known_lm())) == a
    info = read_archive_info(io.BytesIO(archive))
    assert info.model == ModelInfo(KNOWN_NAME, KNOWN_HASH, KNOWN_TOKENIZER, 3, 512)
    assert [r.kind for r in info.records] == ["model", "lm"]
    # the model the archive names must be the one loaded: a reference is no wildcard
    with pytest.raises(LmzipError, match="archive needs model 'SmolLM2-135M-Instruct'"):
        decompress(archive)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"\x02\x03\x80\x04", "unknown model number 2"),
        (b"\x00\x03\x80\x04", "unknown model number 0"),
        (uvarint(2**40) + b"\x03\x80\x04", "unknown model number"),
        (b"\x01\x03\x80", "cut short"),
        (b"\x01\x05\x80\x04", "cut short"),  # numerics 5 needs the memory fields
        (b"\x01\x03\x80\x04\x00", "extra bytes"),
        (b"\x01\x05\x80\x04\x00\x0c", "memory group 0 or block 12 out of range"),
        (b"\x01", "model reference length 1 outside 3..25"),
        (b"\x01" * 26, "model reference length 26 outside 3..25"),
    ],
)
def test_bad_model_references(body: bytes, message: str) -> None:
    a = text(100)
    archive = build([reference_record(body), record(Codec.STORED, a)], a)
    both_readers_fail(archive, FormatError, message)


def test_reference_refused_before_version_4() -> None:
    a = text(100)
    records = [reference_record(b"\x01\x03\x80\x04"), record(Codec.STORED, a)]
    both_readers_fail(build(records, a, version=3), FormatError, "unknown record kind 5 in a version 3 archive")
    assert decompress(build(records, a)) == a  # the same records in a version 4 archive


def test_layout_rules() -> None:
    a = text(100)
    lm = lm_record(a)
    both_readers_fail(build([lm], a), FormatError, "record 0: lm record before the model identity record")
    both_readers_fail(
        build([model_record(), model_record(), lm], a), FormatError, "record 1: second model identity record"
    )
    both_readers_fail(
        build([record(Codec.STORED, a[:50]), record(Codec.STORED, a[50:])], a),
        FormatError,
        "record 1: data after the short last chunk",
    )
    big = text(150)
    both_readers_fail(
        build([model_record(), lm_record(big, version=4)], big, version=4),
        FormatError,
        r"record 1: original length 150 outside 1\.\.100",
    )
    # v5 holds an lm record's O as chunk size - O: 0 .. 99 with 100-byte chunks
    both_readers_fail(
        build([model_record(), (b"\x02\x64\x01\x01", b"\x02\x64\x01\x01" + bytes(5))], b""),
        FormatError,
        r"record 1: shortfall 100 outside 0\.\.99",
    )
    both_readers_fail(build([(b"\x07\x01", b"\x07\x01")], b""), FormatError, "record 0: unknown record kind 7")
    both_readers_fail(build([record(Codec.LM, a, b"x", 0)], a), FormatError, "record 0: token count 0")
    both_readers_fail(build([record(Codec.LM, a, b"x", 101)], a), FormatError, "record 0: token count 101")
    both_readers_fail(build([record(Codec.ZSTD, a, b"z" * 165)], a), FormatError, "record 0: payload length 165")


def test_model_record_checks() -> None:
    a = text(100)
    lm = lm_record(a)
    body = MODEL.pack_body()
    bad_name = body[:-9] + b"\xff" * 9
    both_readers_fail(build([model_record(bad_name), lm], a), FormatError, "model name is not UTF-8")
    both_readers_fail(build([model_record(body + b"x"), lm], a), FormatError, "model identity malformed")
    both_readers_fail(build([model_record(body[:-1]), lm], a), FormatError, "model identity malformed")
    both_readers_fail(build([model_record(b"x" * 1000), lm], a), FormatError, "model identity length 1000")
    fields, rec = model_record()
    damaged = rec[:-1] + bytes([rec[-1] ^ 1])
    both_readers_fail(build([(fields, damaged), lm], a), CorruptChunkError, "record 0: model identity CRC")


def test_index_must_match_records() -> None:
    a = text(100)
    fields, rec = record(Codec.ZSTD, a, zstandard.ZstdCompressor().compress(a))
    archive = build([(fields, rec)], a, version=4)
    assert decompress(archive) == a
    other = build([(bytes([Codec.ZSTD, 100, 90]), rec)], a, version=4)  # index entry lies about the payload
    with pytest.raises(FormatError, match="index does not match the records"):
        decompress(other)
    with pytest.raises(FormatError, match="index does not match the records"):
        read_archive_info(io.BytesIO(other))


def test_end_checks_the_record_fields() -> None:
    """Version 5 has no index: its end holds a CRC of every record's fields, so fields that
    decode to the right data by chance are still caught, and a cut or damaged end is refused."""
    a = text(100)
    fields, rec = record(Codec.ZSTD, a, zstandard.ZstdCompressor().compress(a))
    assert decompress(build([(fields, rec)], a)) == a
    both_readers_fail(build([(bytes([Codec.ZSTD, 100, 90]), rec)], a), FormatError, "record fields CRC mismatch")
    archive = build([(fields, rec)], a)
    both_readers_fail(archive[:-1], FormatError, "truncated archive: end cut short")
    both_readers_fail(archive[:-4] + b"LMZX", FormatError, "truncated archive: end missing")
    with pytest.raises(CorruptChunkError, match="CRC mismatch"):  # the whole stream's CRC (info does not check it)
        decompress(archive[:-12] + b"\0\0\0\0" + archive[-8:])


def test_compact_framing() -> None:
    """Format v5's lm record: kind, shortfall 0 for a full chunk (one byte, not three with
    16 KiB chunks), P, T and the CRC; no index entry, and a 13-byte end instead of an index
    and a 16-byte trailer. A writer still writes v4 when asked, and both read back."""
    data = text(16384 + 700, seed=5)
    lm = FakeLM()
    for version, size in ((VERSION, 13 + 11 + 13), (4, 13 + 11 + 2 + 2 + 16)):  # header, model record, end
        out = io.BytesIO()
        w = ArchiveWriter(out, Header(chunk_size=16384, version=version))
        w.add_model(MODEL)
        for chunk in (data[:16384], data[16384:]):
            payload, tokens = lm.encode_chunks([chunk])[0]  # type: ignore[misc]
            w.add(Codec.LM, chunk, payload, tokens)
            fields = 1 + len(uvarint(16384 - len(chunk) if version >= COMPACT_FRAMING else len(chunk)))
            fields += len(uvarint(len(payload))) + len(uvarint(tokens))
            size += fields + 4 + len(payload) + (fields if version < COMPACT_FRAMING else 0)
        size += len(model_record()[1]) - 11 + (len(model_record()[0]) - 2 if version < COMPACT_FRAMING else 0)
        assert w.close(zlib.crc32(data)) == len(out.getvalue()) == size
        assert lmzip.decompress(out.getvalue(), codec_factory=factory(FakeLM())) == data
        info = read_archive_info(io.BytesIO(out.getvalue()))
        assert [r.original_length for r in info.records] == [0, 16384, 700] and info.header.version == version


def test_run_record_crc_names_its_chunks() -> None:
    a = text(250)
    fields, rec = record(Codec.STORED, a)
    damaged = rec[:-1] + bytes([rec[-1] ^ 1])
    with pytest.raises(CorruptChunkError, match="chunks 0-2: CRC mismatch"):
        decompress(build([(fields, damaged)], a))


def test_writer_enforces_the_layout() -> None:
    out = io.BytesIO()
    w = ArchiveWriter(out, Header(chunk_size=100))
    start = out.tell()
    with pytest.raises(FormatError, match="before the model identity"):
        w.add(Codec.LM, b"a" * 10, b"x", 1)
    w.add_model(MODEL)
    with pytest.raises(FormatError, match="original length 101"):
        w.add(Codec.LM, b"a" * 101, b"x", 1)
    pos = out.tell()
    w.add(Codec.STORED, b"a" * 50, b"a" * 50)
    with pytest.raises(FormatError, match="after the short last chunk"):
        w.add(Codec.STORED, b"a" * 100, b"a" * 100)
    assert out.tell() == pos + 1 + 1 + 4 + 50 and start == 11


# ------------------------------------------------------------------ zstd bounds


def test_zstd_decompress_bounds() -> None:
    plain = zstandard.ZstdCompressor(level=3, write_content_size=False)
    data = text(1000)
    frame = plain.compress(data)
    assert zstd_decompress(frame, 1000) == data
    assert zstd_decompress(frame, 1500) == data  # short output: the caller's length check fails
    assert zstd_decompress(zstandard.ZstdCompressor().compress(data), 1000) == data  # declared = O
    with pytest.raises(CorruptChunkError, match="declares 1000 bytes"):
        zstd_decompress(zstandard.ZstdCompressor().compress(data), 999)
    with pytest.raises(CorruptChunkError):
        zstd_decompress(frame, 999)  # more data than declared
    with pytest.raises(CorruptChunkError):
        zstd_decompress(frame + b"\x00", 1000)  # extra bytes after the frame
    for length in (1000, 2000):
        with pytest.raises(CorruptChunkError):
            zstd_decompress(frame + frame, length)  # a second frame
    with pytest.raises(CorruptChunkError):
        zstd_decompress(b"", 10)
    bomb = plain.compress(bytes(16 << 20))  # 16 MiB of zeros in a few hundred bytes
    peak = refused_peak(zstd_decompress, bomb)
    assert peak < 1 << 20, peak


def refused_peak(decompress: Callable[[bytes, int], bytes], bomb: bytes) -> int:
    """Peak traced memory while `decompress` refuses `bomb` declared as 100 bytes: the work
    bound (the output is never allocated; a timing would flake)."""
    tracemalloc.start()
    try:
        with pytest.raises(CorruptChunkError):
            decompress(bomb, 100)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_lzma_decompress_bounds() -> None:
    """Raw LZMA2 streams (format v5's lzma records): exactly O bytes and the stream's end,
    else corrupt; a stream of 16 MiB of zeros declared as 100 bytes is never decoded whole."""
    data = structs(800)
    packed = lzma_compress(data)
    assert len(packed) < 0.7 * len(zstandard.ZstdCompressor(level=19).compress(data))  # why the kind exists
    assert lzma_decompress(packed, len(data)) == data
    assert lzma_decompress(packed, len(data) + 100) == data  # short output: the caller's length check fails
    for bad, message in (
        (packed[:-1], "cut short"),
        (packed[: len(packed) // 2], "cut short"),
        (packed + b"\x00", "extra bytes"),
        (packed + packed, "extra bytes"),
        (b"\xff" * 20, "lzma data corrupt"),
        (b"", "cut short"),
    ):
        with pytest.raises(CorruptChunkError, match=message):
            lzma_decompress(bad, len(data))
    with pytest.raises(CorruptChunkError, match="more data than the record's"):
        lzma_decompress(packed, len(data) - 1)
    assert [lzma_dict_size(n) for n in (1, 4096, 4097, 5 << 20, 64 << 20)] == [4096, 4096, 8192, 8 << 20, MAX_LZMA_DICT]
    peak = refused_peak(lzma_decompress, lzma_compress(bytes(16 << 20)))
    assert peak < 1 << 20, peak


def test_lzma_record_kind() -> None:
    """With a model, a run of chunks goes to lzma when that beats zstd -19 and stored;
    without one (--no-lm, level 1) lzma is not tried (zstd's speed). Version 4 has no kind 6."""
    data = structs(3000)  # 18 KB
    with_model = compress(data, chunk_size=4096, codec_factory=factory(FakeLM()))
    no_lm = compress(data, chunk_size=4096, use_lm=False)
    assert read_archive_info(io.BytesIO(with_model)).codec_counts["lzma"] == 5
    assert read_archive_info(io.BytesIO(no_lm)).codec_counts == {"stored": 0, "zstd": 5, "lm": 0, "spans": 0, "lzma": 0}
    assert len(with_model) < 0.7 * len(no_lm)
    assert decompress(with_model) == data == decompress(no_lm)
    packed = lzma_compress(data[:100])
    records = [record(Codec.LZMA, data[:100], packed)]
    assert decompress(build(records, data[:100])) == data[:100]
    v4 = build(records, data[:100], version=4)
    both_readers_fail(v4, FormatError, "unknown record kind 6 in a version 4 archive")


# ------------------------------------------------------------------ fuzz


def _originals() -> list[bytes]:
    rng = random.Random(13)
    return [
        text(700) + rng.randbytes(300) + bytes(200) + text(150, seed=2),
        text(1000, seed=3),
        b"",
    ]


def _version_4(original: bytes) -> bytes:
    """A format v4 archive (index and trailer) of a model record, lm records and a stored one."""
    out = io.BytesIO()
    w = ArchiveWriter(out, Header(chunk_size=100, version=4))
    w.add_model(MODEL)
    for k in range(0, len(original) - 100, 100):
        payload, tokens = FakeLM().encode_chunks([original[k : k + 100]])[0]  # type: ignore[misc]
        w.add(Codec.LM, original[k : k + 100], payload, tokens)
    w.add(Codec.STORED, original[-100:], original[-100:])
    w.close(zlib.crc32(original))
    return out.getvalue()


ORIGINALS = _originals()
ORIGINALS.append(ORIGINALS[1])
ARCHIVES = [
    compress(ORIGINALS[0], chunk_size=128, batch=3, name="f.txt", mtime=-7, codec_factory=factory(FakeLM())),
    compress(ORIGINALS[1], chunk_size=100, batch=4, use_lm=False),
    compress(ORIGINALS[2], use_lm=False),
    _version_4(ORIGINALS[3]),
]
HUGE = [
    b"\xff" * 9 + b"\x01",  # 2**64
    b"\x80" * 10 + b"\x00",  # 11 bytes
    b"\x80\x00",  # overlong
    uvarint(2**63),
    uvarint(2**32 - 1),
    uvarint(64 << 20),
]

edit = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("byte"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("varint"), st.floats(0, 1), st.sampled_from(HUGE), st.integers(0, 3)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
)


def apply(blob: bytes, e: tuple) -> bytes:
    pos = int(e[1] * len(blob))
    if e[0] == "cut":
        return blob[:pos]
    if e[0] == "flip" and pos < len(blob):
        return blob[:pos] + bytes([blob[pos] ^ (1 << e[2])]) + blob[pos + 1 :]
    if e[0] == "byte" and pos < len(blob):
        return blob[:pos] + bytes([e[2]]) + blob[pos + 1 :]
    if e[0] == "varint":
        return blob[:pos] + e[2] + blob[pos + e[3] :]
    if e[0] == "insert":
        return blob[:pos] + e[2] + blob[pos:]
    return blob


@settings(
    max_examples=300,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(which=st.integers(0, len(ARCHIVES) - 1), edits=st.lists(edit, min_size=1, max_size=4))
def test_fuzz_parser(which: int, edits: list[tuple]) -> None:
    blob = ARCHIVES[which]
    for e in edits:
        blob = apply(blob, e)
    t0 = time.perf_counter()
    try:
        assert decompress(blob) == ORIGINALS[which]
    except LmzipError:
        pass
    for src in (io.BytesIO(blob), Pipe(blob)):
        try:
            info = read_archive_info(src)  # type: ignore[arg-type]
        except LmzipError:
            continue
        assert info.original_size <= 2 * len(ORIGINALS[which]) + 1000
    # A generous bound, not a speed test: a case takes milliseconds, while a parser that
    # walks a declared size (millions of chunks, GBs of zeros) takes minutes; 10 s
    # leaves room for a busy machine.
    assert time.perf_counter() - t0 < 10


def test_fuzz_bases_are_valid() -> None:
    for archive, original in zip(ARCHIVES, ORIGINALS, strict=True):
        assert decompress(archive) == original
    assert [a[4] for a in ARCHIVES] == [VERSION, VERSION, VERSION, 4] and TRAILER_SIZE == 16
