"""Bits per byte against speed for chunk sizes and context windows (docs/benchmarks.md's tradeoff table).

For each (chunk size, window): the file is cut into chunks as lmzip does, every chunk is
scored with the engine's compression path (every token sees the BOS and the last
window - 1 tokens), and the ideal code length gives bits per byte (the range coder adds
< 0.01%). Speed: scoring tokens/s from that run, and lock-step decoding tokens/s measured
with as many slots as there are chunks (at most --batch) with a full window of context.
Run: python scripts/tradeoff.py [--file F] [--chunks 4096,16384,65536] [--windows 512,1024,2048] [--segment 256]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lmzip.engine.engine import SEGMENT, Engine
from lmzip.engine.loader import load_model

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def step_speed(engine: Engine, ids: list[int], slots: int, context: int, steps: int = 8) -> float:
    decoder = engine.decoder(slots)
    stride = max(1, (len(ids) - context - steps) // slots)
    for s in range(slots):
        decoder.begin(s, ids[s * stride : s * stride + context])
    t = time.time()
    for p in range(steps):
        decoder.distributions()
        decoder.push({s: ids[s * stride + context + p] for s in range(slots)})
    return slots * steps / (time.time() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default=str(CORPUS / "alice29.txt"))
    ap.add_argument("--chunks", default="4096,16384,65536")
    ap.add_argument("--windows", default="512,1024,2048")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--segment", type=int, default=SEGMENT, help="positions per extend when scoring")
    args = ap.parse_args()
    data = Path(args.file).read_bytes()
    loaded = load_model(None)
    rows = []
    for window in map(int, args.windows.split(",")):
        engine = Engine(loaded, window=window, segment=args.segment)
        all_ids = engine.tokenizer.encode(data) or []
        for chunk in map(int, args.chunks.split(",")):
            pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
            seqs = engine.tokenizer.encode_batch(pieces)
            assert all(s is not None for s in seqs)
            t = time.time()
            scored = engine.score(seqs)  # type: ignore[arg-type]
            seconds = time.time() - t
            tokens = sum(len(s) for s in seqs)  # type: ignore[misc]
            bits = sum(float(-np.log2(f / 2**24).sum()) for _, f in scored)
            slots = min(len(pieces), args.batch)
            step = step_speed(engine, all_ids, slots, window - 1)
            row = {
                "window": window,
                "chunk": chunk,
                "chunks": len(pieces),
                "bpb": round(bits / len(data), 4),
                "compress_tok_s": round(tokens / seconds),
                "compress_kb_s": round(len(data) / 1000 / seconds, 2),
                "decode_slots": slots,
                "decode_tok_s": round(step),
                "decode_kb_s_est": round(step * len(data) / tokens / 1000, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| window | chunk | bits/byte | compress KB/s | decode slots | decode tokens/s | decode KB/s (est.) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['window']} | {r['chunk']} | {r['bpb']} | {r['compress_kb_s']} | {r['decode_slots']} "
            f"| {r['decode_tok_s']} | {r['decode_kb_s_est']} |"
        )


if __name__ == "__main__":
    main()
