"""How much of lock-step decoding does work, from an archive's per-chunk token counts.

Decompression advances `--batch` slots by one token per engine step; a slot whose chunk
has ended idles until the codec gives it another chunk. The codec gets groups of
DECODE_LOOKAHEAD x batch lm chunks (lmzip/pipeline.py), refilling freed slots in order
within a group. This replays that schedule on the token counts in the archive's index
(no model, no torch) and prints, per lookahead, the engine steps and the share of
slot-steps that decode a token (docs/benchmarks.md's 58% -> 84% on the 20 MB text), and the same
for a streaming schedule that refills slots across the whole archive, with the largest
number of finished chunks it would hold back to write the output in order. An archive
with file-wide memory decodes one memory group at a time, its chunks side by side from
their first token to the group's longest (lmzip/lm_codec.py): a row "memory groups"
replays that schedule, the one such an archive gets today.

Run: python scripts/lockstep_occupancy.py ARCHIVE [--batch 64] [--lookaheads 1,2,4,8]
"""

from __future__ import annotations

import argparse
import heapq
import json

from lmzip.pipeline import read_archive_info


def finish_steps(tokens: list[int], slots: int) -> list[int]:
    """The step at which each chunk ends, decoding `tokens` (per chunk, in order) with
    `slots` slots, a freed slot taking the next chunk."""
    free = [0] * min(slots, len(tokens))
    ends = []
    for count in tokens:
        end = heapq.heappop(free) + count
        ends.append(end)
        heapq.heappush(free, end)
    return ends


def steps(tokens: list[int], slots: int) -> int:
    """Engine steps to decode `tokens` with `slots` refilled slots."""
    return max(finish_steps(tokens, slots), default=0)


def memory_group_calls(tokens: list[int], batch: int, block: int) -> int:
    """Engine calls for one memory group at one token per slot and call, as
    lm_codec._decode_group runs it: its chunks side by side to the longest when they fit
    the slots, else block by block in waves of `batch` chunks."""
    live = [t for t in tokens if t > 0]
    if len(live) <= batch:
        return max(live, default=0)
    calls = 0
    for start in range(0, max(live), block):
        todo = [t for t in live if t > start]
        for w in range(0, len(todo), batch):
            calls += min(block, max(todo[w : w + batch]) - start)
    return calls


def memory_groups(info) -> list[list[int]]:  # info: container.ArchiveInfo
    """Token counts of the lm records of each memory group, in order; [] for an archive
    without file-wide memory (its lm records share no memory, spans records never do)."""
    model = info.model
    if model is None or not model.memory_block:
        return []
    groups: dict[int, list[int]] = {}
    for r in info.records:
        if r.kind == "lm":
            groups.setdefault(r.first_chunk // model.memory_group, []).append(r.token_count)
    return list(groups.values())


def held_back(ends: list[int]) -> int:
    """Most chunks finished but not yet writable, output being in archive order: chunk i
    is written once chunks 0..i have all ended."""
    events, written = [], 0
    for end in ends:
        written = max(written, end)
        if written > end:
            events += [(end, 1), (written, -1)]
    depth = most = 0
    for _, change in sorted(events):  # at equal steps the writes (-1) come first
        depth += change
        most = max(most, depth)
    return most


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("archive")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lookaheads", default="1,2,4,8")
    args = ap.parse_args()
    with open(args.archive, "rb") as f:
        info = read_archive_info(f)
    tokens = [r.token_count for r in info.records if r.kind == "lm"]

    def row(lookahead: int | str, total: int) -> dict:
        return {"lookahead": lookahead, "steps": total, "occupancy": round(sum(tokens) / args.batch / max(total, 1), 3)}

    rows = []
    for look in map(int, args.lookaheads.split(",")):
        group = look * args.batch
        rows.append(row(look, sum(steps(tokens[i : i + group], args.batch) for i in range(0, len(tokens), group))))
    if groups := memory_groups(info):  # the schedule a memory archive gets
        block = info.model.memory_block
        rows.append(row("memory groups", sum(memory_group_calls(g, args.batch, block) for g in groups)))
    ends = finish_steps(tokens, args.batch)  # streaming: one group spanning the archive
    rows.append(row("streaming", max(ends, default=0)) | {"most_chunks_held_back": held_back(ends)})
    print(json.dumps({"lm_chunks": len(tokens), "tokens": sum(tokens), "batch": args.batch, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
