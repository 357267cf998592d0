"""End to end through the CLI with the real default model (slow: one tiny chunk)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Plain prose, long enough that the model beats zstd by more than its identity record
# costs (an archive where the LM never wins carries no model at all).
TEXT = (
    b"Alice was beginning to get very tired of sitting by her sister on the bank, and of\n"
    b"having nothing to do: once or twice she had peeped into the book her sister was\n"
    b"reading, but it had no pictures or conversations in it, and what is the use of a\n"
    b"book, thought Alice, without pictures or conversations? So she was considering in\n"
    b"her own mind (as well as she could, for the hot day made her feel very sleepy and\n"
    b"stupid), whether the pleasure of making a daisy-chain would be worth the trouble\n"
    b"of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes\n"
    b"ran close by her.\n"
)


def lmzip(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "lmzip.cli", *args], cwd=cwd, capture_output=True, timeout=900)


@pytest.mark.requires_model
def test_round_trip_with_default_model(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_bytes(TEXT)
    p = lmzip("-k", "--threads", "2", "t.txt", cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    info = json.loads(lmzip("info", "--json", "t.txt.lmz", cwd=tmp_path).stdout)
    assert info["model"]["name"] == "SmolLM2-135M-Instruct", info  # a label, found again by its hashes
    assert info["codec_counts"]["lm"] == 1, info
    p = lmzip("-dc", "--threads", "2", "t.txt.lmz", cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == TEXT


@pytest.mark.requires_model
def test_window_option_is_recorded_and_used_for_decoding(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_bytes(TEXT)
    p = lmzip("-k", "--threads", "1", "--window", "128", "t.txt", cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    info = json.loads(lmzip("info", "--json", "t.txt.lmz", cwd=tmp_path).stdout)
    assert info["model"]["context_window"] == 128, info
    p = lmzip("-dc", "--threads", "1", "t.txt.lmz", cwd=tmp_path)  # no flag: the header decides
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == TEXT


@pytest.mark.requires_model
def test_decoding_more_chunks_than_slots_reuses_slots(tmp_path: Path) -> None:
    text = TEXT * 3  # several 256-byte lm chunks, decoded two at a time
    (tmp_path / "t.txt").write_bytes(text)
    p = lmzip("-k", "--threads", "1", "--chunk-size", "256", "t.txt", cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    info = json.loads(lmzip("info", "--json", "t.txt.lmz", cwd=tmp_path).stdout)
    assert info["codec_counts"]["lm"] >= 3, info
    p = lmzip("-dc", "--threads", "1", "--batch", "2", "t.txt.lmz", cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == text
