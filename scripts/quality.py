"""Bits per byte of the exact integer engine beside transformers' float forward pass.

Both models score the same inputs: the file's tokens cut into independent windows of
`--window` positions ([BOS] + window-1 tokens). Run: python scripts/quality.py
[--file ../shared/corpus/alice29.txt] [--window 1024] [--limit N tokens]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from lmzip.engine.engine import Engine
from lmzip.engine.loader import default_model_path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def float_bits(model, windows: list[list[int]], bos: int) -> float:
    bits = 0.0
    with torch.inference_mode():
        for w in windows:
            ids = torch.tensor([[bos] + w])
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
            bits -= logp.gather(1, ids[0, 1:, None]).sum().item() / math.log(2)
    return bits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default=str(CORPUS / "alice29.txt"))
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--limit", type=int, default=0, help="score only the first N tokens")
    ap.add_argument("--no-float", action="store_true")
    args = ap.parse_args()
    data = Path(args.file).read_bytes()
    engine = Engine.load(window=args.window)
    ids = engine.tokenizer.encode(data)
    assert ids is not None
    if args.limit:
        ids = ids[: args.limit]
    n_bytes = len(engine.tokenizer.decode(ids))
    windows = [ids[i : i + args.window - 1] for i in range(0, len(ids), args.window - 1)]
    t = time.time()
    scored = engine.score(windows)
    int_s = time.time() - t
    int_bits = sum(float(-np.log2(f / 2**24).sum()) for _, f in scored)
    print(f"file {args.file}: {n_bytes} bytes, {len(ids)} tokens, {len(windows)} windows of {args.window}")
    print(f"integer engine: {int_bits / n_bytes:.4f} bpb  ({len(ids) / int_s:.0f} tokens/s)")
    if args.no_float:
        return
    from transformers import AutoModelForCausalLM

    path = default_model_path()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    t = time.time()
    fbits = float_bits(model, windows, engine.bos)
    float_s = time.time() - t
    print(f"float (transformers): {fbits / n_bytes:.4f} bpb  ({len(ids) / float_s:.0f} tokens/s)")
    print(f"integer / float: {int_bits / fbits:.4f}  speed ratio {float_s / int_s:.2f}x")


if __name__ == "__main__":
    main()
