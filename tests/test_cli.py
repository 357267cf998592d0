"""gzip-style behaviour of the CLI, run without the model (`--no-lm`)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lmzip import fileio
from lmzip import files as files_module
from lmzip.cli import cli, parse_size

TEXT = b"The quick brown fox jumps over the lazy dog.\n" * 400
NO_LM = "--no-lm"


def invoke(*args: str, input: bytes | None = None):  # noqa: A002 - click's name
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run_lmzip(
    *args: str,
    cwd: Path,
    input: bytes | None = None,
    stdout=subprocess.PIPE,  # noqa: A002
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "lmzip.cli", *args],
        cwd=cwd,
        input=input,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=120,
    )


def listing(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def assert_one_error_line(stderr: str, prefix: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(prefix), stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_bytes(TEXT)
    os.chmod(tmp_path / "a.txt", 0o640)
    os.utime(tmp_path / "a.txt", (1_600_000_000, 1_600_000_000))
    return tmp_path


def test_parse_size() -> None:
    assert parse_size("16384") == 16384
    assert parse_size("64K") == 65536
    assert parse_size("1M") == 1 << 20
    assert parse_size("1MiB") == 1 << 20
    for bad in ("", "x", "0", "-1K", "1Q"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_compress_replaces_then_decompress_restores(work: Path) -> None:
    r = invoke(NO_LM, "a.txt")
    assert r.exit_code == 0, r.output
    assert listing(work) == {"a.txt.lmz"}
    st = (work / "a.txt.lmz").stat()
    assert st.st_mode & 0o777 == 0o640  # mode and mtime copied like gzip
    assert int(st.st_mtime) == 1_600_000_000

    r = invoke("-d", "a.txt.lmz")
    assert r.exit_code == 0, r.output
    assert listing(work) == {"a.txt"}
    assert (work / "a.txt").read_bytes() == TEXT


def test_subcommands_and_keep(work: Path) -> None:
    assert invoke("compress", NO_LM, "-k", "a.txt").exit_code == 0
    assert listing(work) == {"a.txt", "a.txt.lmz"}
    (work / "a.txt").rename(work / "orig")
    assert invoke("decompress", "-k", "a.txt.lmz").exit_code == 0
    assert listing(work) == {"orig", "a.txt", "a.txt.lmz"}
    assert (work / "a.txt").read_bytes() == TEXT


def test_verbose_line(work: Path) -> None:
    r = invoke(NO_LM, "-v", "-k", "a.txt")
    assert r.exit_code == 0
    assert "a.txt:" in r.stderr and "% -- created a.txt.lmz" in r.stderr


def test_refuses_to_overwrite_without_force(work: Path) -> None:
    (work / "a.txt.lmz").write_bytes(b"precious")
    r = invoke(NO_LM, "a.txt")
    assert r.exit_code == 2
    assert "a.txt.lmz already exists; not overwritten" in r.stderr
    assert (work / "a.txt.lmz").read_bytes() == b"precious"
    assert listing(work) == {"a.txt", "a.txt.lmz"}  # input kept, no temp left

    r = invoke(NO_LM, "-f", "a.txt")
    assert r.exit_code == 0, r.output
    assert listing(work) == {"a.txt.lmz"}
    assert invoke("-dc", "a.txt.lmz").stdout_bytes == TEXT


def test_stdout_keeps_input(work: Path) -> None:
    r = invoke(NO_LM, "-c", "a.txt")
    assert r.exit_code == 0
    assert listing(work) == {"a.txt"}
    back = invoke("-d", input=r.stdout_bytes)
    assert back.exit_code == 0 and back.stdout_bytes == TEXT


def test_stdin_to_stdout_pipe(work: Path) -> None:
    comp = run_lmzip(NO_LM, cwd=work, input=TEXT)
    assert comp.returncode == 0, comp.stderr
    dec = run_lmzip("-d", cwd=work, input=comp.stdout)
    assert dec.returncode == 0 and dec.stdout == TEXT
    dash = run_lmzip("-d", "-", cwd=work, input=comp.stdout)
    assert dash.stdout == TEXT


def test_refuses_compressed_data_to_terminal(work: Path) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        p = run_lmzip(NO_LM, "-c", "a.txt", cwd=work, stdout=slave)
        assert p.returncode == 1
        assert b"compressed data not written to a terminal. Use -f to force" in p.stderr
        # -f allows it; drain the pty so a small archive cannot block on it.
        small = work / "s"
        small.write_bytes(b"hi\n")
        p = run_lmzip(NO_LM, "-cf", "s", cwd=work, stdout=slave)
        assert p.returncode == 0, p.stderr
        assert os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)


def test_decompress_unknown_suffix(work: Path) -> None:
    r = invoke("-d", "a.txt")
    assert r.exit_code == 2
    assert "a.txt: unknown suffix -- ignored" in r.stderr
    assert listing(work) == {"a.txt"}


def test_decompress_finds_suffixed_file(work: Path) -> None:
    assert invoke(NO_LM, "a.txt").exit_code == 0
    r = invoke("-d", "a.txt")  # gzip -d foo uses foo.gz when foo does not exist
    assert r.exit_code == 0, r.output
    assert listing(work) == {"a.txt"}


def test_compress_skips_lmz_input(work: Path) -> None:
    (work / "x.lmz").write_bytes(b"whatever")
    r = invoke(NO_LM, "x.lmz")
    assert r.exit_code == 2
    assert "x.lmz already has .lmz suffix -- unchanged" in r.stderr
    assert (work / "x.lmz").read_bytes() == b"whatever"


def test_directory_is_ignored(work: Path) -> None:
    (work / "d").mkdir()
    r = invoke(NO_LM, "d")
    assert r.exit_code == 2 and "d is a directory -- ignored" in r.stderr


def test_multiple_files_continue_after_error(work: Path) -> None:
    (work / "b.txt").write_bytes(b"bee" * 100)
    r = invoke(NO_LM, "a.txt", "missing", "b.txt")
    assert r.exit_code == 1
    assert "lmzip: missing: No such file or directory" in r.stderr
    assert listing(work) == {"a.txt.lmz", "b.txt.lmz"}


def test_warning_only_gives_exit_2(work: Path) -> None:
    (work / "x.lmz").write_bytes(b"")
    r = invoke(NO_LM, "x.lmz", "a.txt")
    assert r.exit_code == 2
    assert "a.txt.lmz" in listing(work)


def test_quiet_silences_warnings_not_status(work: Path) -> None:
    r = invoke("-d", "-q", "a.txt")
    assert r.exit_code == 2 and r.stderr == ""


def test_test_and_list(work: Path) -> None:
    assert invoke(NO_LM, "-k", "a.txt").exit_code == 0
    before = listing(work)
    r = invoke("-t", "-v", "a.txt.lmz")
    assert r.exit_code == 0 and "OK" in r.stderr
    assert invoke("test", "a.txt.lmz").exit_code == 0
    assert listing(work) == before

    r = invoke("-l", "a.txt.lmz")
    assert r.exit_code == 0
    header, row = r.stdout.splitlines()
    assert header.split() == ["compressed", "uncompressed", "ratio", "uncompressed_name"]
    compressed, original, _ratio, name = row.split()
    assert int(compressed) == (work / "a.txt.lmz").stat().st_size
    assert int(original) == len(TEXT) and name == "a.txt"


def test_list_totals(work: Path) -> None:
    (work / "b.txt").write_bytes(b"bee" * 100)
    assert invoke(NO_LM, "a.txt", "b.txt").exit_code == 0
    r = invoke("-l", "a.txt.lmz", "b.txt.lmz")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[-1].endswith("(totals)")


def test_info_json(work: Path) -> None:
    assert invoke(NO_LM, "a.txt").exit_code == 0
    r = invoke("info", "--json", "a.txt.lmz")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["compressed_size"] == (work / "a.txt.lmz").stat().st_size
    assert data["original_size"] == len(TEXT)
    assert data["header"]["chunk_size"] == 9000 and data["model"] is None  # 18000 B in two even chunks
    assert data["codec_counts"]["lm"] == 0 and len(data["chunks"]) == 2  # 18000 B, 16K chunks
    assert data["chunks"][0]["codec"] in ("zstd", "stored")
    assert [r["chunk_count"] for r in data["records"]] == [2]  # one record holds both chunks
    human = invoke("info", "a.txt.lmz")
    assert human.exit_code == 0 and human.stdout.startswith("a.txt.lmz:")


def test_subcommand_name_as_file(work: Path) -> None:
    (work / "info").write_bytes(b"not a subcommand")
    r = invoke(NO_LM, "./info")
    assert r.exit_code == 0, r.output
    assert listing(work) >= {"info.lmz"}


def test_name_option_restores_name_and_mtime(work: Path) -> None:
    assert invoke(NO_LM, "-N", "a.txt").exit_code == 0
    (work / "a.txt.lmz").rename(work / "renamed.lmz")
    os.utime(work / "renamed.lmz", (1_700_000_000, 1_700_000_000))
    r = invoke("-dN", "renamed.lmz")
    assert r.exit_code == 0, r.output
    assert listing(work) == {"a.txt"}
    assert int((work / "a.txt").stat().st_mtime) == 1_600_000_000


def test_usage_error_exits_1(work: Path) -> None:
    p = run_lmzip("--no-such-option", cwd=work)
    assert p.returncode == 1
    assert b"Traceback" not in p.stderr


def test_help_lists_subcommands(work: Path) -> None:
    r = invoke("--help")
    assert r.exit_code == 0
    assert "info FILE" in r.stdout and "--decompress" in r.stdout
    assert r.stdout.startswith("Usage: lmzip [OPTIONS] [FILE]...") and "_gzip" not in r.stdout


def test_disk_full(work: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with open("/dev/full", "wb") as full:
        p = run_lmzip(NO_LM, "-c", "a.txt", cwd=work, stdout=full)
    assert p.returncode == 1
    assert_one_error_line(p.stderr.decode(), "lmzip: ")
    assert b"No space left on device" in p.stderr
    assert listing(work) == {"a.txt"}


def test_permission_denied(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: tests may run as root, which file modes do not stop.
    real_open = open

    def deny(path, *args, **kw):  # type: ignore[no-untyped-def]
        if os.fspath(path).endswith("a.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(files_module, "open", deny, raising=False)
    r = invoke(NO_LM, "a.txt")
    assert r.exit_code == 1
    assert_one_error_line(r.stderr, "lmzip: a.txt: Permission denied")
    assert listing(work) == {"a.txt"} and (work / "a.txt").read_bytes() == TEXT


def test_unwritable_directory(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(*args, **kw):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied", kw.get("dir"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", deny)
    r = invoke(NO_LM, "a.txt")
    assert r.exit_code == 1
    assert_one_error_line(r.stderr, "lmzip: ")
    assert r.stderr.rstrip().endswith(": Permission denied")
    assert listing(work) == {"a.txt"} and (work / "a.txt").read_bytes() == TEXT


class _FullDisk:
    """A file whose writes fail with ENOSPC after `room` bytes, as on a full disk."""

    def __init__(self, f, room: int) -> None:  # type: ignore[no-untyped-def]
        self.f, self.room = f, room

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.f, name)


@pytest.mark.parametrize("mode", ["compress", "decompress"])
def test_disk_full_with_a_file_target(work: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    if mode == "decompress":
        assert invoke(NO_LM, "a.txt").exit_code == 0
        src, target = "a.txt.lmz", "a.txt"
    else:
        src, target = "a.txt", "a.txt.lmz"
    before = (work / src).read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode), 50))
    r = invoke(*([NO_LM] if mode == "compress" else ["-d"]), src)
    assert r.exit_code == 1
    assert_one_error_line(r.stderr, "lmzip: ")
    assert "No space left on device" in r.stderr
    assert listing(work) == {src}  # input kept, no output, no temp file
    assert (work / src).read_bytes() == before and not (work / target).exists()


def test_light_commands_do_not_import_torch(work: Path) -> None:
    assert invoke(NO_LM, "-k", "a.txt").exit_code == 0
    heavy = ("torch", "transformers", "lmzip.engine", "lmzip.lm_codec")
    probe = (
        "import sys\n"
        "from lmzip.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"bad = [m for m in {heavy!r} if m in sys.modules]\n"
        "print('HEAVY', bad, file=sys.stderr)\n"
    )
    for args in (
        ["--help"],
        ["info", "a.txt.lmz"],
        ["-l", "a.txt.lmz"],
        ["-t", "a.txt.lmz"],
        [NO_LM, "-c", "a.txt"],
    ):
        p = subprocess.run([sys.executable, "-c", probe, *args], cwd=work, capture_output=True, timeout=60)
        assert b"HEAVY []" in p.stderr, (args, p.stderr.decode())


def test_decompress_refuses_overwrite(work: Path) -> None:
    assert invoke(NO_LM, "-k", "a.txt").exit_code == 0
    (work / "a.txt").write_bytes(b"newer")
    r = invoke("-d", "a.txt.lmz")
    assert r.exit_code == 2 and "a.txt already exists; not overwritten" in r.stderr
    assert (work / "a.txt").read_bytes() == b"newer" and (work / "a.txt.lmz").exists()
    assert invoke("-df", "a.txt.lmz").exit_code == 0
    assert (work / "a.txt").read_bytes() == TEXT and listing(work) == {"a.txt"}


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmzip.files import progress_bar

    with progress_bar(100, "x", enabled=True) as prog:
        assert prog is None  # stderr is not a terminal under pytest
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar(100, "x", enabled=False) as prog:
        assert prog is None  # -q
    with progress_bar(None, "x", enabled=True) as prog:
        assert prog is None  # size unknown (pipe)
    with progress_bar(100, "x", enabled=True) as prog:
        assert prog is not None
        prog(60)
        prog(40)
