"""Check on a CUDA machine that archives made on the CPU decode bit-exactly there.

    python scripts/cuda_check.py [--device cuda] [--pair ARCHIVE ORIGINAL ...]

Runs, in one go: the golden engine vectors on the device (scripts/make_golden_vector.py
--check --device cuda), then for every golden archive in tests/golden/archives (made on the CPU)
`lmzip -d --device cuda` (must give the original) and `lmzip -c --device cuda` of the
original with the archive's recorded arguments (must give the identical archive bytes).
--pair adds more CPU-made archives with their originals (alice29.txt, say), timed.
Prints one line per check and a JSON summary; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "archives"


def lmzip(args: list[str], stdin: bytes) -> tuple[bytes, float]:
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "lmzip", *args], input=stdin, capture_output=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"lmzip {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode().strip()}")
    return proc.stdout, time.time() - t


def check_pair(name: str, archive: bytes, original: bytes, compress_args: list[str], device: str) -> dict:
    row: dict[str, object] = {"name": name, "bytes": len(original), "archive_bytes": len(archive)}
    try:
        decoded, d_s = lmzip(["-d", "-c", "--device", device], archive)
        row["decode_ok"] = decoded == original
        row["decompress_kb_s"] = round(len(original) / 1000 / d_s, 2)
        encoded, c_s = lmzip(["-c", "--device", device, *compress_args], original)
        row["encode_identical"] = encoded == archive
        row["compress_kb_s"] = round(len(original) / 1000 / c_s, 2)
        if not row["encode_identical"]:
            row["encoded_sha256"] = hashlib.sha256(encoded).hexdigest()
    except RuntimeError as exc:
        row["error"] = str(exc)
    ok = row.get("decode_ok") is True and row.get("encode_identical") is True
    row["ok"] = ok
    print(f"{name}: {'match' if ok else 'MISMATCH'} {json.dumps(row)}", flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pair", nargs=2, action="append", default=[], metavar=("ARCHIVE", "ORIGINAL"))
    ap.add_argument("--skip-vectors", action="store_true")
    args = ap.parse_args()

    import torch

    summary: dict[str, object] = {"torch": torch.__version__, "device": args.device}
    if args.device == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(json.dumps(summary), flush=True)
    ok = True
    if not args.skip_vectors:
        # --check: on --device cpu the script would otherwise rewrite the stored vectors
        script = str(ROOT / "scripts" / "make_golden_vector.py")
        vec = subprocess.run([sys.executable, script, "--check", "--device", args.device])
        summary["golden_vectors_ok"] = vec.returncode == 0
        ok &= vec.returncode == 0
    rows = []
    manifest = json.loads((GOLDEN / "MANIFEST.json").read_text())
    for name, entry in manifest["archives"].items():
        archive = (GOLDEN / entry["archive"]).read_bytes()
        original = (GOLDEN / entry["original"]).read_bytes()
        rows.append(check_pair(name, archive, original, entry["args"], args.device))
    for archive_path, original_path in args.pair:
        archive, original = Path(archive_path).read_bytes(), Path(original_path).read_bytes()
        rows.append(check_pair(Path(original_path).name, archive, original, [], args.device))
    ok &= all(r["ok"] for r in rows)
    summary["archives"] = rows
    summary["all_ok"] = ok
    print(json.dumps(summary, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
