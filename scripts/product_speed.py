"""int8 products at the model's sizes: torch._int_mm against step.c's product, on this CPU.

    python scripts/product_speed.py [--threads 2] [--rows 1,20,2048] [--build native|avx2|portable]

For each linear layer of SmolLM2-135M (inputs x outputs) and row count (1: one slot's
step; 20: ten slots with the 15-bit split; 2,048: scoring 1,024 tokens), the best of
--reps calls of torch._int_mm and of step.c's product on weights packed once
(kernels.linear_product, the path that build runs: kernels.PRODUCT_PATHS), with the
integers checked equal. --build avx2 times the kernels built for AVX2 without AVX-512
(the path of such CPUs) on any CPU with AVX2. On a CPU with AVX2 only, torch._int_mm
is a plain loop; there lmzip sends every product to step.c (native_ops.NativeOps.product).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from lmzip.engine import kernels

# (name, inputs, outputs) of SmolLM2-135M's products (qkv: 9 query + 2 x 3 KV heads of 64)
LAYERS = [("qkv", 576, 960), ("o", 576, 576), ("gate_up", 576, 3072), ("down", 1536, 576), ("head", 576, 49152)]


def best_ms(fn, reps: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="1,20,2048")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--build", choices=["native", "avx2", "portable"], default="native")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lib = kernels.library(portable=args.build == "portable", avx2=args.build == "avx2")
    if lib is None:
        raise SystemExit(f"no kernels: {kernels.build_error()}")
    kernels.library = lambda portable=False, profile=False, avx2=False: lib  # every call goes to this build
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, step.c on {kernels.product_path()}")
    print("| layer | rows x inputs x outputs | torch._int_mm ms | step.c ms | int_mm / step.c |")
    print("| --- | ---: | ---: | ---: | ---: |")
    gen = torch.Generator().manual_seed(0)
    for name, k, n in LAYERS:
        weight = torch.randint(-128, 128, (n, k), generator=gen, dtype=torch.int8)
        packed, wsum = kernels.pack_linear(weight)
        struct = kernels.LinearStruct(packed.data_ptr(), wsum.data_ptr(), None, None, n, k, 0)
        for m in (int(r) for r in args.rows.split(",")):
            if name == "head" and m > 128:
                m = 128  # scoring takes the output head 128 rows at a time
            x = torch.randint(-128, 128, (m, k), generator=gen, dtype=torch.int8)
            if not torch.equal(torch._int_mm(x, weight.t()), kernels.linear_product(struct, x)):
                raise SystemExit(f"{name}: the products differ")
            torch_ms = best_ms(lambda: torch._int_mm(x, weight.t()), args.reps)  # noqa: B023
            step_ms = best_ms(lambda: kernels.linear_product(struct, x), args.reps)  # noqa: B023
            ratio = torch_ms / step_ms
            print(f"| {name} | {m} x {k} x {n} | {torch_ms:.2f} | {step_ms:.2f} | {ratio:.1f} |", flush=True)


if __name__ == "__main__":
    main()
