"""Measure the file-wide memory's acceptance targets and write docs/memory.md.

    python scripts/memory_report.py [--files urls.10K,alice29.txt] [--threads 1] [--resume]
    python scripts/memory_report.py --render      # rewrite the docs from docs/memory.json

For each file of ../shared/corpus it runs `lmzip bench` (lmzip/bench.py: the archive
`lmzip -c` writes, decoded again and compared) with xz -9e beside it, and reports the
archive in bits per byte, the model's ideal code length alone and the mixed one (the
tables the lm records are coded with), and the target of lmzip's issue on file-wide
memory: urls.10K <= 1.55 bits/byte, alice29.txt <= 1.12, every log of logs/ <= 0.6x
xz -9e. Rows go to docs/memory.json after every file (--resume keeps rows of an earlier
run with the same settings); docs/memory.md and docs/readme_parts/memory13.md get the
table. With the model this takes hours on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DEFAULT_FILES = [
    "urls.10K",
    "alice29.txt",
    "logs/Apache_2k.log",
    "logs/HDFS_2k.log",
    "logs/Android_2k.log",
    "logs/Linux_2k.log",
    "logs/OpenSSH_2k.log",
    "logs/Spark_2k.log",
]

sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from lmzip.bench import BenchOptions, LmSession, bench_files  # noqa: E402
from lmzip.lm_codec import DEFAULT_MEMORY_BLOCK  # noqa: E402


def target(name: str) -> tuple[str, float | None, float | None]:
    """(description, max bits/byte, max ratio to xz -9e) of a file's target."""
    if name.endswith("urls.10K"):
        return "<= 1.55 bits/byte", 1.55, None
    if name.endswith("alice29.txt"):
        return "<= 1.12 bits/byte", 1.12, None
    if name.startswith("logs/"):
        return "<= 0.6x xz -9e", None, 0.6
    return "-", None, None


def row(name: str, results: list[Any], settings: dict[str, Any]) -> dict[str, Any]:
    by = {r.codec: r for r in results}
    lm, xz = by["lmzip"], by["xz"]
    return {
        "file": name,
        "settings": settings,
        "bytes": lm.original_bytes,
        "xz": xz.compressed_bytes,
        "lmzip": lm.compressed_bytes,
        "roundtrip_ok": lm.roundtrip_ok,
        "bpb": lm.bpb,
        "model_bpb": lm.ideal_bpb,
        "mixed_bpb": lm.mixed_ideal_bpb,
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| file | memory block | bytes | xz -9e | lmzip | bits/byte | model alone (ideal) | with memory (ideal) "
        "| vs xz | target | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        desc, max_bpb, max_xz = target(r["file"])
        vs_xz = r["lmzip"] / r["xz"] if r["xz"] else float("nan")
        met = r["roundtrip_ok"] and (max_bpb is None or r["bpb"] <= max_bpb) and (max_xz is None or vs_xz <= max_xz)

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        out.append(
            f"| {r['file']} | {r['settings']['memory_block'] or DEFAULT_MEMORY_BLOCK} "
            f"| {r['bytes']:,} | {r['xz']:,} | {r['lmzip']:,} | {f(r['bpb'])} | {f(r['model_bpb'])} "
            f"| {f(r['mixed_bpb'])} | {vs_xz:.2f}x | {desc} | {'yes' if met else 'no'} |"
        )
    return "\n".join(out) + "\n"


README_INTRO = """### File-wide memory (numerics v5)

The model sees 1,024 tokens of its own chunk; lmzip also remembers the whole file. A
match model and hashed token n-grams (orders 1-4), mixed with the model's integer
frequencies by an online mixer, boost the tokens the file has shown before, in exact
integer arithmetic (docs/DESIGN.md, "File-wide memory", also for the ratio against
group size and block). The chunks of a `--batch` group still decode in lock step: they
share what they learn every 12 positions (`--memory-block`, stored in the archive).
`lmzip bench` shows the model's ideal code length beside the mixed one.
`--memory-block 0` writes numerics v4 archives (no memory); both decode.

Measured with `python scripts/memory_report.py` (archives written by `lmzip -c`, every
round trip verified; bits per byte of the archive, and the ideal code lengths of the
model alone and of the mixed tables the archive is coded with):

"""


def write_docs(out: Path, rows: list[dict[str, Any]], files: str | None) -> None:
    """docs/memory.md and docs/readme_parts/memory13.md from the measured rows."""
    text = table(rows)
    print(text, flush=True)
    command = "python scripts/memory_report.py" + (f" --files {files}" if files else "")
    (out / "memory.md").write_text(
        f"# File-wide memory: measured targets\n\nMade by `{command}` (lmzip bench: archive written by"
        " `lmzip -c`, decoded and compared; ideal code lengths from the same run).\n\n" + text
    )
    parts = out / "readme_parts"
    parts.mkdir(exist_ok=True)
    (parts / "memory13.md").write_text(README_INTRO + text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", help="comma-separated paths under ../shared/corpus (default: the targets' files)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--memory-block", type=int)
    ap.add_argument("--resume", action="store_true", help="keep rows of docs/memory.json with the same settings")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--render", action="store_true", help="only rewrite the docs from docs/memory.json")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        print(f"memory_report: {CORPUS} not found (the shared corpus)", file=sys.stderr)
        return 1
    names = args.files.split(",") if args.files else DEFAULT_FILES
    store = args.out / "memory.json"
    if args.render:
        write_docs(args.out, json.loads(store.read_text()), args.files)
        return 0
    settings = {"batch": args.batch, "memory_block": args.memory_block}
    opts = BenchOptions(codecs=["lmzip", "xz"], threads=args.threads, batch=args.batch, memory_block=args.memory_block)
    rows: list[dict[str, Any]] = []
    if args.resume and store.is_file():
        rows = [r for r in json.loads(store.read_text()) if r["settings"] == settings and r["file"] in names]
    session = LmSession(opts)
    for name in names:
        if any(r["file"] == name for r in rows):
            continue
        results = list(bench_files([str(CORPUS / name)], opts, lambda m: print(m, file=sys.stderr), session=session))
        if {r.codec for r in results} != {"lmzip", "xz"}:
            print(f"memory_report: {name}: lmzip bench failed", file=sys.stderr)
            return 1
        rows.append(row(name, results, settings))
        rows.sort(key=lambda r: names.index(r["file"]))
        store.write_text(json.dumps(rows, indent=1) + "\n")
        write_docs(args.out, rows, args.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
