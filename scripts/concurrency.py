"""Side-by-side runs: N lmzip compressions at once against each one alone.

Each run is a whole `lmzip -c SAMPLE` process (model load included), as `xargs -P`,
`make -j` or `find -exec` start them. The samples are N slices of --bytes of prose.
First every sample is compressed alone, one after the other; then all N start at once.
lmzip shares the CPUs when the N together take about N times one alone (idle OpenMP
threads sleep, and each run takes threads from the CPUs free when it starts; see
lmzip/threads.py). The script exits 1 when they take more than --limit times one alone
(2.5 for two runs).

`--spin` runs the same with OpenMP's spinning wait (GOMP_SPINCOUNT=300000, libgomp's
default) and `--threads` = every usable CPU: how lmzip ran before threads.py.

Run: python scripts/concurrency.py [--runs 2] [--bytes 16384] [--file F] [--spin] [--limit 2.5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmzip.threads import usable_cpus

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def command(sample: Path, spin: bool) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    cmd = [sys.executable, "-m", "lmzip", "-c", "-q", str(sample)]
    if spin:
        env["GOMP_SPINCOUNT"] = "300000"
        cmd[3:3] = ["--threads", str(usable_cpus())]
    return cmd, env


def run_together(samples: list[Path], spin: bool) -> tuple[float, list[int]]:
    """Wall time from starting every run to the end of the last, and the archive sizes."""
    t0 = time.perf_counter()
    procs = []
    for s in samples:
        cmd, env = command(s, spin)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    sizes = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"lmzip failed: {err.decode().strip()}")
        sizes.append(len(out))
    return time.perf_counter() - t0, sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="processes side by side")
    ap.add_argument("--bytes", type=int, default=16384, help="bytes of prose per run")
    ap.add_argument("--file", default=str(CORPUS / "alice29.txt"))
    ap.add_argument("--spin", action="store_true", help="OpenMP's spinning wait and every CPU, as before")
    ap.add_argument("--limit", type=float, default=None, help="most N runs may take, in runs alone (default N+0.5)")
    args = ap.parse_args()
    limit = args.limit if args.limit is not None else args.runs + 0.5
    data = Path(args.file).read_bytes()
    if len(data) < args.runs * args.bytes:
        raise SystemExit(f"{args.file} has fewer than {args.runs} x {args.bytes} bytes")
    with tempfile.TemporaryDirectory(prefix="lmzip-concurrency-") as tmp:
        samples = []
        for i in range(args.runs):
            p = Path(tmp) / f"sample{i}.txt"
            p.write_bytes(data[i * args.bytes : (i + 1) * args.bytes])
            samples.append(p)
        alone = []
        for s in samples:
            t, _ = run_together([s], args.spin)
            alone.append(t)
            print(f"alone: {s.name} {t:.1f} s", flush=True)
        together, sizes = run_together(samples, args.spin)
    mean = sum(alone) / len(alone)
    ratio = together / mean
    load = os.getloadavg()[0]
    mode = "spinning wait, every CPU (as before)" if args.spin else "lmzip's defaults"
    print(
        f"{args.runs} x {args.bytes} bytes ({mode}), {usable_cpus()} usable CPUs: one alone {mean:.1f} s "
        f"(runs {', '.join(f'{t:.1f}' for t in alone)}), {args.runs} together {together:.1f} s = {ratio:.2f}x one "
        f"alone (limit {limit}x); archives {sizes} bytes; load average {load:.1f} at the end"
    )
    sys.exit(0 if ratio <= limit else 1)


if __name__ == "__main__":
    main()
