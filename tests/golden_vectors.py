"""Golden engine vectors: frequency rows for fixed token ids, pinned by sha256.

Shared by tests/test_engine.py (which recomputes and compares) and
scripts/make_golden_vector.py (which regenerates the JSON files on purpose, or checks
them on another device). A digest is sha256 over the frequency rows of
``Engine.frequencies_for(tokens)`` as int64 little-endian, row after row.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
DEFAULT_VECTOR = GOLDEN_DIR / "engine_vector.json"
TINY_VECTOR = GOLDEN_DIR / "tiny_engine_vector.json"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

DEFAULT_WINDOW = 128  # 200 tokens at window 128: the attention band slides
DEFAULT_TOKENS = 200
TINY_WINDOW = 32
TINY_TOKENS = 100
TINY_SEED = 1234
TINY_STD = 0.3
REGENERATE = "python scripts/make_golden_vector.py"
NUMERICS_HINT = (
    f"numerics changed: bump NUMERICS_VERSION in lmzip/engine/numerics.py and regenerate with `{REGENERATE}`"
)


def digest(freqs) -> str:
    """sha256 hex of int64 little-endian frequency rows [n, vocab]."""
    import numpy as np

    arr = freqs.detach().cpu().contiguous().numpy().astype("<i8", copy=False)
    assert arr.dtype == np.dtype("<i8")
    return hashlib.sha256(arr.tobytes()).hexdigest()


def tiny_text() -> bytes:
    """Text for the tiny model's vector: made from the same seeded word list as its tokenizer."""
    from tiny_models import training_text

    return training_text(seed=7, sentences=60).encode()


def build_tiny_engine(workdir: Path, window: int = TINY_WINDOW, device: str = "cpu", backend: str | None = None):
    """The tiny Llama of the tiny golden vector, converted under ``workdir`` (XDG_CACHE_HOME is set only meanwhile)."""
    from tiny_models import build_tiny_model

    from lmzip.engine.engine import Engine
    from lmzip.engine.loader import load_model

    model_dir = build_tiny_model(Path(workdir) / "tiny-llama", arch="llama", seed=TINY_SEED, std=TINY_STD)
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(Path(workdir) / "cache")
    try:
        loaded = load_model(str(model_dir))
    finally:
        if old is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = old
    return Engine(loaded, window=window, device=device, backend=backend)


def make_default_vector(engine) -> dict:
    """The vector of the default model: the first DEFAULT_TOKENS tokens of alice29.txt."""

    text = (CORPUS / "alice29.txt").read_bytes()[:4000]
    tokens = engine.tokenizer.encode(text)
    assert tokens is not None and len(tokens) >= DEFAULT_TOKENS
    tokens = tokens[:DEFAULT_TOKENS]
    return {"model": "default", "model_name": engine.identity.name, **_vector_fields(engine, tokens)}


def make_tiny_vector(engine) -> dict:
    import torch
    import transformers

    tokens = engine.tokenizer.encode(tiny_text())
    assert tokens is not None and len(tokens) >= TINY_TOKENS
    tokens = tokens[:TINY_TOKENS]
    return {
        "model": "tests/tiny_models.py build_tiny_model(arch='llama')",
        "seed": TINY_SEED,
        "std": TINY_STD,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        **_vector_fields(engine, tokens),
    }


def _vector_fields(engine, tokens: list[int]) -> dict:
    """What pins an engine's numerics: identity, settings, tokens and the rows' hash."""
    from lmzip.engine import numerics

    return {
        "model_hash": engine.identity.model_hash.hex(),
        "numerics_version": numerics.NUMERICS_VERSION,
        "window": engine.window,
        "bos": engine.bos,
        "vocab_size": engine.vocab_size,
        "rows": len(tokens),
        "tokens": tokens,
        "sha256": digest(engine.frequencies_for(tokens)),
    }


def write(path: Path, vector: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = dict(vector)
    tokens = body.pop("tokens")
    text = json.dumps(body, indent=1)[:-2] + ',\n "tokens": ' + json.dumps(tokens) + "\n}\n"
    assert json.loads(text) == vector
    path.write_text(text)


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def tempdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="lmzip-golden-")
