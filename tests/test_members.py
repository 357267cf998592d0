"""Concatenated archives are one stream, as gzip members are (docs/FORMAT.md "Concatenated
archives"); anything else after an archive is an error. And `--device` names a device
torch can use, or the CLI says so in one line before any model loads."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from fake_lm import FakeLM, factory, text

from lmzip import cli
from lmzip.errors import FormatError, LmzipError
from lmzip.pipeline import (
    CompressOptions,
    DecompressOptions,
    compress_stream,
    decompress_stream,
    read_archive_info,
    read_archive_infos,
)

A = b"first file\n" * 50
B = bytes(range(256)) * 40 + b"second\n"


def run(*args: str, cwd: Path, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:  # noqa: A002
    return subprocess.run(
        [sys.executable, "-m", "lmzip.cli", *args], cwd=cwd, input=input, capture_output=True, timeout=120
    )


def one_error_line(stderr: bytes, prefix: str) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    assert "Traceback" not in lines[0] and "internal error" not in lines[0]
    return lines[0]


@pytest.fixture
def two(tmp_path: Path) -> Path:
    (tmp_path / "a").write_bytes(A)
    (tmp_path / "b").write_bytes(B)
    for name in ("a", "b"):
        assert run("--no-lm", "-k", "-N", "--chunk-size", "1K", name, cwd=tmp_path).returncode == 0
    return tmp_path


def test_cat_of_two_archives_decompresses_to_both(two: Path) -> None:
    ab = (two / "a.lmz").read_bytes() + (two / "b.lmz").read_bytes()
    p = run("-d", cwd=two, input=ab)
    assert p.returncode == 0 and p.stdout == A + B, p.stderr
    (two / "ab.lmz").write_bytes(ab)
    p = run("-d", "-c", "ab.lmz", cwd=two)
    assert p.returncode == 0 and p.stdout == A + B
    assert run("-t", "ab.lmz", cwd=two).returncode == 0
    assert run("-d", "ab.lmz", cwd=two).returncode == 0
    assert (two / "ab").read_bytes() == A + B and not (two / "ab.lmz").exists()


def test_cli_writes_several_files_to_stdout_as_one_stream(two: Path) -> None:
    p = run("--no-lm", "-c", "a", "b", cwd=two)
    assert p.returncode == 0
    back = run("-d", cwd=two, input=p.stdout)
    assert back.returncode == 0 and back.stdout == A + B


def test_list_sums_the_members(two: Path) -> None:
    a, b = (two / "a.lmz").read_bytes(), (two / "b.lmz").read_bytes()
    (two / "ab.lmz").write_bytes(a + b)
    p = run("-l", "ab.lmz", cwd=two)
    assert p.returncode == 0, p.stderr
    header, row = p.stdout.decode().splitlines()
    assert row.split()[:2] == [str(len(a) + len(b)), str(len(A) + len(B))] and row.endswith(" ab")
    p = run("-l", cwd=two, input=a + b)  # from a pipe too
    assert p.stdout.decode().splitlines()[1].split()[:2] == [str(len(a) + len(b)), str(len(A) + len(B))]


def test_info_and_name_come_from_the_first_member(two: Path) -> None:
    a, b = (two / "a.lmz").read_bytes(), (two / "b.lmz").read_bytes()
    info = read_archive_info(io.BytesIO(a + b))
    assert info.name == "a" and info.original_size == len(A) and info.compressed_size == len(a)
    infos = read_archive_infos(io.BytesIO(a + b))
    got = [(i.name, i.original_size, i.compressed_size) for i in infos]
    assert got == [("a", len(A), len(a)), ("b", len(B), len(b))]
    (two / "x.lmz").write_bytes(a + b)
    (two / "a").unlink()
    assert run("-d", "-N", "x.lmz", cwd=two).returncode == 0  # -N: the first member's name, like gzip
    assert (two / "a").read_bytes() == A + B


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"\0", "trailing garbage after archive"),
        (b"garbage", "trailing garbage after archive"),
        (b"LMZ\0", "truncated archive: header cut short"),
        (b"LMZ\0\x07\0", "unsupported format version 7"),
    ],
)
@pytest.mark.parametrize("mode", ["-d", "-t", "-l"])
def test_trailing_bytes_are_an_error(two: Path, tail: bytes, message: str, mode: str) -> None:
    a = (two / "a.lmz").read_bytes()
    (two / "t.lmz").write_bytes(a + tail)
    p = run(mode, "t.lmz", cwd=two)
    assert p.returncode == 1
    assert message in one_error_line(p.stderr, "lmzip: t.lmz: ")
    assert not (two / "t").exists()  # nothing half-written
    if mode == "-d":
        p = run(mode, cwd=two, input=a + tail)  # on a pipe as well
        assert p.returncode == 1 and message in one_error_line(p.stderr, "lmzip: stdin: ")


def test_second_member_damage_is_reported(two: Path) -> None:
    a, b = (two / "a.lmz").read_bytes(), (two / "b.lmz").read_bytes()
    for bad in (b[:-1], b[:10], b[:20] + bytes([b[20] ^ 1]) + b[21:]):
        with pytest.raises(LmzipError):
            decompress_stream(io.BytesIO(a + bad), io.BytesIO(), DecompressOptions())
    with pytest.raises(FormatError, match="not an lmzip file"):  # an empty stream is no archive
        decompress_stream(io.BytesIO(b""), io.BytesIO(), DecompressOptions())


def test_members_share_one_loaded_model() -> None:
    lm = FakeLM()
    loads = []

    def load(options: object) -> FakeLM:
        loads.append(options)
        return lm

    parts = [text(3000, seed) for seed in range(3)]
    blob = b""
    for p in parts:
        out = io.BytesIO()
        compress_stream(io.BytesIO(p), out, CompressOptions(chunk_size=512, codec_factory=factory(FakeLM())))
        blob += out.getvalue()
    out = io.BytesIO()
    stats = decompress_stream(io.BytesIO(blob), out, DecompressOptions(codec_factory=load))
    assert out.getvalue() == b"".join(parts)
    assert len(loads) == 1 and stats.compressed_bytes == len(blob) and stats.chunks["lm"] > 0


# ---------------------------------------------------------------- --device


def test_device_without_cuda_is_one_line_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    from lmzip import lm_codec

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_load(*a: object, **k: object) -> None:
        raise AssertionError("the model must not load")

    monkeypatch.setattr(lm_codec, "load_model", no_load)
    (tmp_path / "f").write_bytes(A)
    monkeypatch.chdir(tmp_path)
    status = cli.run(["f"], cli.Settings(device="cuda", keep=True))
    err = capsys.readouterr().err
    assert status == 1
    line = err.strip()
    assert line.startswith("lmzip: f: --device cuda: CUDA is not available") and "\n" not in line, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize(("device", "message"), [("nonsense", "unknown device"), ("xpu:3", "torch cannot use it")])
def test_devices_torch_cannot_use(device: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from lmzip import lm_codec

    if device.startswith("xpu") and getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    monkeypatch.setattr(lm_codec, "load_model", lambda *a, **k: pytest.fail("the model must not load"))
    with pytest.raises(LmzipError, match=message) as e:
        lm_codec.load_lm_codec(device=device)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
