"""Measure the file-wide memory's acceptance targets and write docs/memory.md.

    python scripts/memory_report.py [--files urls.10K,alice29.txt] [--threads 1] [--resume]
    python scripts/memory_report.py --logs --threads 1   # the six logs of ../shared/corpus/logs
    python scripts/memory_report.py --render      # rewrite the docs from docs/memory.json

For each file of ../shared/corpus it runs `lmzip bench` (lmzip/bench.py: the archive
`lmzip -c` writes, decoded again and compared) with xz -9e beside it, and reports the
archive in bits per byte, the model's ideal code length alone and the mixed one (the
tables the lm records are coded with), and the target of lmzip's issue on file-wide
memory: urls.10K <= 1.55 bits/byte, alice29.txt <= 1.12, every log of logs/ <= 0.6x
xz -9e. Rows go to docs/memory.json after every file (a row of the same file and
settings is replaced; --resume skips files already measured with these settings);
docs/memory.md gets every row, README.md the logs' rows (between its memory_report
markers), with the commit and date each was measured at. With the model this takes
hours on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
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
LOGS = [name for name in DEFAULT_FILES if name.startswith("logs/")]
README_BEGIN = "<!-- memory_report: logs begin -->"
README_END = "<!-- memory_report: logs end -->"
NOTES = "## Notes"

sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from checkout import commit  # noqa: E402  (scripts/checkout.py)

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
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
        "bytes": lm.original_bytes,
        "xz": xz.compressed_bytes,
        "lmzip": lm.compressed_bytes,
        "roundtrip_ok": lm.roundtrip_ok,
        "bpb": lm.bpb,
        "model_bpb": lm.ideal_bpb,
        "mixed_bpb": lm.mixed_ideal_bpb,
    }


def block(r: dict[str, Any]) -> int:
    b = r["settings"]["memory_block"]
    return DEFAULT_MEMORY_BLOCK if b is None else b


def met(r: dict[str, Any]) -> bool:
    _, max_bpb, max_xz = target(r["file"])
    vs_xz = r["lmzip"] / r["xz"] if r["xz"] else math.inf
    return r["roundtrip_ok"] and (max_bpb is None or r["bpb"] <= max_bpb) and (max_xz is None or vs_xz <= max_xz)


def digit_floor(path: Path) -> tuple[int, int, int]:
    """(distinct HDFS block ids, their decimal digits, bytes those digits take at log2(10)
    bits each): what no model can predict when the ids are random."""
    ids = set(re.findall(rb"blk_-?([0-9]+)", path.read_bytes()))
    digits = sum(len(i) for i in ids)
    return len(ids), digits, math.ceil(digits * math.log2(10) / 8)


def logs_table(rows: list[dict[str, Any]]) -> str:
    """README's table: the logs at the default memory block."""
    out = [
        "| log | bytes | xz -9e | lmzip | vs xz | bits/byte | model alone (ideal) | with memory (ideal) "
        "| round trip | <= 0.6x xz | measured at |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    notes = []
    for r in rows:
        if not r["file"].startswith("logs/") or block(r) != DEFAULT_MEMORY_BLOCK:
            continue
        out.append(
            f"| {r['file'][5:]} | {r['bytes']:,} | {r['xz']:,} | **{r['lmzip']:,}** | {r['lmzip'] / r['xz']:.2f}x "
            f"| {r['bpb']:.3f} | {r['model_bpb']:.3f} | {r['mixed_bpb']:.3f} "
            f"| {'ok' if r['roundtrip_ok'] else 'FAILED'} | {'yes' if met(r) else 'no'} "
            f"| {r.get('commit', '-')}, {r.get('date', '-')} |"
        )
        if r["file"].endswith("HDFS_2k.log") and (CORPUS / r["file"]).is_file():
            ids, digits, floor = digit_floor(CORPUS / r["file"])
            limit = 0.6 * r["xz"]
            notes.append(
                f"\nHDFS_2k.log holds {ids:,} distinct block ids (`blk_...`): {digits:,} random decimal digits,"
                f" {floor:,} bytes at log2(10) bits each, {floor / limit:.0%} of 0.6x xz -9e ({limit:,.0f} B)"
                " before any timestamp, thread, address or message is coded."
            )
    return "\n".join(out) + "\n" + "".join(n + "\n" for n in notes)


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| file | memory block | bytes | xz -9e | lmzip | bits/byte | model alone (ideal) | with memory (ideal) "
        "| vs xz | target | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        desc = target(r["file"])[0]
        vs_xz = r["lmzip"] / r["xz"] if r["xz"] else float("nan")

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        out.append(
            f"| {r['file']} | {block(r)} "
            f"| {r['bytes']:,} | {r['xz']:,} | {r['lmzip']:,} | {f(r['bpb'])} | {f(r['model_bpb'])} "
            f"| {f(r['mixed_bpb'])} | {vs_xz:.2f}x | {desc} | {'yes' if met(r) else 'no'} |"
        )
    return "\n".join(out) + "\n"


def write_docs(out: Path, rows: list[dict[str, Any]], readme: Path | None) -> None:
    """docs/memory.md from every measured row; README.md's logs table from the logs' rows."""
    text = table(rows)
    print(text, flush=True)
    page = out / "memory.md"
    notes = ""  # a "## Notes" section (measurements made otherwise) is kept as it is
    if page.is_file() and NOTES in page.read_text():
        notes = NOTES + page.read_text().split(NOTES, 1)[1]
    page.write_text(
        "# File-wide memory: measured targets\n\nMade by `python scripts/memory_report.py` (`--logs` or"
        " `--files` picks the files, `--render` rewrites this page from docs/memory.json), on the machine of"
        " README.md: lmzip bench, the archive written by `lmzip -c` decoded and compared; ideal code lengths"
        " from the same run.\n\n"
        + text
        + "\n## Logs at the default memory block\n\n"
        + logs_table(rows)
        + ("\n" + notes if notes else "")
    )
    if readme is not None and readme.is_file():
        body = readme.read_text()
        if README_BEGIN in body and README_END in body:
            head, rest = body.split(README_BEGIN, 1)
            tail = rest.split(README_END, 1)[1]
            readme.write_text(f"{head}{README_BEGIN}\n{logs_table(rows)}{README_END}{tail}")
        else:
            print(f"memory_report: {readme} has no {README_BEGIN} marker: not updated", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", help="comma-separated paths under ../shared/corpus (default: the targets' files)")
    ap.add_argument("--logs", action="store_true", help="the six logs of logs/ (the same as --files with them)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--memory-block", type=int)
    ap.add_argument("--resume", action="store_true", help="keep rows of docs/memory.json with the same settings")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--render", action="store_true", help="only rewrite the docs from docs/memory.json")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README whose logs table is rewritten")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        print(f"memory_report: {CORPUS} not found (the shared corpus)", file=sys.stderr)
        return 1
    names = LOGS if args.logs else args.files.split(",") if args.files else DEFAULT_FILES
    store = args.out / "memory.json"
    rows: list[dict[str, Any]] = json.loads(store.read_text()) if store.is_file() else []
    if args.render:
        write_docs(args.out, rows, args.readme)
        return 0
    block_used = args.memory_block if args.memory_block is not None else DEFAULT_MEMORY_BLOCK
    settings = {"batch": args.batch, "memory_block": block_used}
    opts = BenchOptions(codecs=["lmzip", "xz"], threads=args.threads, batch=args.batch, memory_block=args.memory_block)
    session = LmSession(opts)
    order = {name: i for i, name in enumerate(DEFAULT_FILES)}
    for name in names:
        if args.resume and any(r["file"] == name and r["settings"] == settings for r in rows):
            continue
        results = list(bench_files([str(CORPUS / name)], opts, lambda m: print(m, file=sys.stderr), session=session))
        if {r.codec for r in results} != {"lmzip", "xz"}:
            print(f"memory_report: {name}: lmzip bench failed", file=sys.stderr)
            return 1
        rows = [r for r in rows if not (r["file"] == name and r["settings"] == settings)]
        rows.append(row(name, results, settings))
        rows.sort(key=lambda r: (order.get(r["file"], len(order)), r["file"], block(r)))
        store.write_text(json.dumps(rows, indent=1) + "\n")
        write_docs(args.out, rows, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
