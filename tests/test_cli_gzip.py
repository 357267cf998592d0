"""gzip's remaining habits: levels (-1..-9, --fast, --best), -r, -S, tar -I, shell completion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lmzip import defaults
from lmzip.cli import cli
from lmzip.pipeline import EVEN_CHUNKS_MAX

LMZIP = str(Path(sys.executable).parent / "lmzip")  # the console script of this environment
TEXT = b"The quick brown fox jumps over the lazy dog.\n" * 50


def invoke(*args: str, input: bytes | None = None):  # noqa: A002 - click's name
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """path -> (content, mode, mtime) of every file below root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (p.read_bytes(), st.st_mode & 0o7777, int(st.st_mtime))
    return out


def make_tree(root: Path, text: bytes = TEXT) -> None:
    for i, rel in enumerate(["a.txt", "sub/b.bin", "sub/deeper/c.txt", "sub/empty", "z/d.txt"]):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text * i + os.urandom(i * 10))
        os.chmod(p, 0o600 + i)
        os.utime(p, (1_600_000_000 + i, 1_600_000_000 + i))


def header(path: Path) -> dict:
    return json.loads(invoke("info", "--json", str(path)).stdout)["header"]


def test_levels_set_the_chunk_size(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(TEXT)
    for flags, level in ((["-1"], 1), (["--fast"], 1), (["-9", "--no-lm"], 9), (["--best", "--no-lm"], 9)):
        r = invoke(*flags, "-k", "-f", str(src))
        assert r.exit_code == 0, r.output
        assert header(tmp_path / "a.txt.lmz")["chunk_size"] == defaults.LEVELS[level].chunk_size, flags
    r = invoke("-9", "-1", "--chunk-size", "2K", "-k", "-f", str(src))  # the last level wins; explicit options win
    n = -(-len(TEXT) // 2048)  # chunks of 2K, then cut evenly where that is 2 to 8 of them
    assert r.exit_code == 0 and header(tmp_path / "a.txt.lmz")["chunk_size"] == -(-len(TEXT) // n)
    assert 2 <= n <= EVEN_CHUNKS_MAX
    assert invoke("-dc", str(tmp_path / "a.txt.lmz")).stdout_bytes == TEXT
    r = invoke("-0", str(src))
    assert r.exit_code != 0 and "No such option '-0'" in r.output


def test_recursive_round_trip_restores_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "t"
    make_tree(root)
    (root / "already.lmz").write_bytes(b"not touched by -r")
    before = tree(root)
    r = invoke("-r", "-1", str(root))
    assert r.exit_code == 0, r.output
    after = tree(root)
    assert set(after) == {k + ".lmz" for k in before if k != "already.lmz"} | {"already.lmz"}
    assert after["already.lmz"] == before["already.lmz"]
    assert after["sub/b.bin.lmz"][1:] == before["sub/b.bin"][1:]  # mode and mtime kept
    r = invoke("-l", "-r", str(root))
    assert r.exit_code == 1 and "already.lmz" in r.stderr  # -l -r looks at every .lmz: that one is bad
    os.remove(root / "already.lmz")
    r = invoke("-t", "-r", "-v", str(root))
    assert r.exit_code == 0 and r.stderr.count(" OK") == len(before) - 1
    r = invoke("-d", "-r", str(root))
    assert r.exit_code == 0, r.output
    del before["already.lmz"]
    assert tree(root) == before


def test_directory_without_r_and_walk_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path / "t")
    r = invoke("-1", str(tmp_path / "t"))
    assert r.exit_code == 2 and "is a directory -- ignored" in r.stderr
    # An unreadable directory, simulated (tests may run as root, who reads every directory):
    # os.walk lists directories through os.scandir.
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if os.fspath(path).endswith(os.sep + "sub"):  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[arg-type]
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    r = invoke("-1", "-r", str(tmp_path / "t"))
    assert r.exit_code == 1 and "Permission denied" in r.stderr
    assert (tmp_path / "t" / "a.txt.lmz").exists()  # the rest of the tree was done


def test_suffix(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(TEXT)
    assert invoke("-1", "-S", ".zz", str(src)).exit_code == 0
    assert (tmp_path / "a.txt.zz").exists() and not src.exists()
    r = invoke("-d", str(tmp_path / "a.txt.zz"))
    assert r.exit_code == 2 and "unknown suffix" in r.stderr
    assert invoke("-d", "--suffix", ".zz", str(tmp_path / "a.txt")).exit_code == 0  # finds a.txt.zz, like gzip
    assert src.read_bytes() == TEXT
    for bad in ("", "a/b"):
        r = invoke("-S", bad, str(src))
        assert r.exit_code != 0 and "invalid suffix" in r.output


def tar_round_trip(tmp_path: Path, program: str, block: list[str], text: bytes = TEXT) -> None:
    root = tmp_path / "t"
    make_tree(root, text)
    archive = tmp_path / "t.tar.lmz"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(["tar", *block, "-I", program, "-cf", str(archive), "t"], cwd=tmp_path, env=env, check=True)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", *block, "-I", program, "-xf", str(archive)], cwd=out, env=env, check=True)
    assert tree(out / "t") == tree(root)
    assert archive.read_bytes().startswith(b"LMZ\x00")


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar")
@pytest.mark.parametrize("program", ["{lmzip} -1", "{lmzip} --best --no-lm", "{lmzip} --no-lm"])
def test_tar_filter(tmp_path: Path, program: str) -> None:
    tar_round_trip(tmp_path, program.format(lmzip=LMZIP), [])


@pytest.mark.requires_model
@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar")
def test_tar_filter_level_9_with_the_model(tmp_path: Path) -> None:
    # 512-byte tar records (-b 1) and 450-byte texts keep the archive, and the model's work
    # (one 32 KiB chunk decoded on one slot), small: on a 2-vCPU CPU with AVX2 only the
    # tree of 2,250-byte texts took over two minutes.
    tar_round_trip(tmp_path, f"{LMZIP} -9 --threads 1", ["-b", "1"], TEXT[:450])


def test_bash_completion_script_and_answers(tmp_path: Path) -> None:
    env = {**os.environ, "_LMZIP_COMPLETE": "bash_source"}
    p = subprocess.run([LMZIP], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "complete -o nosort -F _lmzip_completion lmzip" in p.stdout

    def complete(words: str) -> list[str]:
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
        env = {**os.environ, "_LMZIP_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        out = subprocess.run([LMZIP], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    assert "plain,info" in complete("lmzip in") and "file,in" in complete("lmzip in")
    assert "plain,--best" in complete("lmzip --b")
    assert complete("lmzip -d ") == ["file,"]  # subcommands only as the first word
    assert "plain,--json" in complete("lmzip info --")
    zsh = subprocess.run([LMZIP], env={**os.environ, "_LMZIP_COMPLETE": "zsh_source"}, capture_output=True, text=True)
    assert "#compdef lmzip" in zsh.stdout
