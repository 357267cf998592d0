"""Benchmark lmzip against gzip/bzip2/xz/zstd on the shared corpus and write the report.

    python scripts/corpus_report.py [--no-lm] [--files alice29.txt,html] [--threads N]

Runs `lmzip bench` (lmzip/bench.py, every round trip verified) over ../shared/corpus and
writes, under docs/ (or --out):

- corpus.json     every result row, the settings, the machine, and the published figures;
- corpus.md       a Markdown table, one row per file, bits per byte per codec, with the
                  published figures from ../shared/corpus/README.md beside them;
- corpus_bpb.png  bits per byte per file and codec (only when matplotlib is installed:
                  `pip install -e '.[plot]'`).

With the model this takes hours on a 2-core CPU (about 1 KB/s to compress, slower to
decompress). corpus.json and corpus.md are rewritten after every file, and `--resume`
keeps the rows of an earlier run with the same settings, so an interrupted run can go on
where it stopped. With --no-lm every output says so in its title: lmzip's figures then
are zstd/stored chunks only, not the model's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
NOT_DATA = {"README.md", "SHA256SUMS"}

sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from checkout import commit  # noqa: E402  (scripts/checkout.py)

from lmzip.bench import (  # noqa: E402
    BASELINES,
    LMZIP,
    LMZIP_NO_LM,
    BenchOptions,
    LmSession,
    Result,
    bench_files,
    default_codecs,
    parse_codecs,
)


def published_figures(readme: Path) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The 'Published figures' table of the corpus README: (column names, {file: {col: bpb}})."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return [], {}
    part = text.split("Published figures", 1)
    if len(part) < 2:
        return [], {}
    rows = [ln.strip() for ln in part[1].splitlines() if ln.strip().startswith("|")]
    if len(rows) < 3:
        return [], {}

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip("|").split("|")]

    cols = cells(rows[0])[1:]
    figures: dict[str, dict[str, float]] = {}
    for line in rows[2:]:
        c = cells(line)
        vals = {}
        for col, v in zip(cols, c[1:], strict=False):
            if re.fullmatch(r"[0-9]+(\.[0-9]+)?", v):
                vals[col] = float(v)
        figures[c[0]] = vals
    return cols, figures


def codec_label(codec: str) -> str:
    if codec in BASELINES:
        return BASELINES[codec].label
    return "lmzip --no-lm" if codec == LMZIP_NO_LM else codec


def fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def markdown(doc: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = doc["results"]
    files = list(dict.fromkeys(r["file"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    by = {(r["file"], r["codec"]): r for r in rows}
    pub_cols: list[str] = doc["published"]["columns"]
    pub: dict[str, dict[str, float]] = doc["published"]["figures"]
    lm = doc["settings"]["use_lm"]
    has_ideal = any(r.get("ideal_bpb") is not None for r in rows)

    out = []
    if lm:
        out.append("# lmzip on the shared corpus (bits per byte, lower is better)\n")
    else:
        out.append("# NO-LM RUN: lmzip --no-lm on the shared corpus (bits per byte, lower is better)\n")
        out.append(
            "**This run did not use the language model** (`--no-lm`): the lmzip column is "
            "zstd/stored chunks only and says nothing about the model's compression.\n"
        )
    s = doc["settings"]
    out.append(
        f"Generated {doc['generated']} by `scripts/corpus_report.py` at lmzip {doc.get('commit', 'unknown')} "
        f"on {doc['machine']}; "
        f"chunk size {s['chunk_size']}, model {s['model'] or 'default'}. "
        "Every round trip verified. The best measured figure per file is in bold.\n"
    )
    head = ["file", "bytes", *(codec_label(c) for c in codecs)]
    if has_ideal:
        head.append("lmzip ideal (model cross-entropy)")
    head += [f"{c} (published)" for c in pub_cols]
    out.append("| " + " | ".join(head) + " |")
    out.append("| --- | " + " | ".join("---:" for _ in head[1:]) + " |")
    totals: dict[str, list[int]] = {}
    for f in files:
        name = Path(f).name
        cells_ = {c: by[(f, c)]["bpb"] for c in codecs if (f, c) in by}
        best = min((v for v in cells_.values() if v is not None), default=None)
        size = next(r["original_bytes"] for r in rows if r["file"] == f)
        line = [name, str(size)]
        for c in codecs:
            v = cells_.get(c)
            line.append(f"**{fmt(v)}**" if v is not None and v == best else fmt(v))
            if (f, c) in by:
                t = totals.setdefault(c, [0, 0])
                t[0] += by[(f, c)]["compressed_bytes"]
                t[1] += by[(f, c)]["original_bytes"]
        if has_ideal:
            line.append(fmt(by.get((f, LMZIP), {}).get("ideal_bpb")))
        line += [fmt(pub.get(name, {}).get(c)) for c in pub_cols]
        out.append("| " + " | ".join(line) + " |")
    if len(files) > 1:
        line = ["all files", str(sum(next(r["original_bytes"] for r in rows if r["file"] == f) for f in files))]
        for c in codecs:
            t = totals.get(c)
            complete = sum(1 for f in files if (f, c) in by) == len(files)
            line.append(fmt(8 * t[0] / t[1]) if t and t[1] and complete else "")
        if has_ideal:
            line.append("")
        line += ["" for _ in pub_cols]
        out.append("| " + " | ".join(line) + " |")
    out.append("")
    if pub_cols:
        out.append("Published figures: from `../shared/corpus/README.md` (not measured here).")
    if doc.get("model_load_s") is not None:
        out.append(f"Model load: {doc['model_load_s']:.1f} s (not in the timings).")
    out.append("")
    out.append("Seconds (compress / decompress):\n")
    out.append("| file | " + " | ".join(codec_label(c) for c in codecs) + " |")
    out.append("| --- | " + " | ".join("---:" for _ in codecs) + " |")
    for f in files:
        line = [Path(f).name]
        for c in codecs:
            r = by.get((f, c))
            line.append("" if r is None else f"{r['compress_s']:.2f} / {r['decompress_s']:.2f}")
        out.append("| " + " | ".join(line) + " |")
    return "\n".join(out) + "\n"


def plot(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"corpus_report: matplotlib not installed; skipping {path} (pip install -e '.[plot]')")
        return False
    rows = doc["results"]
    files = list(dict.fromkeys(r["file"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    by = {(r["file"], r["codec"]): r["bpb"] for r in rows}
    width = 0.8 / max(1, len(codecs))
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(files)), 5))
    for i, c in enumerate(codecs):
        xs = [j + (i - (len(codecs) - 1) / 2) * width for j in range(len(files))]
        ys = [by.get((f, c)) or 0 for f in files]
        ax.bar(xs, ys, width, label=codec_label(c))
    ax.set_xticks(range(len(files)), [Path(f).name for f in files], rotation=30, ha="right")
    ax.set_ylabel("bits per byte (lower is better)")
    title = "lmzip vs. general-purpose compressors" if doc["settings"]["use_lm"] else "NO-LM RUN (lmzip --no-lm)"
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-lm", action="store_true", help="lmzip without the model (fast; clearly labelled)")
    ap.add_argument("--files", help="comma-separated corpus file names (default: all)")
    ap.add_argument("--codecs", help="comma-separated subset of the bench codecs")
    ap.add_argument("--model", help="model name or GGUF path (default: lmzip's default model)")
    ap.add_argument("--threads", type=int, help="CPU threads for the model")
    ap.add_argument("--chunk-size", type=int, default=16384)
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="output folder (default: docs/)")
    ap.add_argument("--resume", action="store_true", help="keep rows of an earlier run with the same settings")
    args = ap.parse_args(argv)

    if not CORPUS.is_dir():
        sys.exit(f"corpus_report: corpus not found at {CORPUS} (expected ../shared/corpus beside the checkout)")
    available = sorted(p.name for p in CORPUS.iterdir() if p.is_file() and p.name not in NOT_DATA)
    names = available
    if args.files:
        names = [n.strip() for n in args.files.split(",") if n.strip()]
        unknown = [n for n in names if n not in available]
        if unknown:
            sys.exit(f"corpus_report: not in the corpus: {', '.join(unknown)} (have: {', '.join(available)})")
    try:
        codecs = parse_codecs(args.codecs) if args.codecs else default_codecs()
    except ValueError as e:
        sys.exit(f"corpus_report: {e}")
    opts = BenchOptions(
        codecs=codecs, use_lm=not args.no_lm, chunk_size=args.chunk_size, model=args.model, threads=args.threads
    )
    settings = {"use_lm": opts.use_lm, "chunk_size": opts.chunk_size, "model": opts.model, "codecs": codecs}
    pub_cols, pub = published_figures(CORPUS / "README.md")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = args.out / "corpus.json", args.out / "corpus.md", args.out / "corpus_bpb.png"

    done: list[dict[str, Any]] = []
    if args.resume and json_path.exists():
        old = json.loads(json_path.read_text())
        if old.get("settings") == settings:
            done = [r for r in old.get("results", []) if r["roundtrip_ok"] and Path(r["file"]).name in names]
            print(f"corpus_report: resuming: {len(done)} rows kept from {json_path}", file=sys.stderr)
        else:
            print("corpus_report: --resume: earlier run has other settings; starting over", file=sys.stderr)
    errors: list[str] = []
    session = LmSession(opts) if opts.use_lm and LMZIP in codecs else None

    def document(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "settings": settings,
            "model_load_s": session.load_s if session else None,
            "corpus": str(CORPUS),
            "published": {"columns": pub_cols, "figures": pub, "source": "../shared/corpus/README.md"},
            "errors": errors,
            "results": rows,
        }

    def write(rows: list[dict[str, Any]]) -> dict[str, Any]:
        doc = document(rows)
        json_path.write_text(json.dumps(doc, indent=2) + "\n")
        md_path.write_text(markdown(doc))
        return doc

    rows = list(done)
    order = {n: i for i, n in enumerate(names)}
    for name in names:
        have = {r["codec"] for r in done if Path(r["file"]).name == name}
        wanted = [c if c != LMZIP or opts.use_lm else LMZIP_NO_LM for c in codecs]
        if set(wanted) <= have:
            continue
        print(f"corpus_report: {name} ...", file=sys.stderr, flush=True)
        results: list[Result] = bench_files([str(CORPUS / name)], opts, errors.append, session=session)
        rows = [r for r in rows if Path(r["file"]).name != name]
        rows += [{**r.as_dict(), "file": name} for r in results]
        rows.sort(key=lambda r: order[Path(r["file"]).name])
        write(rows)
    doc = write(rows)
    for e in errors:
        print(f"corpus_report: {e}", file=sys.stderr)
    if plot(doc, png_path):
        print(f"corpus_report: wrote {png_path}")
    print(f"corpus_report: wrote {json_path} and {md_path}" + ("" if opts.use_lm else " (NO-LM run)"))
    return 1 if errors or not all(r["roundtrip_ok"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
