"""The Python API (lmzip.compress/decompress/open, LmzipFile, Compressor/Decompressor),
with the fake LM codec (tests/fake_lm.py) unless marked requires_model."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fake_lm import FakeLM, text

import lmzip
from lmzip import defaults
from lmzip.errors import CorruptChunkError, FormatError, LmzipError, ModelNotFoundError

DATA = text(9000) + random.Random(3).randbytes(1500) + text(2500, 1)
OPTS = {"chunk_size": 1024, "batch": 2}
PROSE = (
    b"Alice was beginning to get very tired of sitting by her sister on the bank, and of\n"
    b"having nothing to do: once or twice she had peeped into the book her sister was\n"
    b"reading, but it had no pictures or conversations in it, and what is the use of a\n"
    b"book, thought Alice, without pictures or conversations? So she was considering in\n"
    b"her own mind (as well as she could, for the hot day made her feel very sleepy and\n"
    b"stupid), whether the pleasure of making a daisy-chain would be worth the trouble\n"
    b"of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes\n"
    b"ran close by her.\n"
)


class Loads:
    """A codec_factory that counts how often a codec is made."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def __call__(self, options: object) -> FakeLM:
        self.calls.append(options)
        return FakeLM()


def test_public_surface() -> None:
    for name in lmzip.__all__:
        assert hasattr(lmzip, name), name
    assert issubclass(lmzip.FormatError, lmzip.LmzipError)
    assert issubclass(lmzip.CorruptChunkError, lmzip.LmzipError)


def test_import_loads_no_torch() -> None:
    probe = "import sys, lmzip; print([m for m in ('torch', 'lmzip.lm_codec', 'lmzip.engine') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("data", [b"", b"x", DATA, bytes(5000)])
def test_bytes_round_trip(data: bytes) -> None:
    archive = lmzip.compress(data, codec_factory=Loads(), **OPTS)
    assert archive.startswith(b"LMZ\x00")
    assert lmzip.decompress(archive, codec_factory=Loads()) == data
    assert lmzip.decompress(bytearray(archive), codec_factory=Loads()) == data
    assert lmzip.decompress(memoryview(archive), codec_factory=Loads()) == data


def test_levels() -> None:
    assert lmzip.compress(DATA, 1, **OPTS) == lmzip.compress(DATA, use_lm=False, **OPTS)  # -1: no model
    loads = Loads()
    lmzip.compress(DATA, 1, codec_factory=loads)
    assert not loads.calls
    for level in (2, 9):
        lv = defaults.LEVELS[level]
        loads = Loads()
        info = lmzip.api.Compressor(level, codec_factory=loads).options
        assert (info.chunk_size, info.window, info.use_lm) == (lv.chunk_size, lv.window, True)
        lmzip.compress(DATA, level, codec_factory=loads)
        assert [o.window for o in loads.calls] == [lv.window]  # the codec is asked for the level's window
    assert lmzip.Compressor(9, chunk_size=2048).options.chunk_size == 2048  # explicit options win
    for bad in (0, 10, -1):
        with pytest.raises(ValueError, match="1..9"):
            lmzip.Compressor(bad)
    with pytest.raises(LmzipError, match="chunk size"):
        lmzip.Compressor(chunk_size=0)


def test_name_and_mtime_are_stored() -> None:
    from lmzip.pipeline import read_archive_info

    info = read_archive_info(io.BytesIO(lmzip.compress(b"abc", 1, name="a.txt", mtime=7)))
    assert (info.name, info.mtime) == ("a.txt", 7)


def test_model_loaded_once_across_calls() -> None:
    loads = Loads()
    c = lmzip.Compressor(codec_factory=loads, **OPTS)
    archives = [c.compress(DATA[i:]) for i in range(0, 5000, 1000)]
    assert len(loads.calls) == 1
    with lmzip.open(io.BytesIO(), "wb", compressor=c) as f:
        f.write(DATA)
    assert len(loads.calls) == 1

    dloads = Loads()
    d = lmzip.Decompressor(codec_factory=dloads)
    for i, a in zip(range(0, 5000, 1000), archives, strict=True):
        assert d.decompress(a) == DATA[i:]
        assert d.test(a).original_bytes == len(DATA) - i
    with lmzip.open(io.BytesIO(archives[0]), decompressor=d) as f:
        assert f.read() == DATA
    assert len(dloads.calls) == 1
    assert dloads.calls[0].window == 512  # the archive's window (FakeIdentity's)


def test_decompressor_keeps_the_last_archives_codec() -> None:
    from fake_lm import FakeIdentity

    def made_with(window: int) -> bytes:
        return lmzip.compress(DATA, codec_factory=lambda _o: FakeLM(FakeIdentity(context_window=window)), **OPTS)

    a512, a256 = made_with(512), made_with(256)
    windows: list[int] = []

    def factory(options: Any) -> FakeLM:
        windows.append(options.window)
        return FakeLM(FakeIdentity(context_window=options.window))

    d = lmzip.Decompressor(codec_factory=factory)
    for archive in (a512, a512, a256, a256, a512):
        assert d.decompress(archive) == DATA
    assert windows == [512, 256, 512]  # one codec in memory: a new window loads anew


def test_stream_many_small_writes_equal_one_call() -> None:
    out = io.BytesIO()
    rng = random.Random(5)
    with lmzip.open(out, "wb", codec_factory=Loads(), **OPTS) as f:
        i = 0
        while i < len(DATA):
            n = rng.choice([1, 2, 7, 100, 3000])
            assert f.write(DATA[i : i + n]) == len(DATA[i : i + n])
            i += n
        assert f.tell() == len(DATA)
    assert not out.closed  # a file object given is left open
    assert out.getvalue() == lmzip.compress(DATA, codec_factory=Loads(), **OPTS)


def test_stream_partial_reads() -> None:
    archive = lmzip.compress(DATA, codec_factory=Loads(), **OPTS)
    rng = random.Random(6)
    with lmzip.LmzipFile(io.BytesIO(archive), codec_factory=Loads()) as f:
        got = bytearray()
        assert f.peek(1)[:1] == DATA[:1]
        while True:
            how = rng.choice(["read", "read1", "readinto", "readline"])
            n = rng.choice([1, 5, 300, 4096])
            if how == "readinto":
                buf = bytearray(n)
                k = f.readinto(buf)
                part = bytes(buf[:k])
            else:
                part = getattr(f, how)(n)
            if not part:
                break
            got += part
            assert f.tell() == len(got)
        assert bytes(got) == DATA
        assert f.read() == b""


def test_text_mode_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "t.txt.lmz"
    lines = [f"line {i}: the cat sat on a mat, ü\n" for i in range(500)]
    with lmzip.open(path, "wt", encoding="utf-8", codec_factory=Loads(), **OPTS) as f:
        for line in lines:
            f.write(line)
    with lmzip.open(path, "rt", encoding="utf-8", codec_factory=Loads()) as f:
        assert list(f) == lines
    with lmzip.open(str(path), "rb", codec_factory=Loads()) as f:
        assert f.read() == "".join(lines).encode()
        assert f.name == str(path) and f.mode == "rb"
    with pytest.raises(FileExistsError):
        lmzip.open(path, "xb")
    lmzip.open(tmp_path / "new.lmz", "xb", level=1).close()  # an empty archive
    assert lmzip.decompress((tmp_path / "new.lmz").read_bytes()) == b""


def test_bad_arguments(tmp_path: Path) -> None:
    for mode in ("ab", "r+b", "rbt", "q"):
        with pytest.raises(ValueError, match="mode"):
            lmzip.open(tmp_path / "x.lmz", mode)
    with pytest.raises(ValueError, match="text mode"):
        lmzip.open(tmp_path / "x.lmz", "wb", encoding="utf-8")
    with pytest.raises(TypeError):
        lmzip.LmzipFile(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lmzip.open(io.BytesIO(), "wb", compressor=lmzip.Compressor(), level=3)
    with pytest.raises(TypeError):
        lmzip.open(io.BytesIO(), "rb", level=3)
    with lmzip.open(io.BytesIO(), "wb", level=1) as f:
        with pytest.raises(io.UnsupportedOperation):
            f.read()
        assert f.writable() and not f.readable() and not f.seekable()
    with lmzip.open(io.BytesIO(lmzip.compress(b"", 1))) as f:
        with pytest.raises(io.UnsupportedOperation):
            f.write(b"x")
    with pytest.raises(ValueError, match="closed"):
        f.read()


def damaged() -> list[tuple[bytes, type[LmzipError]]]:
    archive = bytearray(lmzip.compress(DATA, codec_factory=Loads(), **OPTS))
    flipped = bytearray(archive)
    flipped[len(archive) // 2] ^= 0x10
    return [
        (b"not an archive at all", FormatError),
        (bytes(archive[:-7]), FormatError),  # truncated
        (bytes(flipped), LmzipError),  # CorruptChunkError or FormatError, depending on the byte hit
        (b"", FormatError),
    ]


@pytest.mark.parametrize("case", range(4))
def test_damaged_data_raises_the_documented_errors(case: int) -> None:
    blob, exc = damaged()[case]
    with pytest.raises(exc):
        lmzip.decompress(blob, codec_factory=Loads())
    with pytest.raises(exc), lmzip.open(io.BytesIO(blob), codec_factory=Loads()) as f:
        while f.read(1000):
            pass
    with pytest.raises(exc):
        lmzip.Decompressor(codec_factory=Loads()).test(blob)


def test_corrupt_chunk_is_a_corrupt_chunk_error() -> None:
    archive = bytearray(lmzip.compress(b"A" * 100 + random.Random(1).randbytes(100), 1))
    stored = archive.index(random.Random(1).randbytes(100)[:16])
    archive[stored] ^= 1  # stored bytes: only the chunk's CRC can tell
    with pytest.raises(CorruptChunkError, match="CRC"):
        lmzip.decompress(bytes(archive))


def test_errors_in_the_worker_reach_the_caller() -> None:
    def missing(options: object) -> FakeLM:
        raise ModelNotFoundError("model 'nope' is not installed")

    f = lmzip.open(io.BytesIO(), "wb", codec_factory=missing)
    with pytest.raises(ModelNotFoundError, match="nope"):
        try:
            f.write(DATA)  # the worker fails at its first group: this write or close reports it
        finally:
            f.close()
    assert f.closed
    with pytest.raises(ModelNotFoundError):
        lmzip.compress(DATA, codec_factory=missing)


def test_closing_a_reader_early_stops_its_thread() -> None:
    data = text(200_000)
    archive = lmzip.compress(data, codec_factory=Loads(), chunk_size=1024, batch=2)
    before = threading.active_count()
    with lmzip.open(io.BytesIO(archive), codec_factory=Loads()) as f:
        assert f.read(10) == data[:10]
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_copy_stream_and_progress() -> None:
    seen: list[int] = []
    out = io.BytesIO()
    stats = lmzip.Compressor(1).copy_stream(io.BytesIO(DATA), out, progress=seen.append)
    assert sum(seen) == stats.original_bytes == len(DATA) and stats.compressed_bytes == len(out.getvalue())
    back = io.BytesIO()
    lmzip.Decompressor().copy_stream(io.BytesIO(out.getvalue()), back)
    assert back.getvalue() == DATA


@pytest.mark.requires_model
def test_real_model_loads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmzip import lm_codec
    from lmzip.pipeline import read_archive_info

    loads: list[object] = []
    real = lm_codec.load_lm_codec

    def counting(**kw: object) -> object:
        loads.append(kw)
        return real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(lm_codec, "load_lm_codec", counting)
    lines = PROSE.splitlines(keepends=True)
    docs = [PROSE, b"".join(lines[::-1])]  # prose: the model beats zstd, so each archive has lm records
    c = lmzip.Compressor(threads=1)
    archives = [c.compress(d) for d in docs]
    assert all(read_archive_info(io.BytesIO(a)).model for a in archives)
    d = lmzip.Decompressor(threads=1)
    assert [d.decompress(a) for a in archives] == docs
    assert len(loads) == 2  # once for the Compressor, once for the Decompressor


def test_example_and_levels_scripts_without_the_model(tmp_path: Path) -> None:
    sample = tmp_path / "s.txt"
    sample.write_bytes(DATA)
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    out = subprocess.run(
        [sys.executable, str(scripts / "compare_python.py"), "--levels", "1", str(sample)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    codecs = {line[17:27].strip() for line in out.splitlines()}
    assert {"gzip -9", "bz2 -9", "lzma -9e", "zstd -19", "lmzip -1"} <= codecs
    table = tmp_path / "levels.md"
    cmd = [sys.executable, str(scripts / "levels.py"), "--levels", "1", "--file", str(sample), "--out", str(table)]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    row = [line for line in table.read_text().splitlines() if line.startswith("| -1 ")]
    assert row and f"| {len(lmzip.compress(DATA[:32768], 1))} |" in row[0]


def test_writer_left_open_is_ended_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "open.lmz"
    script = f"import lmzip\nf = lmzip.open({str(path)!r}, 'wb', level=1)\nf.write(b'left open ' * 10000)\n"
    subprocess.run([sys.executable, "-c", script], timeout=60, check=True)
    assert lmzip.decompress(path.read_bytes()) == b"left open " * 10000
