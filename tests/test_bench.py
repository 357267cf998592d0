"""`lmzip bench`: sizes match the reference settings, round trips verified, output formats.

All but the last test run without the model (`--no-lm`, or a fake LM codec).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zstandard
from click.testing import CliRunner

from lmzip import bench
from lmzip.cli import cli
from lmzip.pipeline import CompressOptions, compress_stream

TEXT = b"".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog, {i * i % 97} times.\n".encode() for i in range(120)
)


def invoke(*args: str):
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False)


def pipeline_size(data: bytes, **kw) -> int:
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, CompressOptions(**kw))
    return len(out.getvalue())


def rows_by_codec(stdout: str) -> dict[str, dict]:
    doc = json.loads(stdout)
    return {r["codec"]: r for r in doc["results"]}


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    p = tmp_path / "t.txt"
    p.write_bytes(TEXT)
    return p


def test_json_sizes_match_reference_settings(text_file: Path) -> None:
    r = invoke("--no-lm", "--json", str(text_file))
    assert r.exit_code == 0, r.stderr
    rows = rows_by_codec(r.stdout)
    expected = {"lmzip-nolm", "gzip", "bzip2", "xz", "zstd"} | ({"brotli"} if bench._brotli_available() else set())
    assert set(rows) == expected
    data = TEXT
    assert abs(rows["gzip"]["compressed_bytes"] - len(gzip.compress(data, 9))) <= 4
    assert rows["gzip"]["compressed_bytes"] == len(gzip.compress(data, 9, mtime=0))
    assert rows["bzip2"]["compressed_bytes"] == len(bz2.compress(data, 9))
    assert rows["xz"]["compressed_bytes"] == len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    zc = zstandard.ZstdCompressor(level=19, write_checksum=True)  # as the zstd CLI
    assert rows["zstd"]["compressed_bytes"] == len(zc.compress(data))
    assert rows["lmzip-nolm"]["compressed_bytes"] == pipeline_size(data, use_lm=False)
    for row in rows.values():
        assert row["file"] == str(text_file)
        assert row["original_bytes"] == len(data)
        assert row["roundtrip_ok"] is True
        assert row["bpb"] == pytest.approx(8 * row["compressed_bytes"] / len(data), abs=1e-4)
        assert row["compress_s"] >= 0 and row["decompress_s"] >= 0
    assert rows["lmzip-nolm"]["ideal_bytes"] is None  # no model, no cross-entropy
    assert rows["lmzip-nolm"]["payload_bytes"] <= rows["lmzip-nolm"]["compressed_bytes"]


def test_lmzip_row_is_what_lmzip_c_writes(text_file: Path) -> None:
    written = CliRunner().invoke(cli, ["-c", "--no-lm", "--chunk-size", "1K", str(text_file)]).stdout_bytes
    r = invoke("--no-lm", "--json", "--chunk-size", "1K", "--codecs", "lmzip", str(text_file))
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)["results"]
    assert row["compressed_bytes"] == len(written) == pipeline_size(TEXT, use_lm=False, chunk_size=1024)
    assert sum(row["chunks"].values()) == -(-len(TEXT) // 1024)


def test_csv(text_file: Path) -> None:
    r = invoke("--no-lm", "--csv", "--codecs", "gzip,xz", str(text_file))
    assert r.exit_code == 0, r.stderr
    table = list(csv.reader(io.StringIO(r.stdout)))
    assert tuple(table[0]) == bench.FIELDS
    rows = [dict(zip(table[0], line, strict=True)) for line in table[1:]]
    assert [x["codec"] for x in rows] == ["gzip", "xz"]
    assert all(x["roundtrip_ok"] == "true" for x in rows)
    assert int(rows[0]["compressed_bytes"]) == len(gzip.compress(TEXT, 9, mtime=0))


def test_table_on_terminal_default(text_file: Path) -> None:
    r = invoke("--no-lm", "--codecs", "lmzip,gzip", str(text_file))
    assert r.exit_code == 0, r.stderr
    assert "gzip -9" in r.stdout and "lmzip --no-lm" in r.stdout and "ok" in r.stdout


def test_missing_file_one_line_exit_1(text_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    r = invoke("--no-lm", "--json", "--codecs", "gzip", str(missing), str(text_file))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lmzip: {missing}:"), r.stderr
    assert "Traceback" not in r.stderr
    (row,) = json.loads(r.stdout)["results"]  # the other file is still benched
    assert row["file"] == str(text_file)


def test_bad_codec_and_options(text_file: Path) -> None:
    r = invoke("--no-lm", "--codecs", "gzip,nope", str(text_file))
    assert r.exit_code == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr
    assert invoke("--json", "--csv", "--no-lm", str(text_file)).exit_code != 0
    assert invoke().exit_code != 0  # FILE is required


def test_directory_is_an_error(tmp_path: Path) -> None:
    r = invoke("--no-lm", "--codecs", "gzip", str(tmp_path))
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1


def test_no_torch_import_without_lm(text_file: Path) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from lmzip.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['bench', '--no-lm', '--json', {str(text_file)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------- ideal size, with a fake LM codec


@dataclass
class FakeIdentity:
    name: str = "fake"
    model_hash: bytes = b"\x01" * 32
    tokenizer_hash: bytes = b"\x02" * 32


class FakeEngine:
    """One token per byte, every token coded with frequency 2**20 (4 bits)."""

    def score(self, sequences):
        return [(np.zeros(len(s), np.int64), np.full(len(s), 1 << 20, np.int64)) for s in sequences]


class FakeLMCodec:
    """Shaped like lmzip.lm_codec.LMCodec: scores through self.engine; chunks holding a
    NUL byte are "not tokenizable" (None). Payloads are 2-byte ids into a table."""

    numerics_version = 1
    context_window = 64

    def __init__(self) -> None:
        self.engine = FakeEngine()
        self.identity = FakeIdentity()
        self.table: list[bytes] = []

    def encode_chunks(self, chunks):
        todo = [c for c in chunks if b"\0" not in c]
        scored = iter(self.engine.score([list(c) for c in todo]))
        out = []
        for c in chunks:
            if b"\0" in c:
                out.append(None)
                continue
            _, freqs = next(scored)
            self.table.append(c)
            out.append(((len(self.table) - 1).to_bytes(2, "big"), len(freqs)))
        return out

    def decode_chunks(self, items):
        return [self.table[int.from_bytes(p, "big")] for p, _ in items]


class FakeSession(bench.LmSession):
    def __init__(self, opts: bench.BenchOptions) -> None:
        super().__init__(opts)
        self.codec = bench.MeasuredCodec(FakeLMCodec())
        self.load_s = 0.0


def test_ideal_bytes_from_engine_frequencies() -> None:
    rng = np.random.default_rng(1)
    binary = b"\0" + rng.integers(0, 256, 1023, dtype=np.uint8).tobytes()  # not "tokenizable"
    data = TEXT[:2048] + binary + TEXT[2048:3072]
    opts = bench.BenchOptions(codecs=["lmzip"], chunk_size=1024)
    session = FakeSession(opts)
    res = bench.bench_lmzip(data, "x", opts, session)
    assert res.roundtrip_ok
    assert res.chunks == {"lm": 3, "stored": 1}
    # 3 lm chunks of 1024 tokens at 4 bits each, plus the stored chunk's payload
    assert res.ideal_bytes == pytest.approx(3 * 512 + 1024)
    assert res.payload_bytes == 3 * 2 + 1024
    assert res.coder_bytes is not None and sum(res.coder_bytes.values()) == res.compressed_bytes
    assert res.coder_bytes["model"] == 3 * 2 and res.coder_bytes["stored"] == 1024
    archive = bench.lmzip_archive(data, opts, lambda _o: session.codec)
    assert res.compressed_bytes == len(archive)
    # A second file through the same (cached) codec starts afresh.
    res2 = bench.bench_lmzip(TEXT[:1000], "y", opts, session)
    assert res2.ideal_bytes == pytest.approx(500)


def test_ideal_unknown_when_scores_do_not_match() -> None:
    codec = FakeLMCodec()
    measured = bench.MeasuredCodec(codec)
    codec.engine.score([[1, 2, 3]])  # a stray score call outside encode_chunks is ignored
    measured.reset()
    codec.encode_chunks = lambda chunks: [(b"x", 5) for _ in chunks]  # never scores
    measured.encode_chunks([b"abcde"])
    assert not measured.ideal_ok


# ---------------------------------------------------------------- with the real model


@pytest.mark.requires_model
def test_bench_with_default_model(tmp_path: Path) -> None:
    text = (
        b"Alice was beginning to get very tired of sitting by her sister on the bank, and of "
        b"having nothing to do: once or twice she had peeped into the book her sister was "
        b"reading, but it had no pictures or conversations in it, 'and what is the use of a "
        b"book,' thought Alice 'without pictures or conversations?'\n"
    )
    assert 250 <= len(text) <= 350
    p = tmp_path / "a.txt"
    p.write_bytes(text)
    r = invoke("--json", "--threads", "2", "--codecs", "lmzip,gzip", str(p))
    assert r.exit_code == 0, r.stderr
    rows = rows_by_codec(r.stdout)
    lm = rows["lmzip"]
    assert lm["roundtrip_ok"] is True and rows["gzip"]["roundtrip_ok"] is True
    assert lm["chunks"] == {"lm": 1}
    assert lm["ideal_bytes"] is not None
    assert 0 < lm["ideal_bytes"] <= lm["payload_bytes"] <= lm["compressed_bytes"]
    # The range coder stays within a few bytes of the model's cross-entropy.
    assert lm["payload_bytes"] - lm["ideal_bytes"] < 4
    assert lm["compressed_bytes"] == pipeline_size(text, threads=2)
