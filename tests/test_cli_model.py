"""End to end through the CLI with the real default model (slow: one tiny chunk)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TEXT = b"The quick brown fox jumps over the lazy dog. Hello, world!\n" * 3


def lmzip(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "lmzip.cli", *args], cwd=cwd, capture_output=True, timeout=900
    )


@pytest.mark.requires_model
def test_round_trip_with_default_model(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_bytes(TEXT)
    p = lmzip("-k", "--threads", "2", "t.txt", cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    info = json.loads(lmzip("info", "--json", "t.txt.lmz", cwd=tmp_path).stdout)
    assert info["header"]["model_name"], info  # the archive names its model
    p = lmzip("-dc", "--threads", "2", "t.txt.lmz", cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == TEXT
