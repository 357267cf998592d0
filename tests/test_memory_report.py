"""scripts/memory_report.py's tables: what README and docs/memory.md say comes from the
measured rows (target met or not, round trip), and only the marked part of README changes."""

from __future__ import annotations

from pathlib import Path

from script_modules import load_script

report = load_script("memory_report")


def _row(name: str, lmzip: int, xz: int, ok: bool = True, block: int | None = 12) -> dict:
    return {
        "file": name,
        "settings": {"batch": 32, "memory_block": block},
        "commit": "abc1234",
        "date": "2026-12-02",
        "bytes": 100_000,
        "xz": xz,
        "lmzip": lmzip,
        "roundtrip_ok": ok,
        "bpb": 8 * lmzip / 100_000,
        "model_bpb": 0.5,
        "mixed_bpb": 0.4,
    }


def test_targets_need_the_ratio_and_the_round_trip() -> None:
    assert report.met(_row("logs/Linux_2k.log", 600, 1000))
    assert not report.met(_row("logs/Linux_2k.log", 601, 1000))
    assert not report.met(_row("logs/Linux_2k.log", 500, 1000, ok=False))
    assert report.met(_row("alice29.txt", 14_000, 48_000))  # 1.12 bits/byte
    assert not report.met(_row("alice29.txt", 14_001, 48_000))


def test_readme_gets_the_logs_table_between_its_markers(tmp_path: Path) -> None:
    rows = [
        _row("logs/Linux_2k.log", 550, 1000),
        _row("logs/Spark_2k.log", 700, 1000, ok=False),
        _row("logs/Apache_2k.log", 400, 1000, block=16),  # not the default block: docs/memory.md only
        _row("alice29.txt", 14_000, 48_000),
    ]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_BEGIN}\nold table\n{report.README_END}\nrest\n")
    (tmp_path / "memory.md").write_text(f"old page\n{report.NOTES}\n\nkept by hand\n")
    report.write_docs(tmp_path, rows, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{report.README_END}\nrest\n") and "old table" not in text
    assert "| Linux_2k.log | 100,000 | 1,000 | **550** | 0.55x |" in text
    assert "| ok | yes | abc1234, 2026-12-02 |" in text
    assert "| FAILED | no |" in text  # Spark: round trip failed, ratio missed
    assert "Apache" not in text and "alice29" not in text
    page = (tmp_path / "memory.md").read_text()
    assert "logs/Apache_2k.log | 16 |" in page and page.endswith(f"{report.NOTES}\n\nkept by hand\n")
    without = tmp_path / "OTHER.md"
    without.write_text("no markers\n")
    report.write_docs(tmp_path, rows, without)
    assert without.read_text() == "no markers\n"


def test_hdfs_digit_floor(tmp_path: Path, monkeypatch) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "HDFS_2k.log").write_bytes(b"blk_123 x blk_-4567\nblk_123 again\n")
    assert report.digit_floor(logs / "HDFS_2k.log") == (2, 7, 3)  # 7 digits * 3.32 bits = 23.3 bits
    monkeypatch.setattr(report, "CORPUS", tmp_path)
    text = report.logs_table([_row("logs/HDFS_2k.log", 800, 1000)])
    assert "2 distinct block ids" in text and "7 random decimal digits, 3 bytes" in text


variants = load_script("memory_variants")


def test_variant_replay_restores_the_constants_and_counts_kinds() -> None:
    mem = variants.mem
    assert bytes(variants.kinds_of(b"blk_-12 at 10.0.0.1:80 x7")) == b"ooooobboooo" + b"i" * 11 + b"ood"
    rep = list(range(3, 40))  # a flat model of 64 tokens; the second copy is a repeat
    f = mem.TOTAL // 64
    group = [(rep, [t * f for t in rep], [f] * len(rep))]
    cache = {"vocab": 64, "groups": [group, group], "pieces": {t: b"%c" % (60 + t) for t in rep}}
    before = mem.NGRAM_ORDERS
    with variants.patched(variants.VARIANTS["ngram+6,8"]):
        assert mem.NGRAM_ORDERS[7] == (1, 2, 3, 4, 6, 8)
        seen: list[str] = []
        mixed, model = variants.replay(cache, lambda piece, kind, lm_f, mixed_f: seen.append(kind))
    assert mem.NGRAM_ORDERS == before
    assert len(seen) == 2 * len(rep) and model == 2 * len(rep) * 6 / 8  # 6 bits a token, flat
    assert mixed < 0.8 * model  # the repeat is cheap
