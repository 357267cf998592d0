"""Decoding-step time with step.c's linear-layer products on AMX tiles and on AVX-512 VNNI.

Both paths give the same integers (the script checks the logits of every step); only the
speed differs. Each slot holds --context tokens of alice29.txt (a realistic attention
length), then --steps lock-step steps are timed per slot count, both paths in one run.
Run: python scripts/amx_speed.py [--threads 2] [--slots 1,2,4,10,16,32,64] [--steps 20]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from lmzip.engine import kernels
from lmzip.engine.engine import Engine

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slots", default="1,2,4,10,16,32,64")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--context", type=int, default=600)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not kernels.use_amx(True):
        raise SystemExit("this CPU (or its kernel) has no AMX int8: nothing to compare")
    engine = Engine.load(None)
    text = (CORPUS / "alice29.txt").read_bytes()[:40000]
    ids = engine.tokenizer.encode_batch([text], byte_fallback=True)[0]
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, context {args.context} tokens")
    print("| slots | VNNI ms/step | AMX ms/step | AMX / VNNI |")
    print("| ---: | ---: | ---: | ---: |")
    for slots in (int(s) for s in args.slots.split(",")):
        times, logits = {}, {}
        for amx in (False, True):
            kernels.use_amx(amx)
            decoder = engine.decoder(slots)
            starts = [s * 97 for s in range(slots)]
            for s, at in enumerate(starts):
                decoder.begin(s, ids[at : at + args.context])
            decoder.push({s: ids[at + args.context] for s, at in enumerate(starts)})  # warm up
            seen = []
            t0 = time.perf_counter()
            for k in range(1, args.steps + 1):
                decoder.push({s: ids[at + args.context + k] for s, at in enumerate(starts)})
                seen.append(decoder.logits.clone())
            times[amx] = (time.perf_counter() - t0) / args.steps * 1000
            logits[amx] = torch.stack(seen)
        same = torch.equal(logits[False], logits[True])
        if not same:
            raise SystemExit(f"{slots} slots: AMX and VNNI logits differ")
        print(f"| {slots} | {times[False]:.2f} | {times[True]:.2f} | {times[True] / times[False]:.2f} |", flush=True)
    kernels.use_amx(True)


if __name__ == "__main__":
    main()
