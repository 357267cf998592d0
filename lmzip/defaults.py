"""lmzip's defaults and compression levels, defined once for the CLI, the API, the pipeline and bench.

Light on purpose (no imports beyond the standard library): the CLI reads it for `--help`.

A level picks the chunk size and the model's context window, the two settings that trade
ratio against speed; level 1 uses no model at all (stored/zstd records only). The archive
records what it needs (chunk size, window), so decompression takes no level.
`scripts/levels.py` measures every level and writes docs/levels.md.
"""

from __future__ import annotations

from dataclasses import dataclass

BATCH = 32  # chunks evaluated together (a read group when compressing; decoding slots)
CHUNK_SIZE = 16384  # bytes per independent chunk
WINDOW = 1024  # LM context window in tokens


@dataclass(frozen=True)
class Level:
    """What a compression level sets."""

    use_lm: bool
    chunk_size: int
    window: int


# Smaller chunks decode faster (more chunks advance side by side) and compress a little
# worse; a longer window sees more context per token and costs more per token.
LEVELS: dict[int, Level] = {
    1: Level(use_lm=False, chunk_size=CHUNK_SIZE, window=WINDOW),
    2: Level(use_lm=True, chunk_size=4096, window=256),
    3: Level(use_lm=True, chunk_size=4096, window=512),
    4: Level(use_lm=True, chunk_size=8192, window=512),
    5: Level(use_lm=True, chunk_size=8192, window=1024),
    6: Level(use_lm=True, chunk_size=CHUNK_SIZE, window=WINDOW),
    7: Level(use_lm=True, chunk_size=CHUNK_SIZE, window=2048),
    8: Level(use_lm=True, chunk_size=32768, window=2048),
    9: Level(use_lm=True, chunk_size=32768, window=4096),
}
LEVEL = 6  # the default: CHUNK_SIZE and WINDOW with the model
FAST, BEST = 1, 9  # --fast, --best

assert LEVELS[LEVEL] == Level(True, CHUNK_SIZE, WINDOW)


def level_settings(
    level: int | None = None,
    *,
    chunk_size: int | None = None,
    window: int | None = None,
    use_lm: bool | None = None,
) -> Level:
    """The settings of `level` (1..9, None: LEVEL), each replaced by the value given for it;
    ValueError for another level."""
    level = LEVEL if level is None else level
    if level not in LEVELS:
        raise ValueError(f"compression level must be 1..9, not {level!r}")
    lv = LEVELS[level]
    return Level(
        use_lm=lv.use_lm if use_lm is None else use_lm,
        chunk_size=lv.chunk_size if chunk_size is None else chunk_size,
        window=lv.window if window is None else window,
    )
