"""LM round trips over the shared corpus: the start of every file, several chunks each.

Each file's first PREFIX bytes go through compress_stream with the LM codec enabled and
CHUNK-byte chunks (so lm chunks decode in lock step, and text and binary chunks mix),
then back through decompress_stream; one file also goes through the CLI as a pipe.
The corpus lives outside the repository (../shared/corpus); without it the tests skip.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from strict import missing

from lmzip.pipeline import CompressOptions, DecompressOptions, compress_stream, decompress_stream, read_archive_info

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
NOT_DATA = {"README.md", "SHA256SUMS"}
FILES = sorted(p.name for p in CORPUS.iterdir() if p.is_file() and p.name not in NOT_DATA) if CORPUS.is_dir() else []
# Files the model must win at least one chunk of.
TEXT_FILES = {"alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt", "html", "urls.10K"}
PREFIX = 1200
CHUNK = 512
BATCH = 32

pytestmark = [
    pytest.mark.requires_model,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=missing(f"../shared corpus not found at {CORPUS}")),
]


@pytest.fixture(scope="module")
def codec() -> Iterator[object]:
    """The real LM codec, loaded once for the module. One engine thread: the same integers
    as any thread count, and far faster when other work shares the CPU. torch's global
    thread count is restored afterwards."""
    import torch

    from lmzip.lm_codec import DEFAULT_MEMORY_BLOCK, load_lm_codec

    threads = torch.get_num_threads()
    try:
        yield load_lm_codec(threads=1, batch=BATCH, memory_block=DEFAULT_MEMORY_BLOCK)
    finally:
        torch.set_num_threads(threads)


def test_corpus_has_the_text_files() -> None:
    assert TEXT_FILES <= set(FILES), f"corpus at {CORPUS} lacks {sorted(TEXT_FILES - set(FILES))}"


@pytest.mark.parametrize("name", FILES)
def test_lm_round_trip(name: str, codec: object) -> None:
    data = (CORPUS / name).read_bytes()[:PREFIX]
    assert len(data) > 2 * CHUNK, "want at least three chunks"
    packed = io.BytesIO()
    opts = CompressOptions(chunk_size=CHUNK, batch=BATCH, codec_factory=lambda _o: codec)  # type: ignore[arg-type,return-value]
    stats = compress_stream(io.BytesIO(data), packed, opts)
    assert stats.original_bytes == len(data)
    assert sum(stats.chunks.values()) == -(-len(data) // CHUNK)
    if name in TEXT_FILES:
        assert stats.chunks["lm"] >= 1, f"{name}: the LM won no chunk ({stats.chunks})"

    out = io.BytesIO()
    dopts = DecompressOptions(batch=BATCH, codec_factory=lambda _o: codec)  # type: ignore[arg-type,return-value]
    dstats = decompress_stream(io.BytesIO(packed.getvalue()), out, dopts)
    assert out.getvalue() == data
    assert dstats.chunks == stats.chunks
    assert dstats.compressed_bytes == len(packed.getvalue()) == stats.compressed_bytes


def test_cli_pipe_round_trip(tmp_path: Path) -> None:
    """stdin -> stdout both ways through the real CLI (model loaded by the CLI itself)."""
    data = (CORPUS / "alice29.txt").read_bytes()[:PREFIX]
    cli = [sys.executable, "-m", "lmzip.cli", "--threads", "1"]
    p = subprocess.run([*cli, "-c", "--chunk-size", str(CHUNK)], input=data, capture_output=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    packed = p.stdout
    info = read_archive_info(io.BytesIO(packed))
    assert info.codec_counts["lm"] >= 1, info.codec_counts
    assert info.model is not None
    p = subprocess.run([*cli, "-d"], input=packed, capture_output=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == data
    assert list(tmp_path.iterdir()) == []
