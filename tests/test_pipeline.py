import io
import random
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmzip.container import MAX_CHUNK_SIZE, TRAILER_SIZE, Codec, Header
from lmzip.errors import (
    CorruptChunkError,
    FormatError,
    LmzipError,
    ModelMismatchError,
)
from lmzip.pipeline import (
    CompressOptions,
    DecompressOptions,
    compress_stream,
    decompress_stream,
    read_archive_info,
)

CORPUS = Path(__file__).parents[2] / "shared" / "corpus"


@dataclass
class FakeIdentity:
    name: str = "fake-zlib"
    model_hash: bytes = b"M" * 32
    tokenizer_hash: bytes = b"T" * 32
    numerics_version: int = 3
    context_window: int = 512


WORDS = [b"the", b"cat", b"sat", b"on", b"a", b"mat", b"and", b"looked", b"around\n"]
ZDICT = b" ".join(WORDS) * 4  # a "model" that knows the test vocabulary beats zstd on text


class FakeLM:
    """Stands in for the LM codec: raw deflate with a preset dictionary; 'tokens' = words."""

    def __init__(self, identity: FakeIdentity | None = None) -> None:
        self.identity = identity or FakeIdentity()
        self.encode_calls: list[int] = []
        self.decode_calls: list[int] = []

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
        self.encode_calls.append(len(chunks))
        out: list[tuple[bytes, int] | None] = []
        for c in chunks:
            if b"\xff\xfe" in c:  # pretend this cannot be tokenized byte-exactly
                out.append(None)
            else:
                co = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=ZDICT)
                out.append((co.compress(c) + co.flush(), max(1, len(c.split()))))
        return out

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        self.decode_calls.append(len(items))
        return [zlib.decompressobj(-15, zdict=ZDICT).decompress(p) for p, _ in items]


def factory(lm: FakeLM):
    return lambda options: lm


def compress(data: bytes, **kw) -> bytes:
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, CompressOptions(**kw))
    return out.getvalue()


def decompress(archive: bytes, **kw) -> bytes:
    out = io.BytesIO()
    decompress_stream(io.BytesIO(archive), out, DecompressOptions(**kw))
    return out.getvalue()


def text(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS) + b" "
    return bytes(out[:n])


SAMPLES = {
    "empty": b"",
    "one": b"x",
    "random": random.Random(1).randbytes(5000),
    "text": text(6000),
    "zeros": bytes(3000),
}


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
    assert len(info.chunks) == -(-len(data) // 1024)
    if not data:
        assert lm.encode_calls == []  # an empty input never loads the model


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 127, 128, 129, 64 * 5 - 1, 64 * 5, 64 * 5 + 1])
def test_chunk_boundaries(size: int) -> None:
    data = text(size, seed=size)
    lm = FakeLM()
    archive = compress(data, chunk_size=64, batch=2, codec_factory=factory(lm))
    info = read_archive_info(io.BytesIO(archive))
    assert [c.original_length for c in info.chunks] == [
        min(64, size - i) for i in range(0, size, 64)
    ]
    assert all(n <= 2 for n in lm.encode_calls)  # batches bound memory
    assert decompress(archive, codec_factory=factory(lm)) == data


def test_codec_choice_and_stats() -> None:
    rnd = random.Random(2).randbytes(4096)
    data = text(4096) + rnd + b"\xff\xfe" + bytes(4094)
    lm = FakeLM()
    out = io.BytesIO()
    stats = compress_stream(
        io.BytesIO(data), out, CompressOptions(chunk_size=4096, codec_factory=factory(lm))
    )
    info = read_archive_info(io.BytesIO(out.getvalue()))
    assert [c.codec for c in info.chunks] == [Codec.LM, Codec.STORED, Codec.ZSTD]
    assert stats.chunks == {"stored": 1, "zstd": 1, "lm": 1} == info.codec_counts
    assert stats.original_bytes == len(data) and stats.compressed_bytes == len(out.getvalue())
    # random data grows by only the record header (+ the 17-byte index entry)
    stored = info.chunks[1]
    assert stored.payload_length == 4096
    assert info.header.model_name == "fake-zlib" and info.header.context_window == 512
    dec_lm = FakeLM()
    stats2 = decompress_stream(
        io.BytesIO(out.getvalue()), io.BytesIO(), DecompressOptions(codec_factory=factory(dec_lm))
    )
    assert stats2.chunks == stats.chunks and dec_lm.decode_calls == [1]


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


def test_decompress_asks_for_the_archived_model() -> None:
    archive = compress(text(100), codec_factory=factory(FakeLM()))
    asked = []

    def record(options):
        asked.append(options.model)
        return FakeLM()

    decompress(archive, codec_factory=record)
    assert asked == ["fake-zlib"]


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
    class Pipe(io.RawIOBase):
        """Unseekable and returns short reads, like a pipe."""

        def __init__(self, data: bytes) -> None:
            self.data = memoryview(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            n = min(n if n >= 0 else len(self.data), 7)
            out, self.data = bytes(self.data[:n]), self.data[n:]
            return out

    data = text(5000)
    archive = compress(data, chunk_size=512, use_lm=False)
    out = io.BytesIO()
    compress_stream(Pipe(data), out, CompressOptions(chunk_size=512, use_lm=False))
    assert out.getvalue() == archive
    assert decompress_stream(Pipe(archive), io.BytesIO(), DecompressOptions()).original_bytes
    info = read_archive_info(Pipe(archive))
    assert info == read_archive_info(io.BytesIO(archive))


def test_progress_and_verify_only() -> None:
    data = text(10_000)
    archive = compress(data, chunk_size=1000, batch=4, use_lm=False)
    seen: list[int] = []
    compress_stream(
        io.BytesIO(data), io.BytesIO(), CompressOptions(chunk_size=1000, use_lm=False), seen.append
    )
    assert sum(seen) == len(data)
    seen.clear()
    stats = decompress_stream(
        io.BytesIO(archive), None, DecompressOptions(batch=4), seen.append, verify_only=True
    )
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
    return compress(
        MIXED, chunk_size=512, batch=2, name="f.txt", mtime=1, codec_factory=factory(FakeLM())
    )


def test_truncated_everywhere(mixed_archive: bytes) -> None:
    assert outcome(mixed_archive) == MIXED
    for cut in range(0, len(mixed_archive), 97):
        assert outcome(mixed_archive[:cut]) is None, cut
        assert not info_ok(mixed_archive[:cut]), cut
    assert outcome(mixed_archive[:-1]) is None


def test_truncation_messages(mixed_archive: bytes) -> None:
    with pytest.raises(FormatError, match="not an lmzip file"):
        decompress(b"")
    with pytest.raises(FormatError, match="record cut short"):
        decompress(mixed_archive[:300])


def test_flipped_bits_everywhere(mixed_archive: bytes) -> None:
    rng = random.Random(5)
    positions = list(range(0, len(mixed_archive), 3))  # header, records, payloads, index, trailer
    for pos in positions:
        damaged = bytearray(mixed_archive)
        damaged[pos] ^= 1 << rng.randrange(8)
        assert outcome(bytes(damaged)) is None, pos  # every byte is under some CRC
        info_ok(bytes(damaged))  # may succeed (payload bits) but must not crash


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
    """Sets the header's chunk size and re-seals the header CRC (no-lm header, no name)."""
    head = bytearray(archive[:10])
    struct.pack_into("<I", head, 6, chunk_size)
    return bytes(head) + struct.pack("<I", zlib.crc32(head)) + archive[14:]


def test_huge_declared_lengths() -> None:
    archive = compress(b"hello world" * 10, chunk_size=64, use_lm=False)
    with pytest.raises(FormatError, match="chunk size"):
        decompress(rewrite_header(archive, MAX_CHUNK_SIZE + 1))
    # A record claiming 4 GiB original / payload: rejected before any allocation.
    for field_offset in (1, 5):
        damaged = bytearray(archive)
        struct.pack_into("<I", damaged, 14 + field_offset, 0xFFFFFFFF)
        with pytest.raises(FormatError, match="chunk 0"):
            decompress(bytes(damaged))
    # A trailer claiming 2**60 chunks: info must not try to read that index.
    damaged = bytearray(archive)
    struct.pack_into("<Q", damaged, len(archive) - TRAILER_SIZE + 8, 1 << 60)
    body = damaged[-TRAILER_SIZE:-8]
    struct.pack_into("<I", damaged, len(archive) - 8, zlib.crc32(body))
    with pytest.raises(FormatError):
        read_archive_info(io.BytesIO(bytes(damaged)))
    with pytest.raises(FormatError):
        decompress(bytes(damaged))


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
        Header(chunk_size=10, model_name="m" * 256).pack()


# ------------------------------------------------------------------ corpus


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize(
    "name", sorted(p.name for p in CORPUS.iterdir()) if CORPUS.is_dir() else []
)
def test_corpus_round_trip(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    archive = compress(data, chunk_size=65536, use_lm=False)
    assert decompress(archive) == data
    assert len(archive) <= len(data) + 200 + 40 * (len(data) // 65536 + 1)


def test_random_data_growth_is_exactly_the_framing() -> None:
    data = random.Random(7).randbytes(10 * 1024 + 5)
    archive = compress(data, chunk_size=1024, use_lm=False)
    empty = compress(b"", chunk_size=1024, use_lm=False)
    assert len(archive) == len(data) + len(empty) + 11 * (21 + 17)


def test_hostile_stored_name_rejected_on_read() -> None:
    archive = compress(b"hi", use_lm=False, name="ab")
    head_len = 10 + 2 + 2 + 4  # fixed part, name length, name, CRC
    head = bytearray(archive[: head_len - 4])
    head[12:14] = b"a/"  # the name field, re-sealed with a valid CRC
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

    archive = compress(text(2000), codec_factory=factory(engine_like(2, 256)))
    header = read_archive_info(io.BytesIO(archive)).header
    assert (header.numerics_version, header.context_window) == (2, 256)
    assert header.model_name == "é" * 127  # cut to 255 bytes on a character boundary
    assert decompress(archive, codec_factory=factory(engine_like(2, 256))) == text(2000)
    with pytest.raises(ModelMismatchError, match="window 256.*window 128"):
        decompress(archive, codec_factory=factory(engine_like(2, 128)))


@pytest.mark.parametrize("size", [0, -1, MAX_CHUNK_SIZE + 1])
def test_bad_chunk_size_option(size: int) -> None:
    with pytest.raises(LmzipError, match="chunk size"):
        compress(b"abc", chunk_size=size, use_lm=False)
