"""Decoding-step time with step.c's linear-layer products on AMX tiles and on AVX-512 VNNI.

Both paths give the same integers (the script checks the logits of every step); only the
speed differs. Each slot holds --context tokens of alice29.txt (a realistic attention
length), then --steps lock-step steps are timed per slot count, both paths in one run.
Run: python scripts/amx_speed.py [--threads 2] [--slots 1,2,4,10,16,32,64] [--steps 20]

With --scoring, compression's path instead: each linear layer's product at the sizes
scoring uses (rows = 2 x 1,024 tokens with the 15-bit split, 128 for the output head)
on torch._int_mm and on step.c's tiles, then Engine.score of four 16 KiB chunks of
alice29.txt with the tiles off and on, --rounds times (the scores are checked equal).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from lmzip.engine import kernels, native_ops
from lmzip.engine.engine import Engine

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slots", default="1,2,4,10,16,32,64")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--context", type=int, default=600)
    ap.add_argument("--scoring", action="store_true", help="time compression's products and scoring instead")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not kernels.use_amx(True):
        raise SystemExit("this CPU (or its kernel) has no AMX int8: nothing to compare")
    engine = Engine.load(None)
    if args.scoring:
        scoring(engine, args)
        return
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


def _ms(fn, reps: int = 20) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1000


def scoring(engine: Engine, args: argparse.Namespace) -> None:
    """Compression's products on torch._int_mm and on step.c's tiles, then whole scoring."""
    model = engine.model
    t0 = time.perf_counter()
    step = model.ops.step_kernel()  # packs the weights: the cost native_ops.TILES_AFTER weighs
    packing = time.perf_counter() - t0
    if step is None:
        raise SystemExit("the C step does not handle this model")
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads; packing the weights {packing:.2f} s")
    print("| layer | rows x inputs x outputs | torch._int_mm ms | tiles ms | tiles / int_mm |")
    print("| --- | ---: | ---: | ---: | ---: |")
    layer0 = model.w.layers[0]
    gen = torch.Generator().manual_seed(1)
    for name, layer, rows in [
        ("qkv", layer0.qkv, 2048), ("o", layer0.o, 1024), ("gate_up", layer0.gate_up, 2048),
        ("down", layer0.down, 2048), ("output head", model.w.lm_head, 128),
    ]:  # fmt: skip
        n, k = layer.weight.shape
        x = torch.randint(-128, 128, (rows, k), generator=gen, dtype=torch.int8)
        if not torch.equal(step.product(layer, x), torch._int_mm(x, layer.weight.t())):
            raise SystemExit(f"{name}: the tiles and torch._int_mm differ")
        tiles = _ms(lambda: step.product(layer, x))  # noqa: B023
        mm = _ms(lambda: torch._int_mm(x, layer.weight.t()))  # noqa: B023
        print(f"| {name} | {rows} x {k} x {n} | {mm:.2f} | {tiles:.2f} | {tiles / mm:.2f} |", flush=True)
    text = (CORPUS / "alice29.txt").read_bytes()
    seqs = engine.tokenizer.encode_batch([text[i * 16384 : (i + 1) * 16384] for i in range(4)], byte_fallback=True)
    tokens = sum(map(len, seqs))
    native_ops.TILES_AFTER = 0  # the tiles from the first row when on
    print(f"\nEngine.score of 4 x 16 KiB of alice29.txt ({tokens} tokens)\n")
    print("| round | products | seconds | tokens/s |")
    print("| ---: | --- | ---: | ---: |")
    first = None
    best = {False: float("inf"), True: float("inf")}
    for r in range(1, args.rounds + 1):
        for amx in (False, True):
            kernels.use_amx(amx)
            t0 = time.perf_counter()
            scores = engine.score(seqs)
            seconds = time.perf_counter() - t0
            got = [(c.tolist(), f.tolist()) for c, f in scores]
            if first is None:
                first = got
            elif got != first:
                raise SystemExit("scores differ between the product paths")
            label = "step.c tiles (AMX), down on torch._int_mm" if amx else "torch._int_mm"
            print(f"| {r} | {label} | {seconds:.2f} | {tokens / seconds:.0f} |", flush=True)
            best[amx] = min(best[amx], seconds)
    kernels.use_amx(True)
    saved = (best[False] - best[True]) / tokens
    if saved > 0:
        print(f"\nthe tiles save {saved * 1e3:.3f} ms a token: packing pays after {packing / saved:,.0f} tokens")


if __name__ == "__main__":
    main()
