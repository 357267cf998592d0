"""CI strictness: under LMZIP_STRICT=1 (.ci/run) a skip for a missing model, kernels or
corpus fails; a failed kernel build is reported, never silently replaced by the reference path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmzip import cli
from lmzip.engine import kernels

HERE = Path(__file__).parent

SUITE = """
import pytest
from strict import missing

def test_environment_skip():
    pytest.skip(missing("default model not installed"))

def test_plain_skip():
    pytest.skip("not this platform")

@pytest.mark.skipif(True, reason=missing("../shared corpus not found"))
def test_marked_skip():
    pass

def test_passes():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((HERE / "conftest.py").read_text().replace('pytest_plugins = ["pytester"]', ""))
    pytester.makepyfile(strict=(HERE / "strict.py").read_text(), test_suite=SUITE)
    return pytester


@pytest.mark.parametrize("value", ["1", "yes"])
def test_strict_turns_environment_skips_into_failures(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LMZIP_STRICT", value)
    result = suite.runpytest_subprocess("-rA")
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=1)  # a skipif mark fails in setup: an error
    result.stdout.fnmatch_lines(["*LMZIP_STRICT=1 (CI) does not accept this skip*default model not installed*"])


@pytest.mark.parametrize("value", [None, "0", ""])
def test_without_strict_they_skip(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("LMZIP_STRICT", raising=False)
    else:
        monkeypatch.setenv("LMZIP_STRICT", value)
    suite.runpytest_subprocess().assert_outcomes(passed=1, skipped=3)


def test_ci_runs_strict() -> None:
    run = (HERE.parent / ".ci" / "run").read_text()
    assert "LMZIP_STRICT=1" in run


@pytest.fixture
def fresh_kernels(monkeypatch: pytest.MonkeyPatch):
    kernels.library.cache_clear()
    monkeypatch.setattr(kernels, "_errors", {})
    yield
    kernels.library.cache_clear()  # the next library() loads the cached build again


@pytest.mark.parametrize(("cc", "says"), [("false", "false failed (exit 1)"), ("/nonexistent/cc", "/nonexistent/cc")])
def test_failed_kernel_build_is_reported(fresh_kernels, monkeypatch: pytest.MonkeyPatch, cc: str, says: str) -> None:
    monkeypatch.setenv("CC", cc)
    monkeypatch.delenv("LMZIP_NO_KERNELS", raising=False)
    assert kernels.library() is None
    error = kernels.build_error()
    assert error is not None and says in error and "\n" not in error


def test_kernels_turned_off_on_purpose_are_no_error(fresh_kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMZIP_NO_KERNELS", "1")
    assert kernels.library() is None and kernels.build_error() is None


def test_verbose_cli_names_the_reference_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_bytes(b"data\n" * 100)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(kernels, "_errors", {(False, False, False): "cc failed (exit 1): boom"})
    assert cli.run(["f"], cli.Settings(use_lm=False, verbose=True, keep=True)) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "lmzip: C kernels unavailable (cc failed (exit 1): boom); the model ran on the reference path"
    assert cli.run([os.fspath(tmp_path / "f.lmz")], cli.Settings(test=True, quiet=True, verbose=True)) == 0
    assert capsys.readouterr().err == ""  # -q: silent
    monkeypatch.setattr(kernels, "_errors", {})
    assert cli.run(["f.lmz"], cli.Settings(test=True, verbose=True)) == 0
    assert "kernels" not in capsys.readouterr().err
