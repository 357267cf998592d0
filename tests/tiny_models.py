"""Tiny random-weight Hugging Face models (Llama, Qwen2) with a freshly trained byte-level BPE.

Used by tests/test_engine.py and scripts/make_golden_vector.py. Everything here is
deterministic for a fixed torch version: the training text comes from a seeded
``random.Random`` and every weight is overwritten from a seeded CPU ``torch.Generator``
(so transformers' own init order does not matter).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

VOCAB = 400
WORDS = (
    "the a and of to in it was she said alice rabbit queen king cat hatter tea time down hole "
    "very little large door key garden white curious mock turtle dream sister bank book pictures "
    "conversation thought nothing remarkable out way hear itself dear late watch pocket field"
).split()


def training_text(seed: int = 0, sentences: int = 400) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", "!", "?", ",", ";"]))
    return " ".join(out) + "\n"


def train_tokenizer(path: Path, vocab_size: int = VOCAB) -> None:
    """A GPT-2-style byte-level BPE (all 256 byte tokens, <|endoftext|> special), saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = training_text()
    tok.train_from_iterator([text[i : i + 500] for i in range(0, len(text), 500)], trainer)
    assert tok.get_vocab_size() <= vocab_size
    tok.save(str(path))


def _randomize(model, seed: int, std: float) -> None:
    """Overwrite every parameter from a seeded CPU generator: matrices N(0, std), norms 1 + N(0, 0.1)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.5 * noise)
            else:
                p.copy_(std * noise)


def build_tiny_model(
    out: Path,
    arch: str = "llama",
    seed: int = 1234,
    tie: bool = False,
    std: float = 0.15,
    tokenizer_json: Path | None = None,
) -> Path:
    """Write a tiny HF model directory (config.json, model.safetensors, tokenizer.json) and return it.

    2 layers, hidden 64, 4 heads / 2 KV heads (head_dim 16), intermediate 128, vocab 400.
    ``arch`` is "llama" or "qwen2" (QKV bias).
    """
    import torch
    import transformers

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok_path = out / "tokenizer.json"
    if tokenizer_json is not None:
        tok_path.write_bytes(Path(tokenizer_json).read_bytes())
    else:
        train_tokenizer(tok_path)
    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
    )
    if arch == "llama":
        config = transformers.LlamaConfig(**common)
        cls = transformers.LlamaForCausalLM
    elif arch == "qwen2":
        config = transformers.Qwen2Config(**common, use_sliding_window=False)
        cls = transformers.Qwen2ForCausalLM
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = cls(config)
    _randomize(model, seed, std)
    model.save_pretrained(str(out), safe_serialization=True)
    # keep the HF directory minimal and explicit: the loader hashes every file in it
    (out / "generation_config.json").unlink(missing_ok=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == arch
    return out
