"""A fast, deterministic subset of scripts/fuzz.py through the whole decode path.

test_container.py fuzzes the parser; this drives `decompress_stream` with the fake
LM codec, so lm and model identity records are decoded too, over the same base
archives and mutations as the script (truncations, bit flips, insertions, deletions,
huge varints, wrong versions, record/index/header field edits and model record
numerics/memory group/block edits with their CRCs recomputed, record
drops/duplicates/swaps, trailing garbage, splices). The contract: the exact original
(for a splice, the original of one of its parts) or an LmzipError, within a time
limit. `scripts/fuzz.py --seconds N` runs the long version, with the info and CLI -t
paths and an address-space cap.
"""

from __future__ import annotations

import io
import random

import pytest
from script_modules import load_script

import lmzip
from lmzip.container import VERSION
from lmzip.errors import LmzipError

fuzz = load_script("fuzz")
BASES = fuzz.make_bases()
LM_BASES = [name for name in BASES if name.endswith("-lm") or name in ("multi-group", "model-later")]
assert "spans-lm" in LM_BASES
LIMIT = 10.0  # seconds per case: a hang guard, not a speed test (cases take about a millisecond)


def decode(blob: bytes, batch: int = 32, pipe: bool = False) -> bytes:
    out = io.BytesIO()
    src = fuzz.Pipe(blob) if pipe else io.BytesIO(blob)
    lmzip.Decompressor(batch=batch, codec_factory=fuzz.fake_factory).copy_stream(src, out)
    return out.getvalue()


def outcome(blob: bytes, batch: int = 32, pipe: bool = False) -> bytes | None:
    """The decoded bytes, or None for an LmzipError; a hang or any other exception fails."""
    res = fuzz._call(lambda: decode(blob, batch, pipe), LIMIT)
    if res.ok:
        return res.value
    assert not res.failure, res.failure
    return None


def test_bases_hold_every_record_kind() -> None:
    kinds = set()
    for name, (original, archive) in BASES.items():
        assert decode(archive) == original, name
        assert decode(archive, batch=1, pipe=True) == original, name
        kinds |= {r[1] for r in fuzz.layout_of(archive).records}
    assert kinds == {0, 1, 2, 3, 4, 5, 6}  # stored, zstd, lm, model identity, spans, model reference, lzma


@pytest.mark.parametrize("name", LM_BASES)
def test_truncated_everywhere(name: str) -> None:
    _, archive = BASES[name]
    for cut in range(len(archive)):
        assert outcome(archive[:cut], batch=1 + cut % 3) is None, cut


def test_one_changed_byte_everywhere() -> None:
    original, archive = BASES["multi-group"]
    rng = random.Random(7)
    errors = 0
    for pos in range(len(archive)):
        damaged = bytearray(archive)
        damaged[pos] ^= 1 << rng.randrange(8)
        got = outcome(bytes(damaged), batch=rng.choice([1, 2, 32]), pipe=pos % 4 == 0)
        assert got in (None, original), pos
        errors += got is None
    assert errors > len(archive) * 0.9  # only ignorable padding bits may go unnoticed


def test_wrong_versions_and_trailing_bytes() -> None:
    for name, (_, archive) in BASES.items():
        for v in (0, 1, VERSION + 1, 255):
            with pytest.raises(LmzipError, match="unsupported format version"):
                decode(archive[:4] + bytes([v]) + archive[5:])
            with pytest.raises(LmzipError, match="unsupported format version"):
                decode(fuzz.fix_header_crc(archive[:4] + bytes([v]) + archive[5:]))
        for tail in (b"\0", b"LMZ", archive[:-1], archive[1:], BASES["empty"][1][:-1]):
            assert outcome(archive + tail) is None, name
        # Concatenated archives are one stream (like gzip members); empty ones add nothing.
        original = BASES[name][0]
        assert outcome(archive + BASES["empty"][1]) == original, name
        assert outcome(archive + archive, batch=2, pipe=True) == original + original, name


@pytest.mark.parametrize("seed", range(4))
def test_random_mutations(seed: int) -> None:
    rng = random.Random(seed)
    layouts = {name: fuzz.layout_of(archive) for name, (_, archive) in BASES.items()}
    mutator = fuzz.Mutator(BASES, layouts, rng)
    decoded = 0
    for _ in range(1500):
        blob, trace, allowed = mutator.random_case()
        got = outcome(blob, batch=rng.choice([1, 2, 3, 32]), pipe=rng.random() < 0.25)
        assert got is None or got in allowed, " ".join(trace)
        decoded += got is not None
    assert decoded < 300  # most mutations must be caught


def test_structural_edits_reach_the_layout_checks() -> None:
    # Field edits with the end's CRC of the fields recomputed (format v4 bases: repeated
    # in the index) get past that check to the layout rules and the data checks.
    original, archive = BASES["multi-group"]
    lay = fuzz.layout_of(archive)
    recs = fuzz.split_records(archive, lay)
    assert decode(fuzz.rebuild(archive, lay, recs)) == original
    model = next(i for i, r in enumerate(recs) if r[0] == 3)
    first_lm = next(i for i, r in enumerate(recs) if r[0] == 2)
    cases = {
        "lm record before the model identity record": recs[:model] + recs[model + 1 :],
        "second model identity record": recs[: first_lm + 1] + [recs[model]] + recs[first_lm + 1 :],
        "data after the short last chunk": recs[:-1] + [recs[-1], recs[-1]],
    }
    for message, edited in cases.items():
        with pytest.raises(LmzipError, match=message):
            decode(fuzz.rebuild(archive, lay, edited))
    for i, (kind, values, rest) in enumerate(recs):
        for j in range(len(values)):
            for v in (0, values[j] + 1, 64 << 20, 2**64 - 1, 2**64):
                if v == values[j]:  # an lm record's shortfall 0 (format v5): no edit
                    continue
                edited = list(recs)
                edited[i] = (kind, [*values[:j], v, *values[j + 1 :]], rest)
                assert outcome(fuzz.rebuild(archive, lay, edited)) is None, (i, j, v)


@pytest.mark.parametrize("name", list(fuzz.HOSTILE_NAMES))
def test_hostile_model_names_through_every_path(name: str) -> None:
    """Names that are paths, `..`, 255 bytes or control characters: decoded by hash, the
    real lookup touches only the cache (scripts/fuzz.py's `resolve` path), info prints
    them escaped; damaged copies end in an LmzipError the same way."""
    original, archive = BASES[name]
    model = fuzz.read_archive_info(io.BytesIO(archive)).model
    assert model is not None and model.name == fuzz.HOSTILE_NAMES[name]
    res = fuzz.check(archive, {original})
    assert fuzz.signature(res) == (), res
    assert res["decode"].value == original and res["resolve"].label == "found"
    rng = random.Random(name)
    for pos in range(0, len(archive), 5):
        damaged = bytearray(archive)
        damaged[pos] ^= 1 << rng.randrange(8)
        res = fuzz.check(bytes(damaged), {original}, paths=("decode", "info-seek", "resolve"))
        assert fuzz.signature(res) == (), (pos, res)


def test_resolve_path_catches_a_lookup_that_opens_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from lmzip.engine import loader

    monkeypatch.setattr(loader, "find_model", lambda want: Path(want.name).is_file())
    original, archive = BASES["name-path"]
    res = fuzz.check(archive, {original}, paths=("resolve",))
    assert res["resolve"].failure and "/etc/passwd" in res["resolve"].failure, res


def test_model_record_memory_fields_edited(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model record's numerics version and file-wide memory fields (group, block),
    rewritten with the record's CRC, length and index fixed (scripts/fuzz.py's `model`
    mutation): the original where the edit is still a valid layout the decoder can claim,
    else an LmzipError naming the field."""
    from lmzip.container import MAX_MEMORY_BLOCK, MAX_MEMORY_GROUP

    original, archive = BASES["memory-lm"]
    lay = fuzz.layout_of(archive)
    model = next(r for r in fuzz.split_records(archive, lay) if r[0] == 3)
    parsed = fuzz.model_body_fields(model[2][4:])
    assert parsed is not None
    numerics, window, group, block = parsed[1]
    assert (numerics, group, block) == (5, 3, 16)
    # 65,536 chunks of 200 bytes: a group within MAX_MEMORY_GROUP_BYTES
    valid = [[5, window, 3, 16], [5, window, 1, 16], [5, window, MAX_MEMORY_GROUP, 16], [5, window, 3, 1]]
    for values in valid:
        assert decode(fuzz.with_model_fields(archive, lay, values), batch=2) == original, values
    refused = {
        "out of range": [
            [5, window, 0, 16],
            [5, window, 3, 0],
            [5, window, MAX_MEMORY_GROUP + 1, 16],
            [5, window, 3, MAX_MEMORY_BLOCK + 1],
        ],  # fmt: skip
        "numerics": [[6, window, 3, 16]],
        "model identity": [[4, window, 3, 16], [5, window]],  # memory fields without v5, v5 without them
    }
    for message, cases in refused.items():
        for values in cases:
            with pytest.raises(LmzipError, match=message):
                decode(fuzz.with_model_fields(archive, lay, values))
    from lmzip import pipeline

    monkeypatch.setattr(pipeline, "MAX_MEMORY_GROUP_BYTES", 3 * 200 - 1)  # the base's 3 chunks of 200 bytes
    with pytest.raises(LmzipError, match="memory group of 3 chunks of 200 bytes exceeds"):
        decode(archive)
    original, archive = BASES["text-lm"]  # a model record without memory fields
    lay = fuzz.layout_of(archive)
    for values in ([5, window], [5, window, 3]):
        assert outcome(fuzz.with_model_fields(archive, lay, values)) is None, values


def test_resolve_path_of_a_model_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference to the default model resolves to the installed default model through
    the real lookup; a lookup that looked anywhere else for it fails the check."""
    from lmzip.engine import loader

    original, archive = BASES["known-model"]
    res = fuzz.check(archive, {original}, paths=("decode", "resolve"))
    assert fuzz.signature(res) == () and res["resolve"].label == "found", res
    monkeypatch.setattr(loader, "find_model", lambda want: "somewhere else")
    res = fuzz.check(archive, {original}, paths=("resolve",))
    assert res["resolve"].failure and "not the installed default model" in res["resolve"].failure, res
