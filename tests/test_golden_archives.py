"""Golden archives: what this build wrote with the default model, read back through the CLI.

tests/golden/archives/ holds small originals, their .lmz archives and MANIFEST.json (the
options each was made with); scripts/make_golden_archives.py regenerates them on purpose.
A failure here after a NUMERICS_VERSION or format version bump is expected: regenerate.
Otherwise it means archives written by earlier builds no longer decode, or the writer no
longer produces the same bytes.

tests/golden/archives/v2/, v3/ and v4/ hold the format version 2, 3 and 4 archives of the
same originals (each with its own MANIFEST.json): they must keep decoding (they are never
written again). Version 3 names the default model by its hashes, version 4 by its number;
version 5 frames the same records without an index. tests/golden/archives/numerics6/
holds format version 5 archives whose file-wide memory is numerics v6, as lmzip wrote
them before numerics v7: they must keep decoding too.

Every CLI call passes `--threads 1`: thread count must not change any byte (the archives
were made with the default thread count), and one thread is much faster on a busy machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from lmzip.container import VERSION, ArchiveReader
from lmzip.pipeline import read_archive_info

GOLDEN = Path(__file__).resolve().parent / "golden" / "archives"
MANIFEST = json.loads((GOLDEN / "MANIFEST.json").read_text())
ARCHIVES: dict[str, dict] = MANIFEST["archives"]
OLD_MANIFESTS = {v: json.loads((GOLDEN / f"v{v}" / "MANIFEST.json").read_text()) for v in (2, 3, 4)}
NUMERICS6 = json.loads((GOLDEN / "numerics6" / "MANIFEST.json").read_text())
ENGINE = ("--threads", "1")
REGENERATE = "regenerate with scripts/make_golden_archives.py"


def lmzip(*args: str, cwd: Path, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:  # noqa: A002
    return subprocess.run(
        [sys.executable, "-m", "lmzip.cli", *ENGINE, *args], cwd=cwd, input=input, capture_output=True, timeout=600
    )


def needs_model(when: bool) -> list[pytest.MarkDecorator]:
    return [pytest.mark.requires_model] if when else []


# Decoding needs the model only when the archive has lm records; compressing needs it for
# any non-empty input (the LM scores every chunk unless --no-lm).
DECODE = [pytest.param(n, id=n, marks=needs_model(e["model"] is not None)) for n, e in ARCHIVES.items()]
DECODE_OLD = [
    pytest.param(v, n, id=f"v{v}-{n}", marks=needs_model(e["model"] is not None))
    for v, m in OLD_MANIFESTS.items()
    for n, e in m["archives"].items()
]
ENCODE = [pytest.param(n, id=n, marks=needs_model(e["original_size"] > 0)) for n, e in ARCHIVES.items()]
WITH_MODEL = [n for n, e in ARCHIVES.items() if e["model"] is not None]


def original(name: str) -> bytes:
    return (GOLDEN / ARCHIVES[name]["original"]).read_bytes()


def archive(name: str) -> bytes:
    return (GOLDEN / ARCHIVES[name]["archive"]).read_bytes()


def assert_one_error_line(stderr: bytes, file: str) -> str:
    text = stderr.decode()
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith(f"lmzip: {file}: "), text
    assert "Traceback" not in text and "internal error" not in text, text
    return lines[0]


# ---------------------------------------------------------------- the fixtures themselves (no model)


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_fixture_files_match_manifest(name: str) -> None:
    entry = ARCHIVES[name]
    assert hashlib.sha256(original(name)).hexdigest() == entry["original_sha256"], f"{name}: original changed"
    assert hashlib.sha256(archive(name)).hexdigest() == entry["archive_sha256"], f"{name}: archive changed"
    info = read_archive_info(io.BytesIO(archive(name)))
    assert {k: v for k, v in info.codec_counts.items() if v} == entry["codec_counts"]
    assert info.original_size == entry["original_size"]


def archive_numerics(name: str) -> int:
    """The numerics version lmzip writes for this fixture: v4 with --memory-block 0, else v5."""
    from lmzip.engine.numerics import NUMERICS_VERSION
    from lmzip.lm_codec import NUMERICS_MEMORY

    args = ARCHIVES[name]["args"]
    off = "--memory-block" in args and args[args.index("--memory-block") + 1] == "0"
    return NUMERICS_VERSION if off else NUMERICS_MEMORY


def test_golden_archives_are_for_this_build() -> None:
    """Stale archives after a deliberate bump: say so once, with the fix."""
    from lmzip.engine.numerics import NUMERICS_VERSION
    from lmzip.lm_codec import NUMERICS_MEMORY

    assert MANIFEST["format_version"] == VERSION, f"format version bumped to {VERSION}: {REGENERATE}"
    assert MANIFEST["numerics_version"] == NUMERICS_VERSION, f"NUMERICS_VERSION is {NUMERICS_VERSION}: {REGENERATE}"
    assert MANIFEST.get("memory_numerics_version") == NUMERICS_MEMORY, REGENERATE
    for name in WITH_MODEL:
        info = read_archive_info(io.BytesIO(archive(name)))
        assert info.model is not None and info.model.numerics_version == archive_numerics(name), REGENERATE
    assert {archive_numerics(n) for n in WITH_MODEL} == {NUMERICS_VERSION, NUMERICS_MEMORY}  # both pinned
    # The fixtures cover what they claim: lm chunks decoded in lock step, a model-free archive, empty.
    assert ARCHIVES["prose"]["codec_counts"].get("lm", 0) >= 2
    assert ARCHIVES["code"]["codec_counts"].get("lm", 0) >= 1
    assert ARCHIVES["binary"]["model"] is None and ARCHIVES["empty"]["original_size"] == 0


# ---------------------------------------------------------------- (a) decode, (b) re-encode


def _decoded(path: Path, tmp_path: Path) -> bytes:
    """`lmzip -dc PATH`'s output, which must exit 0."""
    p = lmzip("-dc", "--", str(path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


@pytest.mark.parametrize(("version", "name"), DECODE_OLD)
def test_golden_older_archive_decodes(version: int, name: str, tmp_path: Path) -> None:
    manifest = OLD_MANIFESTS[version]
    entry = manifest["archives"][name]
    data = (GOLDEN / f"v{version}" / entry["archive"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["archive_sha256"], f"{name}: v{version} archive changed"
    assert data[4] == version and manifest["format_version"] == version
    info = read_archive_info(io.BytesIO(data))
    assert {k: v for k, v in info.codec_counts.items() if v} == entry["codec_counts"]
    if entry["model"] is not None:  # the full identity record: the hashes themselves
        assert info.model is not None and info.model.model_hash.hex() == entry["model"]["model_hash"]
        assert [r.kind for r in info.records].count("model") == 1
    out = _decoded(GOLDEN / f"v{version}" / entry["archive"], tmp_path)
    assert out == (GOLDEN / entry["original"]).read_bytes()
    assert hashlib.sha256(out).hexdigest() == entry["original_sha256"]


@pytest.mark.requires_model
@pytest.mark.parametrize("name", list(NUMERICS6["archives"]))
def test_golden_numerics6_archive_decodes(name: str, tmp_path: Path) -> None:
    """An archive of the memory's numerics v6 decodes with v6's tables, not this build's."""
    entry = NUMERICS6["archives"][name]
    path = GOLDEN / "numerics6" / entry["archive"]
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["archive_sha256"], f"{name}: numerics v6 archive changed"
    info = read_archive_info(io.BytesIO(data))
    assert data[4] == 5 and info.model is not None and info.model.numerics_version == 6
    assert data != archive(name), "the numerics v7 archive should differ"
    assert hashlib.sha256(_decoded(path, tmp_path)).hexdigest() == entry["original_sha256"]


def test_fixtures_cover_every_record_form() -> None:
    """Spans records (v3 on); the default model by number in v4, by its hashes before."""
    assert ARCHIVES["mixed"]["codec_counts"].get("spans", 0) >= 1
    assert set(OLD_MANIFESTS[2]["archives"]) == {"prose", "code", "binary", "empty"}
    assert OLD_MANIFESTS[3]["archives"]["mixed"]["codec_counts"].get("spans", 0) >= 1
    for name in WITH_MODEL:
        data = archive(name)
        (model,) = [r for r in read_archive_info(io.BytesIO(data)).records if r.kind == "model"]
        assert data[model.offset] == 5 and model.size <= 12, name  # kind 5: number 1 + settings, 6 bytes at most
    for name, entry in OLD_MANIFESTS[3]["archives"].items():
        if entry["model"] is not None:
            data = (GOLDEN / "v3" / entry["archive"]).read_bytes()
            (model,) = [r for r in read_archive_info(io.BytesIO(data)).records if r.kind == "model"]
            assert data[model.offset] == 3, name


@pytest.mark.parametrize("name", DECODE)
def test_golden_archive_decodes(name: str, tmp_path: Path) -> None:
    p = lmzip("-dc", "--", str(GOLDEN / ARCHIVES[name]["archive"]), cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == original(name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ENCODE)
def test_compressing_original_gives_golden_bytes(name: str, tmp_path: Path) -> None:
    entry = ARCHIVES[name]
    p = lmzip("-c", *entry["args"], "--", str(GOLDEN / entry["original"]), cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == archive(name), f"{name}: this build writes different bytes for the same input ({REGENERATE}?)"


# ---------------------------------------------------------------- (c) version mismatch


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the LEB128 varint at pos."""
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def with_format_version(data: bytes, version: int) -> bytes:
    """The archive with header byte 4 (format version) replaced and the header CRC fixed."""
    assert data[:4] == b"LMZ\x00" and data[4] in (2, 3, 4, VERSION) and data[5] == 0  # no name/mtime in the fixtures
    _, crc_at = _uvarint(data, 6)  # chunk size, then the header CRC
    out = bytearray(data)
    out[4] = version
    out[crc_at : crc_at + 4] = zlib.crc32(out[:crc_at]).to_bytes(4, "little")
    return bytes(out)


def with_numerics_version(data: bytes, numerics: int) -> bytes:
    """The archive with the model record's numerics version replaced and its CRC fixed
    (FORMAT.md: kind, varint B, CRC32 of the body; the body of kind 3 = 2 x 32 hash bytes,
    of kind 5 = the model number varint, then the numerics version varint). Record and
    index lengths stay the same."""
    (model,) = [r for r in read_archive_info(io.BytesIO(data)).records if r.kind == "model"]
    assert data[model.offset] in (3, 5)
    body_len, crc_at = _uvarint(data, model.offset + 1)
    body_at = crc_at + 4
    at = body_at + 64 if data[model.offset] == 3 else _uvarint(data, body_at)[1]
    old, after = _uvarint(data, at)
    assert after == at + 1 and numerics < 0x80, "one-byte varints only"
    out = bytearray(data)
    out[at] = numerics
    out[crc_at:body_at] = zlib.crc32(out[body_at : body_at + body_len]).to_bytes(4, "little")
    return bytes(out)


def _assert_structurally_valid(data: bytes) -> None:
    """Header, every record's fields and CRC-checked model body, the index: all fine, so a
    failure can only be the version check."""
    reader = ArchiveReader(io.BytesIO(data))
    for _ in reader.records():
        pass
    assert reader.crc is not None


def _decompress_fails_cleanly(data: bytes, tmp_path: Path) -> str:
    """`lmzip -d` and `lmzip -dc` on data: exit 1, one error line, nothing written or left."""
    (tmp_path / "old.txt.lmz").write_bytes(data)
    p = lmzip("-d", "old.txt.lmz", cwd=tmp_path)
    assert p.returncode == 1, p.stderr.decode()
    line = assert_one_error_line(p.stderr, "old.txt.lmz")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["old.txt.lmz"]  # no output, no temp file
    assert (tmp_path / "old.txt.lmz").read_bytes() == data
    p = lmzip("-dc", "old.txt.lmz", cwd=tmp_path)
    assert p.returncode == 1, p.stderr.decode()
    assert p.stdout == b""
    assert_one_error_line(p.stderr, "old.txt.lmz")
    return line


@pytest.mark.parametrize("version", [1, VERSION + 1], ids=lambda v: f"v{v}")
@pytest.mark.parametrize("name", list(ARCHIVES))
def test_other_format_version_refused(name: str, version: int, tmp_path: Path) -> None:
    patched = with_format_version(archive(name), version)
    line = _decompress_fails_cleanly(patched, tmp_path)
    assert f"unsupported format version {version}" in line, line


def _other_numerics(name: str) -> int:
    """A numerics version this build does not write, with the same body layout: below 5
    for v4 archives (no memory fields), above 5 for v5 ones."""
    return archive_numerics(name) + (1 if archive_numerics(name) >= 5 else -1)


def test_numerics_patch_is_only_the_version() -> None:
    """The patched archive passes every structural check (CRCs fixed up), so the test
    below fails on the version comparison and nothing else."""
    for name in WITH_MODEL:
        patched = with_numerics_version(archive(name), _other_numerics(name))
        assert patched != archive(name)
        _assert_structurally_valid(patched)
        info = read_archive_info(io.BytesIO(patched))
        assert info.model is not None and info.model.numerics_version == _other_numerics(name)


@pytest.mark.requires_model
@pytest.mark.parametrize("name", ["prose-v4", "prose"], ids=["older", "newer"])
def test_other_numerics_version_refused(name: str, tmp_path: Path) -> None:
    wanted, mine = _other_numerics(name), archive_numerics(name)
    line = _decompress_fails_cleanly(with_numerics_version(archive(name), wanted), tmp_path)
    low = line.lower()
    assert "numerics" in low and "model" in low, line
    assert f"numerics v{wanted}" in low and f"v{mine}" in low, line  # both sides named
