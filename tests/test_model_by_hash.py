"""An archive names its model by content (hashes); its stored name is a label that lmzip
never opens, stats or converts. Runs the real loader on tiny random Llama models
(tests/tiny_models.py), each test with its own XDG_CACHE_HOME: a fresh one stands for
another machine.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from access_guard import AccessGuard
from click.testing import CliRunner
from script_modules import load_script
from tiny_models import build_tiny_model, training_text

from lmzip.cli import cli
from lmzip.container import ModelInfo
from lmzip.pipeline import read_archive_info

FUZZ = load_script("fuzz")  # scripts/fuzz.py: with_model_name, the fuzzer's hostile-name archives

# 788 bytes of the tiny models' own word salad: with near-uniform weights (std 0.01) the
# tiny model beats zstd on it, so the archive gets a model identity record.
TEXT = training_text(5, 20).encode()
ENGINE = ("--threads", "1")
HINT = "pass --model PATH"


@dataclasses.dataclass
class Models:
    a: Path  # the model archives are made with
    b: Path  # another valid model with the same tokenizer (so only the model hash differs)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("models")
    a = build_tiny_model(root / "tiny-a", seed=1, std=0.01)
    b = build_tiny_model(root / "tiny-b", seed=2, std=0.01, tokenizer_json=a / "tokenizer.json")
    return Models(a, b)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def lmzip(*args: str, cache: Path, input: bytes | None = None):  # noqa: A002 - click's name
    """The CLI in this process, with `cache` as XDG_CACHE_HOME."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        return CliRunner().invoke(cli, [*ENGINE, *args] if args[0] != "info" else list(args), input=input)


def conversions(cache: Path) -> list[str]:
    """The model hashes of every conversion in a cache."""
    root = cache / "lmzip" / "models"
    if not root.is_dir():
        return []
    return sorted(json.loads((d / "model.json").read_text())["model_hash"] for d in root.iterdir() if d.name[0] != ".")


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return lines[0]


def renamed(archive: bytes, name: str) -> bytes:
    """The archive of TEXT with its model record's name replaced (every CRC recomputed):
    what a crafted archive, or one from lmzip 0.1.0 run with --model PATH, holds."""
    return FUZZ.with_model_name(archive, TEXT, name)


@pytest.fixture(scope="module")
def made(models: Models, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """(archive of TEXT made with --model A, the cache holding A's conversion)."""
    cache = tmp_path_factory.mktemp("cache-a")
    r = lmzip("-c", "--model", str(models.a), cache=cache, input=TEXT)
    assert r.exit_code == 0, r.stderr
    info = read_archive_info(io.BytesIO(r.stdout_bytes))
    assert info.codec_counts["lm"] == 1 and info.model is not None, info
    return r.stdout_bytes, cache


def test_model_dir_archive_stores_a_label_and_decodes_after_the_dir_moves(models: Models, tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "cache-home", tmp_path / "cache-elsewhere"
    model_dir = shutil.copytree(models.a, tmp_path / "deep" / "path" / "My-Model")
    (tmp_path / "t.txt").write_bytes(TEXT)
    r = lmzip("-c", "--model", str(model_dir), cache=home, input=TEXT)
    assert r.exit_code == 0, r.stderr
    archive = tmp_path / "t.txt.lmz"
    archive.write_bytes(r.stdout_bytes)

    info = json.loads(lmzip("info", "--json", str(archive), cache=home).stdout)
    name, mhash = info["model"]["name"], info["model"]["model_hash"]
    assert name == "My-Model"  # the directory's base name: no directory parts
    assert "/" not in name and "\\" not in name and str(tmp_path) not in r.stdout_bytes.decode("latin-1")
    human = lmzip("info", str(archive), cache=home).stdout
    assert "model.name: My-Model\n" in human and f"model.model_hash: {mhash}\n" in human
    listed = lmzip("-l", "-v", str(archive), cache=home).stdout.splitlines()
    assert listed[0].split()[:2] == ["model_hash", "model"], listed
    assert listed[1].split()[:2] == [mhash[:12], "My-Model"], listed

    moved = model_dir.rename(tmp_path / "moved-away")
    # This machine: the conversion in the cache is found by hash.
    r = lmzip("-dc", str(archive), cache=home)
    assert r.exit_code == 0 and r.stdout_bytes == TEXT, r.stderr
    # Another machine (an empty cache): one line naming label and hash, and nothing converted.
    line = one_error_line(lmzip("-dc", str(archive), cache=elsewhere))
    assert line == f"lmzip: {archive}: archive needs model My-Model (hash {mhash[:12]}...): {HINT}"
    assert conversions(elsewhere) == []
    # There, --model with the model's new place decodes it, and then the cache knows it.
    r = lmzip("-dc", "--model", str(moved), str(archive), cache=elsewhere)
    assert r.exit_code == 0 and r.stdout_bytes == TEXT, r.stderr
    r = lmzip("-dc", str(archive), cache=elsewhere)
    assert r.exit_code == 0 and r.stdout_bytes == TEXT, r.stderr


def test_model_of_other_hash_is_refused_with_the_mismatch_message(models: Models, made, tmp_path: Path) -> None:
    archive, cache = made
    line = one_error_line(lmzip("-dc", "--model", str(models.b), cache=cache, input=archive))
    assert line.startswith("lmzip: stdin: archive needs model 'tiny-a' (hash "), line
    assert "loaded 'tiny-b' (hash " in line, line


def hostile_targets(models: Models, tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block: no writer ever comes
    regular = tmp_path / "model.gguf"
    regular.write_bytes(b"GGUF" + bytes(100))
    return {"dir-with-other-model": models.b, "regular-file": regular, "fifo": fifo}


@pytest.mark.parametrize("kind", ["dir-with-other-model", "regular-file", "fifo"])
@pytest.mark.parametrize("spelling", ["absolute", "relative"])
def test_stored_name_naming_an_existing_path_is_never_opened(
    models: Models, made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, spelling: str
) -> None:
    archive, cache = made
    target = hostile_targets(models, tmp_path)[kind]
    monkeypatch.chdir(target.parent)
    crafted = renamed(archive, str(target) if spelling == "absolute" else target.name)
    before = conversions(cache)
    with AccessGuard(forbid=[target]) as guard:
        # The machine that has the archive's model: decoded by hash.
        r = lmzip("-dc", cache=cache, input=crafted)
        assert r.exit_code == 0 and r.stdout_bytes == TEXT, r.stderr
        # A machine that has not: refused by hash; the stored name is only quoted.
        line = one_error_line(lmzip("-dc", cache=tmp_path / "empty-cache", input=crafted))
        assert "archive needs model " in line and HINT in line, line
        # info and -l -v print the name and open nothing either.
        assert lmzip("info", "-", cache=cache, input=crafted).exit_code == 0
        assert lmzip("-l", "-v", cache=cache, input=crafted).exit_code == 0
    assert guard.violations == []
    assert conversions(cache) == before and conversions(tmp_path / "empty-cache") == []


def test_fifo_name_does_not_hang_a_real_decompression(made, tmp_path: Path) -> None:
    """The same, in a fresh process with a hard timeout: were the FIFO opened, it would hang."""
    archive, cache = made
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "f.lmz").write_bytes(renamed(archive, str(fifo)))
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lmzip.cli", *ENGINE, "-dc", "f.lmz"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert p.returncode == 0 and p.stdout == TEXT, p.stderr.decode()


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("/home/someone/models/tiny-a", "/home/someone/models/tiny-a"),  # as lmzip 0.1.0 stored --model PATH
        ("../../etc/passwd", "../../etc/passwd"),
        ("C:\\models\\x", "C:\\\\models\\\\x"),
        ("evil\x1b[2J\r\nlmzip: all good\x07", "evil\\x1b[2J\\x0d\\x0almzip: all good\\x07"),
        ("\u202eexe.txt", "\\u202eexe.txt"),
        ("x" * 255, "x" * 255),
    ],
)
def test_stored_name_is_a_label_printed_as_escaped_text(made, tmp_path: Path, name: str, shown: str) -> None:
    archive, cache = made
    crafted = renamed(archive, name)
    r = lmzip("-dc", cache=cache, input=crafted)  # old archives: their names are labels now
    assert r.exit_code == 0 and r.stdout_bytes == TEXT, r.stderr
    info = read_archive_info(io.BytesIO(crafted))
    assert info.model is not None
    mhash = info.model.model_hash.hex()
    line = one_error_line(lmzip("-dc", cache=tmp_path / "empty", input=crafted))
    assert line == f"lmzip: stdin: archive needs model {shown} (hash {mhash[:12]}...): {HINT}"
    human = lmzip("info", "-", cache=cache, input=crafted).stdout
    assert f"  model.name: {shown}\n" in human
    assert json.loads(lmzip("info", "--json", "-", cache=cache, input=crafted).stdout)["model"]["name"] == name
    listed = lmzip("-l", "-v", cache=cache, input=crafted).stdout
    assert f"{mhash[:12]} {shown}" in listed
    for out in (line, human, listed):
        assert not any(c in out for c in "\x1b\r\x07\u202e"), out


# ---------------------------------------------------------------- the index of converted models


def test_find_model_reads_only_the_cache_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmzip.engine import loader
    from lmzip.errors import ModelNotFoundError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = loader.cache_root()
    want = ModelInfo("some-model", b"\x01" * 32, b"\x02" * 32, 4, 1024)
    entry = {"name": "x", "model_hash": want.model_hash.hex(), "tokenizer_hash": want.tokenizer_hash.hex()}
    with AccessGuard(allow=[tmp_path]) as guard:
        with pytest.raises(ModelNotFoundError, match=r"^archive needs model some-model \(hash 010101010101\.\.\.\)"):
            loader.find_model(want)  # no cache at all
        for name, content in {
            ".convert-123": json.dumps(entry),  # a conversion still being written
            "broken": "{not json",
            "list": "[]",
            "other-tokenizer": json.dumps({**entry, "tokenizer_hash": "03" * 32}),
            "other-model": json.dumps({**entry, "model_hash": "04" * 32}),
        }.items():
            (root / name).mkdir(parents=True)
            (root / name / "model.json").write_text(content)
        (root / "empty").mkdir()
        with pytest.raises(ModelNotFoundError, match="pass --model PATH"):
            loader.find_model(want)
        (root / "ok").mkdir()
        (root / "ok" / "model.json").write_text(json.dumps(entry))
        assert loader.find_model(want) == root / "ok"
    assert guard.violations == []


def test_default_model_hashes_lead_to_the_default_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no conversion cached, the default model's own hashes pick the installed default
    (converted then); any other hash never converts it."""
    from lmzip.engine import loader

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    converted: list[Path] = []
    monkeypatch.setattr(loader, "_converted", lambda source: converted.append(source) or tmp_path / "x")
    monkeypatch.setattr(loader, "default_model_path", lambda: Path("/installed/default.gguf"))
    want = ModelInfo("anything", loader.DEFAULT_MODEL_HASH, loader.DEFAULT_TOKENIZER_HASH, 4, 1024)
    assert loader.find_model(want) == tmp_path / "x"
    assert converted == [Path("/installed/default.gguf")]
    with pytest.raises(loader.ModelNotFoundError):
        loader.find_model(dataclasses.replace(want, tokenizer_hash=b"\0" * 32))
    assert len(converted) == 1


@pytest.mark.requires_model
def test_default_model_identity_constants() -> None:
    """DEFAULT_MODEL_HASH / DEFAULT_TOKENIZER_HASH are what the default model converts to."""
    from lmzip.engine import loader

    ident = loader.load_model().identity
    assert (ident.model_hash, ident.tokenizer_hash) == (loader.DEFAULT_MODEL_HASH, loader.DEFAULT_TOKENIZER_HASH)
    assert ident.name == loader.DEFAULT_MODEL_NAME == "SmolLM2-135M-Instruct"


def test_access_guard_sees_opens_listings_and_stats(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with AccessGuard(forbid=[fifo, tmp_path / "d"]) as guard:
        with pytest.raises(PermissionError):
            open(fifo, "rb")  # noqa: SIM115 - refused before it could block
        with pytest.raises(PermissionError):
            os.listdir(tmp_path / "d")
        with pytest.raises(PermissionError):
            (tmp_path / "d" / "x").is_file()
        assert os.listdir(tmp_path) == ["fifo"]  # the folder above is not forbidden
    assert [v.split()[0] for v in guard.violations] == ["open", "os.listdir", "stat"]
    assert not fifo.is_file()  # the guard is gone


def test_list_verbose_without_model_and_totals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_bytes(TEXT)
        assert lmzip("--no-lm", name, cache=tmp_path).exit_code == 0
    out = lmzip("-l", "-v", "a.txt.lmz", "b.txt.lmz", cache=tmp_path).stdout.splitlines()
    assert out[0].split() == ["model_hash", "model", "compressed", "uncompressed", "ratio", "uncompressed_name"]
    assert [line.split()[:2] for line in out[1:3]] == [["-", "-"], ["-", "-"]]
    assert out[3].split()[-1] == "(totals)" and out[3].index(out[3].split()[0]) > 38  # under its columns
    plain = lmzip("-l", "a.txt.lmz", "b.txt.lmz", cache=tmp_path).stdout.splitlines()
    assert [line[38:] for line in out] == plain
