"""Bad input and interruptions: one line on stderr, exit 1 (or 128+signal), nothing left over."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmzip.fileio import AtomicOutput

TEXT = b"".join(b"line %d: lorem ipsum dolor sit amet\n" % i for i in range(3000))


def lmzip(*args: str, cwd: Path, **kw) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lmzip.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def run(*args: str, cwd: Path) -> tuple[int, bytes, str]:
    p = lmzip(*args, cwd=cwd)
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err.decode()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("src")
    (d / "t.txt").write_bytes(TEXT)
    rc, _, err = run("--no-lm", "--chunk-size", "4K", "t.txt", cwd=d)
    assert rc == 0, err
    return (d / "t.txt.lmz").read_bytes()


def _flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x55
    return bytes(b)


def damaged_variants(good: bytes) -> dict[str, bytes]:
    n = len(good)
    return {
        "empty": b"",
        "truncated_header": good[:5],
        "truncated_half": good[: n // 2],
        "truncated_tail": good[:-3],
        "flip_magic": _flip(good, 0),
        "flip_header": _flip(good, 9),
        "flip_middle": _flip(good, n // 2),
        "flip_last": _flip(good, n - 1),
        "gzip_file": gzip.compress(TEXT),
        "text_file": TEXT[:1000],
        "trailing_garbage": good + b"garbage",
    }


@pytest.mark.parametrize(
    "kind",
    list(damaged_variants(b"x" * 64)),
)
@pytest.mark.parametrize("mode", ["-d", "-t", "-l", "info"])
def test_damaged_archive(tmp_path: Path, archive: bytes, kind: str, mode: str) -> None:
    bad = damaged_variants(archive)[kind]
    (tmp_path / "t.txt.lmz").write_bytes(bad)
    args = ["info", "t.txt.lmz"] if mode == "info" else [mode, "t.txt.lmz"]
    rc, out, err = run(*args, cwd=tmp_path)
    if mode in ("-l", "info") and kind == "flip_middle":
        # Listing reads only the header and index: damage to a chunk's payload is -t's job.
        assert rc == 0 and "Traceback" not in err, err
        return
    assert rc == 1, (kind, err)  # the end magic (flip_last) included: -l and info read it
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmzip: t.txt.lmz: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    # Input kept, no output, no temp file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt.lmz"]
    assert (tmp_path / "t.txt.lmz").read_bytes() == bad
    if mode == "-d":
        assert out == b""


def test_damaged_among_good_files(tmp_path: Path, archive: bytes) -> None:
    (tmp_path / "a.lmz").write_bytes(archive)
    (tmp_path / "b.lmz").write_bytes(archive[: len(archive) // 2])
    (tmp_path / "c.lmz").write_bytes(archive)
    rc, _, err = run("-d", "a.lmz", "b.lmz", "c.lmz", cwd=tmp_path)
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("lmzip: b.lmz: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.lmz", "c"]
    assert (tmp_path / "c").read_bytes() == TEXT


def _wait_for_temp(d: Path, p: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and p.poll() is None:
        if any(n.name.endswith(".tmp") for n in d.iterdir()):
            return True
        time.sleep(0.005)
    return False


def _slow_input() -> bytes:
    """Incompressible-ish but slow: zstd -19 on 12 MB of mixed data takes seconds."""
    rng = __import__("random").Random(1)
    words = [bytes(rng.choices(b"abcdefghijklmnop", k=rng.randint(2, 9))) for _ in range(4000)]
    return b" ".join(rng.choices(words, k=1_500_000))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_input_and_no_output(tmp_path: Path, sig: signal.Signals) -> None:
    data = _slow_input()
    big = tmp_path / "big.txt"
    big.write_bytes(data)
    # The signal's default action in the child, whatever this process inherited: a test
    # run started in the background ignores SIGINT, and lmzip keeps an inherited ignore.
    p = lmzip("--no-lm", "big.txt", cwd=tmp_path, preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    started = _wait_for_temp(tmp_path, p)
    if not started:
        p.communicate(timeout=120)
        pytest.skip("compression finished before it could be interrupted")
    time.sleep(0.2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert b"Traceback" not in err
    assert sorted(n.name for n in tmp_path.iterdir()) == ["big.txt"]
    assert big.read_bytes() == data


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_inherited_ignore_is_kept(tmp_path: Path, sig: signal.Signals) -> None:
    """Started with the signal ignored (nohup, a background job), lmzip keeps ignoring it,
    as gzip does: the signal changes nothing and the output is complete."""
    data = _slow_input()
    (tmp_path / "f.txt").write_bytes(data)
    p = lmzip("--no-lm", "f.txt", cwd=tmp_path, preexec_fn=lambda: signal.signal(sig, signal.SIG_IGN))
    assert _wait_for_temp(tmp_path, p), "compression finished before the signal"
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert sorted(n.name for n in tmp_path.iterdir()) == ["f.txt.lmz"]
    assert run("-d", "-c", "f.txt.lmz", cwd=tmp_path)[1] == data


def test_atomic_output_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), AtomicOutput(target) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_no_clobber_race(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(FileExistsError), AtomicOutput(target) as f:
        f.write(b"new")
        target.write_bytes(b"someone else")  # appears while we write
    assert target.read_bytes() == b"someone else"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_output_copies_mode_and_times(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    ref.write_bytes(b"")
    os.chmod(ref, 0o604)
    os.utime(ref, (1_500_000_000, 1_600_000_000))
    with AtomicOutput(tmp_path / "out", like=ref.stat()) as f:
        f.write(b"data")
    st = (tmp_path / "out").stat()
    assert st.st_mode & 0o777 == 0o604 and int(st.st_mtime) == 1_600_000_000
    assert (tmp_path / "out").read_bytes() == b"data"
