"""Speculative verification in the decoder: what a row costs, how often guesses are right,
and what that does to decompression time, in one run.

    python scripts/speculation.py [--threads 2] [--skip-cost] [--skip-timing] [--json OUT]

1. Cost of one decoding call (step.c step_rows) with T = 1..16 rows per slot at 1, 4
   and 10 slots (context of 256 tokens per slot; median of --repeat calls).
2. Guesses on alice29.txt, the first 64 KB of logs/Apache_2k.log and of urls.10K
   (../shared/corpus): each compressed as the pipeline does (16 KB chunks, one memory
   group), then decoded with guesses, with file-wide memory (numerics v5: the memory's
   match) and without (v4: lmzip/proposals.py MatchProposer): engine calls, rows
   computed, guesses accepted, tokens per call, and the output checked.
3. Decode time of a 16 KB prose chunk (the first 16 KB of alice29.txt) and of alice29.txt
   with and without guesses (default numerics v5), in this one process (alice29.txt: the
   v5 runs of part 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip import defaults  # noqa: E402
from lmzip import proposals as prop  # noqa: E402
from lmzip.lm_codec import DEFAULT_MEMORY_BLOCK, LMCodec, load_lm_codec  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
FILES = [
    ("alice29.txt", CORPUS / "alice29.txt", None),
    ("Apache_2k.log (64 KB)", CORPUS / "logs" / "Apache_2k.log", 65536),
    ("urls.10K (64 KB)", CORPUS / "urls.10K", 65536),
]


def row_costs(codec: LMCodec, repeat: int) -> dict[int, dict[int, float]]:
    """ms per step_rows call with T rows per slot, by slots then T."""
    engine = codec.engine
    model = engine.model
    ids = engine.tokenizer.encode((CORPUS / "alice29.txt").read_bytes()[:20000]) or []
    out: dict[int, dict[int, float]] = {}
    with torch.inference_mode():
        for slots in (1, 4, 10):
            dec = engine.decoder(slots, speculate=16)
            for s in range(slots):
                dec.begin(s, ids[s * 300 : s * 300 + 255])
            out[slots] = {}
            for t in range(1, 17):
                rows = [(s, ids[s * 300 + 255 + j], 256 + j) for s in range(slots) for j in range(t)]
                args = [torch.tensor([r[i] for r in rows]) for i in range(3)]
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    model.step_rows(*args, dec.cache)
                    times.append(time.perf_counter() - t0)
                out[slots][t] = 1000 * statistics.median(times)
                print(f"  {slots:2d} slots, T={t:2d}: {out[slots][t]:7.1f} ms", flush=True)
    return out


def chunks_of(data: bytes) -> list[bytes]:
    return [data[i : i + defaults.CHUNK_SIZE] for i in range(0, len(data), defaults.CHUNK_SIZE)]


def compressed(codec: LMCodec, chunks: list[bytes]) -> tuple[list, list]:
    """(v4 items, v5 items) of one group of plain-text chunks."""
    items = codec.encode_chunks(chunks)
    assert all(i is not None for i in items), "a chunk needs escapes"
    return items, codec.finish_group(list(range(len(chunks))))


def decode(codec: LMCodec, items: list, chunks: list[bytes], speculate: int, memory: bool) -> dict:
    dec = codec.fresh()
    dec.speculate = speculate
    dec.memory_block = DEFAULT_MEMORY_BLOCK if memory else 0
    dec.memory_group = len(chunks)
    dec.decode_stats = {"calls": 0, "rows": 0, "tokens": 0, "accepted": 0}
    t0 = time.perf_counter()
    out = dec.decode_chunks(items)
    seconds = time.perf_counter() - t0
    if out != chunks:
        raise SystemExit("round trip failed")
    st = dict(dec.decode_stats)
    st["calls_without_guesses"] = max(n for _, n in items)  # one group in lock step: the longest chunk
    st["seconds"] = seconds
    st["tokens_per_call"] = st["tokens"] / max(1, st["calls"])
    return st


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    codec = load_lm_codec(threads=args.threads, batch=defaults.BATCH, memory_block=DEFAULT_MEMORY_BLOCK)
    report: dict = {"threads": args.threads, "speculate": prop.SPECULATE}
    if not args.skip_cost:
        print("step_rows: ms per call, T rows per slot")
        report["cost_ms"] = row_costs(codec, args.repeat)
    report["guesses"] = {}
    report["timing"] = {}
    alice = (CORPUS / "alice29.txt").read_bytes()
    if not args.skip_timing:
        chunks = chunks_of(alice[: defaults.CHUNK_SIZE])
        _, v5 = compressed(codec.fresh(), chunks)
        for speculate in (0, prop.SPECULATE):
            st = decode(codec, v5, chunks, speculate, True)
            report["timing"][f"16 KB prose chunk, speculate {speculate}"] = st
            print(
                f"16 KB prose chunk, speculate {speculate}: decode {st['seconds']:.1f} s, {st['calls']} calls",
                flush=True,
            )
    for label, path, limit in FILES:
        data = path.read_bytes()[:limit]
        chunks = chunks_of(data)
        v4, v5 = compressed(codec.fresh(), chunks)
        runs = [("v5 memory match", v5, True, prop.SPECULATE), ("v4 MatchProposer", v4, False, prop.SPECULATE)]
        if path.name == "alice29.txt":
            runs = runs[:1] if args.skip_timing else [runs[0], ("v5 no guesses", v5, True, 0)]
        for name, items, memory, speculate in runs:
            st = decode(codec, items, chunks, speculate, memory)
            report["guesses"][f"{label}, {name}"] = st
            print(
                f"{label}, {name}: {st['tokens']} tokens, {st['calls']} calls, {st['rows']} rows, "
                f"{st['accepted']} guesses right: {st['tokens_per_call']:.2f} tokens per call ({st['seconds']:.1f} s)",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
