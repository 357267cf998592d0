"""Memory is bounded whatever an archive declares (docs/DESIGN.md "Memory").

A 62 KB archive of 64 MiB zstd records of zeros once made `lmzip -t` hold every record
of a group at once (4 x batch x chunk size: 8 GiB at 64 MiB chunks). Here the CLI
decodes such an archive under an address-space cap (RLIMIT_AS, in a subprocess that
never imports torch); the in-process tests check the group budget and the streaming of
large records with counts and tracemalloc.
"""

from __future__ import annotations

import io
import lzma
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import pytest
import zstandard
from fake_lm import FakeIdentity
from script_modules import load_script

from lmzip import pipeline
from lmzip.codecs import MAX_LZMA_DICT, lzma_dict_size
from lmzip.container import ArchiveWriter, Codec, Header, ModelInfo
from lmzip.errors import LmzipError
from lmzip.pipeline import CompressOptions, DecompressOptions, compress_stream, decompress_stream

MIB = 1 << 20
RECORD = 64 * MIB  # the largest record the format allows
RECORDS = 10  # 640 MiB of zeros in a 60 KB archive (lmzip 0.1.0 held them all at once)
HEADROOM = 48 * MIB  # address space the decoder may add to its imports: less than one record


def _zeros_archive(path: Path, records: int) -> None:
    """An archive of `records` zstd records of RECORD zeros each (made directly: zstd -1
    on zeros takes milliseconds, -19 as lmzip writes would take seconds)."""
    zeros = bytes(RECORD)
    payload = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(zeros)
    with path.open("wb") as f:
        w = ArchiveWriter(f, Header(chunk_size=RECORD))
        crc = 0
        for _ in range(records):
            w.add(Codec.ZSTD, zeros, payload)
            crc = zlib.crc32(zeros, crc)
        w.close(crc)


CAPPED = textwrap.dedent(
    """
    import resource, sys
    def vm_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    import lmzip.cli, lmzip.pipeline, lmzip.codecs  # everything -t and -d load for a no-lm archive
    cap = vm_kib() * 1024 + int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    assert "torch" not in sys.modules
    pinned = bytearray(int(sys.argv[2]))
    lmzip.cli.main(sys.argv[3:])
    """
)


def _run_capped(args: list[str], cwd: Path, pin: int = 0) -> subprocess.CompletedProcess[bytes]:
    """`lmzip ARGS` with HEADROOM bytes of address space beyond its imports (`pin` of them
    taken before it starts)."""
    return subprocess.run(
        [sys.executable, "-c", CAPPED, str(HEADROOM), str(pin), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=300,
    )


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc (Linux) to measure the cap")
def test_large_records_decode_under_a_memory_cap(tmp_path: Path) -> None:
    arc = tmp_path / "z.lmz"
    _zeros_archive(arc, RECORDS)
    assert arc.stat().st_size < 100_000  # 640 MiB of data, 60 KB of archive
    for args in (["-t", "z.lmz"], ["-d", "-c", "z.lmz"]):
        res = _run_capped(args, tmp_path)
        assert res.returncode == 0, (args, res.stderr.decode())
    # The cap is enforced here: taking more than the headroom fails.
    res = _run_capped(["-t", "z.lmz"], tmp_path, pin=HEADROOM + MIB)
    assert res.returncode != 0 and b"MemoryError" in res.stderr


def test_stored_record_streams_in_pieces() -> None:
    data = bytes(range(256)) * (32 * MIB // 256)  # written as one stored record of 32 MiB
    out = io.BytesIO()
    w = ArchiveWriter(out, Header(chunk_size=32 * MIB))
    w.add(Codec.STORED, data, data)
    w.close(zlib.crc32(data))
    archive = io.BytesIO(out.getvalue())
    del data, out, w
    tracemalloc.start()
    try:
        stats = decompress_stream(archive, None, DecompressOptions(), verify_only=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats.original_bytes == 32 * MIB and stats.chunks["stored"] == 1
    assert peak < 4 * MIB, peak  # pieces of container.PIECE (1 MiB), never the 32 MiB record


def _packed(codec: Codec, data: bytes) -> bytes:
    """A zstd frame or raw LZMA2 stream of data at a fast level (lmzip writes -19 and -9e)."""
    if codec == Codec.ZSTD:
        return zstandard.ZstdCompressor(level=1, write_content_size=False).compress(data)
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": lzma_dict_size(len(data))}]
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)


@pytest.mark.parametrize("codec", [Codec.ZSTD, Codec.LZMA], ids=lambda c: c.name.lower())
def test_packed_record_streams_in_pieces(codec: Codec) -> None:
    data = b"".join(b"%08d\n" % i for i in range(2 * MIB))  # 18 MiB, compressible
    out = io.BytesIO()
    w = ArchiveWriter(out, Header(chunk_size=32 * MIB))
    w.add(codec, data, _packed(codec, data))
    w.close(zlib.crc32(data))
    archive = io.BytesIO(out.getvalue())
    want = zlib.crc32(data)
    del data, out, w
    got = Sink()
    tracemalloc.start()
    try:
        stats = decompress_stream(archive, got, DecompressOptions())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.crc == want and stats.chunks[codec.name.lower()] == 1
    assert max(got.sizes) <= MIB
    # pieces of container.PIECE (1 MiB), never the 18 MiB record; liblzma allocates
    # through Python, so its dictionary (at most MAX_LZMA_DICT) counts too
    assert peak < 4 * MIB + (MAX_LZMA_DICT if codec == Codec.LZMA else 0), peak


class Sink:
    """An output that keeps only a CRC and the sizes of the writes."""

    def __init__(self) -> None:
        self.crc = 0
        self.sizes: list[int] = []

    def write(self, data: bytes) -> int:
        self.crc = zlib.crc32(data, self.crc)
        self.sizes.append(len(data))
        return len(data)


class IdentityLM:
    """An lm codec whose payload is the chunk itself: cheap on MiB-sized chunks."""

    def __init__(self) -> None:
        self.identity = FakeIdentity()
        self.decode_calls: list[int] = []

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
        return [None] * len(chunks)

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        self.decode_calls.append(len(items))
        return [p for p, _ in items]


def test_lm_groups_stay_within_the_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    chunk, n = 64 << 10, 40
    monkeypatch.setattr(pipeline, "DECODE_GROUP_BYTES", 8 * chunk)  # the budget, scaled down 32x
    ident = FakeIdentity()
    out = io.BytesIO()
    w = ArchiveWriter(out, Header(chunk_size=chunk))
    w.add_model(ModelInfo(ident.name, ident.model_hash, ident.tokenizer_hash, 3, 512))
    chunks = [bytes([i]) * chunk for i in range(n)]
    for c in chunks:
        w.add(Codec.LM, c, c, 1)
    w.close(zlib.crc32(b"".join(chunks)))
    lm = IdentityLM()
    got = io.BytesIO()
    decompress_stream(io.BytesIO(out.getvalue()), got, DecompressOptions(batch=32, codec_factory=lambda o: lm))
    assert got.getvalue() == b"".join(chunks)
    # Without the budget one group would take all 40 (lookahead 4 x batch 32 = 128 records).
    assert lm.decode_calls == [8] * 5


def test_compression_groups_stay_within_the_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "COMPRESS_GROUP_BYTES", 4096)
    calls: list[int] = []

    class Spy(IdentityLM):
        def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
            calls.append(len(chunks))
            return [None] * len(chunks)

    data = bytes(10 * 1024)
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, CompressOptions(chunk_size=1024, batch=32, codec_factory=lambda o: Spy()))
    assert calls == [4, 4, 2]  # 4096 bytes a group, not 32 chunks
    assert decompress_stream(io.BytesIO(out.getvalue()), io.BytesIO(), DecompressOptions()).original_bytes == len(data)


fuzz = load_script("fuzz")


def test_streamed_records_survive_damage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The streaming path (taken by stored/zstd records over STREAM_RECORD_BYTES) gets the
    fuzz bases' truncations and bit flips: the exact original or an LmzipError."""
    monkeypatch.setattr(pipeline, "STREAM_RECORD_BYTES", 0)
    bases = fuzz.make_bases()
    for name in ("text-nolm", "random", "zeros-named", "multi-group", "lzma"):  # zstd, stored, lzma records
        original, archive = bases[name]
        for cut in range(len(archive)):
            with pytest.raises(LmzipError):
                decompress_stream(io.BytesIO(archive[:cut]), io.BytesIO(), DecompressOptions())
        for pos in range(len(archive)):
            for bit in (0, 5):
                damaged = bytearray(archive)
                damaged[pos] ^= 1 << bit
                out = io.BytesIO()
                try:
                    decompress_stream(io.BytesIO(bytes(damaged)), out, DecompressOptions())
                except LmzipError:
                    continue
                assert out.getvalue() == original, (name, pos, bit)
