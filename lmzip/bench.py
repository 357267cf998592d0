"""`lmzip bench FILE...`: lmzip against the usual compressors, every round trip verified.

For each file: lmzip (default options, as `lmzip -c FILE` writes it), gzip -9, bzip2 -9,
xz -9e, zstd -19 and, when the `brotli` module is importable, brotli -q 11. The
baselines use Python's modules at those settings (see `BASELINES`); sizes match the
command-line tools within a few header bytes (gzip: the stored name; zstd: identical).

lmzip's row also carries the model's ideal code length (`ideal_bytes`) and, with the
file-wide memory on (numerics v7), the mixed ideal code length beside it
(`mixed_ideal_bytes`: the same sum over the mixed tables the lm records are coded
with), so the memory's gain shows per file. `ideal_bytes`: for every chunk
stored with the LM codec, the cross-entropy of its tokens under the engine's integer
frequencies, sum(-log2(freq / 2**24)) / 8, and for every other chunk its payload size.
Beside `payload_bytes` (all chunk payloads) and `compressed_bytes` (the archive) it
shows what the range coder and the container cost. The frequencies are taken from the
very `Engine.score` call that the LM codec makes while compressing (a tap on the
engine), so measuring them costs no second forward pass.

Importing this module never imports torch; the LM codec loads only when lmzip's row
needs it, once per bench run, and outside the timings (reported as `model_load_s`).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmzip import defaults
from lmzip.coder import TOTAL_BITS

PROG = "lmzip"
LMZIP = "lmzip"
LMZIP_NO_LM = "lmzip-nolm"  # lmzip's row under --no-lm: never to be mistaken for the LM's figures


# --------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class Baseline:
    name: str
    label: str  # the command line it stands for
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def _zstd_compress(data: bytes) -> bytes:
    import zstandard

    # The zstd CLI writes a content checksum by default; python-zstandard does not.
    return zstandard.ZstdCompressor(level=19, write_checksum=True).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)


def _brotli_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("brotli") is not None


def _brotli_compress(data: bytes) -> bytes:
    import brotli  # type: ignore[import-not-found]

    return brotli.compress(data, quality=11)


def _brotli_decompress(data: bytes) -> bytes:
    import brotli  # type: ignore[import-not-found]

    return brotli.decompress(data)


XZ_PRESET = 9 | lzma.PRESET_EXTREME

BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        # mtime=0: no timestamp, so the size and bytes are reproducible (gzip -9n).
        Baseline("gzip", "gzip -9", lambda d: gzip.compress(d, compresslevel=9, mtime=0), gzip.decompress),
        Baseline("bzip2", "bzip2 -9", lambda d: bz2.compress(d, 9), bz2.decompress),
        Baseline("xz", "xz -9e", lambda d: lzma.compress(d, preset=XZ_PRESET), lzma.decompress),
        Baseline("zstd", "zstd -19", _zstd_compress, _zstd_decompress),
        Baseline("brotli", "brotli -q 11", _brotli_compress, _brotli_decompress),
    )
}

CODEC_NAMES = (LMZIP, *BASELINES)


def default_codecs() -> list[str]:
    return [n for n in CODEC_NAMES if n != "brotli" or _brotli_available()]


def parse_codecs(text: str | None) -> list[str]:
    """'gzip,xz' -> ['gzip', 'xz'] (in the order given, duplicates dropped); None -> defaults."""
    if text is None:
        return default_codecs()
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in CODEC_NAMES:
            raise ValueError(f"unknown codec {name!r} (choose from {','.join(CODEC_NAMES)})")
        if name == "brotli" and not _brotli_available():
            raise ValueError("brotli: the brotli Python module is not installed")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("--codecs: no codec given")
    return names


# --------------------------------------------------------------------------- results

FIELDS = (
    "file",
    "codec",
    "original_bytes",
    "compressed_bytes",
    "ratio",
    "bpb",
    "compress_s",
    "decompress_s",
    "roundtrip_ok",
    "ideal_bytes",
    "ideal_bpb",
    "mixed_ideal_bytes",
    "mixed_ideal_bpb",
    "payload_bytes",
    "chunks",
    "coder_bytes",
)


@dataclass
class Result:
    file: str
    codec: str
    original_bytes: int
    compressed_bytes: int
    compress_s: float
    decompress_s: float
    roundtrip_ok: bool
    # lmzip only
    ideal_bytes: float | None = None  # model cross-entropy (lm chunks) + payloads of other chunks
    mixed_ideal_bytes: float | None = None  # the same with the memory-mixed tables (None: no memory)
    payload_bytes: int | None = None  # sum of the chunk payloads (archive minus container overhead)
    chunks: dict[str, int] | None = None  # chunks per codec inside the archive
    coder_bytes: dict[str, int] | None = None  # archive bytes per coder (ArchiveInfo.coder_bytes)

    @property
    def ratio(self) -> float | None:
        """original / compressed (higher is better)."""
        return self.original_bytes / self.compressed_bytes if self.compressed_bytes else None

    @property
    def bpb(self) -> float | None:
        """Bits per byte of input (lower is better); None for an empty file."""
        return 8 * self.compressed_bytes / self.original_bytes if self.original_bytes else None

    @property
    def ideal_bpb(self) -> float | None:
        if self.ideal_bytes is None or not self.original_bytes:
            return None
        return 8 * self.ideal_bytes / self.original_bytes

    @property
    def mixed_ideal_bpb(self) -> float | None:
        if self.mixed_ideal_bytes is None or not self.original_bytes:
            return None
        return 8 * self.mixed_ideal_bytes / self.original_bytes

    def as_dict(self) -> dict[str, Any]:
        def r(x: float | None, n: int) -> float | None:
            return None if x is None else round(x, n)

        return {
            "file": self.file,
            "codec": self.codec,
            "original_bytes": self.original_bytes,
            "compressed_bytes": self.compressed_bytes,
            "ratio": r(self.ratio, 4),
            "bpb": r(self.bpb, 4),
            "compress_s": r(self.compress_s, 4),
            "decompress_s": r(self.decompress_s, 4),
            "roundtrip_ok": self.roundtrip_ok,
            "ideal_bytes": r(self.ideal_bytes, 2),
            "ideal_bpb": r(self.ideal_bpb, 4),
            "mixed_ideal_bytes": r(self.mixed_ideal_bytes, 2),
            "mixed_ideal_bpb": r(self.mixed_ideal_bpb, 4),
            "payload_bytes": self.payload_bytes,
            "chunks": self.chunks,
            "coder_bytes": self.coder_bytes,
        }


@dataclass
class BenchOptions:
    codecs: list[str] = field(default_factory=default_codecs)
    use_lm: bool = True
    chunk_size: int = defaults.CHUNK_SIZE
    model: str | None = None
    device: str = "cpu"
    threads: int | None = None
    batch: int = defaults.BATCH
    window: int | None = None  # None: defaults.WINDOW
    memory_block: int | None = None  # None: the default; 0: no file-wide memory

    def compress_options(self, codec_factory: Callable[..., Any] | None = None) -> Any:
        """What `lmzip -c` would run with these settings."""
        from lmzip.pipeline import CompressOptions

        return CompressOptions(
            chunk_size=self.chunk_size,
            model=self.model,
            device=self.device,
            threads=self.threads,
            batch=self.batch,
            use_lm=self.use_lm,
            window=self.window,
            memory_block=self.memory_block,
            codec_factory=codec_factory,
        )

    def decompress_options(self, codec_factory: Callable[..., Any] | None = None) -> Any:
        from lmzip.pipeline import DecompressOptions

        return DecompressOptions(
            model=self.model, device=self.device, threads=self.threads, batch=self.batch, codec_factory=codec_factory
        )


# --------------------------------------------------------------------------- LM measurement


class _ScoreTap:
    """Stands in for the engine inside the LM codec: forwards everything, and records
    (token count, ideal bits) of every sequence that `score` returns."""

    def __init__(self, engine: Any, sink: list[tuple[int, float]]) -> None:
        self._engine = engine
        self._sink = sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def score(self, sequences: Any) -> Any:
        import numpy as np

        scored = self._engine.score(sequences)
        for _cums, freqs in scored:
            f = np.asarray(freqs, dtype=np.float64)
            self._sink.append((len(f), float(TOTAL_BITS * len(f) - np.log2(f).sum())))
        return scored


class MeasuredCodec:
    """The real LM codec (so the archive is byte for byte what `lmzip -c` writes), plus
    the ideal code length, in bits, of every chunk it encoded (None: not LM-coded).

    If the codec's internals ever stop matching (e.g. it no longer scores through
    `engine.score`, one sequence per coded chunk), `ideal_ok` turns False and the
    ideal size is reported as unknown rather than wrong."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._scored: list[tuple[int, float]] = []
        self.chunk_bits: list[float | None] = []
        self.text_bits: dict[bytes, float] = {}  # spans-capable codecs: sha1 of a scored text -> bits
        self.mixed_bits: dict[bytes, float] = {}  # file-wide memory: sha1 of an lm chunk -> its mixed bits
        self._texts: list[bytes] = []  # the texts of the last encode_texts call
        self.ideal_ok = hasattr(inner, "engine")
        if self.ideal_ok:
            inner.engine = _ScoreTap(inner.engine, self._scored)
        if getattr(inner, "encode_texts", None) is not None:
            self.encode_texts = self._encode_texts
        if getattr(inner, "finish_group", None) is None:
            self.finish_group = None  # type: ignore[assignment]  # the pipeline asks with getattr

    def __getattr__(self, name: str) -> Any:  # identity, numerics_version, context_window, ...
        return getattr(self._inner, name)

    def reset(self) -> None:
        self.chunk_bits = []
        self.text_bits = {}
        self.mixed_bits = {}
        self.ideal_ok = isinstance(getattr(self._inner, "engine", None), _ScoreTap)

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
        self._scored.clear()
        out = self._inner.encode_chunks(chunks)
        coded = [r for r in out if r is not None]
        if len(coded) != len(self._scored) or any(n != r[1] for (n, _), r in zip(self._scored, coded, strict=False)):
            self.ideal_ok = False
        scores = iter(self._scored)
        for r in out:
            self.chunk_bits.append(None if r is None else next(scores, (0, 0.0))[1])
        return out

    def fresh(self) -> MeasuredCodec:
        """An empty file-wide memory for the next archive; the measuring stays."""
        fresh = getattr(self._inner, "fresh", None)
        if fresh is not None:
            self._inner = fresh()  # the same (tapped) engine
        return self

    def finish_group(self, indices: list[int]) -> list[tuple[bytes, int]]:
        out = self._inner.finish_group(indices)
        for k, i in enumerate(indices):
            bits = getattr(self._inner, "last_mixed_bits", [])[k : k + 1]
            if bits and bits[0] is not None:
                self.mixed_bits[hashlib.sha1(self._texts[i]).digest()] = bits[0]
        return out

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        return self._inner.decode_chunks(items)

    def _encode_texts(self, texts: list[bytes]) -> list[tuple[bytes, int, int]]:
        self._scored.clear()
        self._texts = list(texts)
        out = self._inner.encode_texts(texts)
        coded = [r for r in out if r[1]]  # a text with tokens is one scored sequence
        if len(coded) != len(self._scored) or any(n != r[1] for (n, _), r in zip(self._scored, coded, strict=False)):
            self.ideal_ok = False
        scores = iter(self._scored)
        for t, r in zip(texts, out, strict=True):
            if r[1]:
                self.text_bits[hashlib.sha1(t).digest()] = next(scores, (0, 0.0))[1]
        return out


class LmSession:
    """Loads the LM codec once per bench run (timed separately) and shares it."""

    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.codec: MeasuredCodec | None = None
        self.load_s: float | None = None
        self._error: BaseException | None = None

    def get(self, *_: Any) -> MeasuredCodec:
        if self._error is not None:
            raise self._error
        if self.codec is None:
            from lmzip.pipeline import load_codec

            t0 = time.perf_counter()
            try:
                inner = load_codec(self.opts.compress_options())
            except Exception as e:
                self._error = e
                raise
            self.load_s = time.perf_counter() - t0
            self.codec = MeasuredCodec(inner)
        return self.codec


# --------------------------------------------------------------------------- running


class RoundTripError(Exception):
    pass


def _timed(fn: Callable[[], bytes]) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_baseline(name: str, data: bytes, file: str) -> Result:
    b = BASELINES[name]
    packed, t_c = _timed(lambda: b.compress(data))
    unpacked, t_d = _timed(lambda: b.decompress(packed))
    return Result(file, name, len(data), len(packed), t_c, t_d, unpacked == data)


def lmzip_archive(data: bytes, opts: BenchOptions, codec_factory: Callable[..., Any] | None = None) -> bytes:
    """What `lmzip -c FILE` writes for `data` (default options but those in opts)."""
    from lmzip.api import Compressor

    return Compressor.from_options(opts.compress_options(codec_factory)).compress(data)


def bench_lmzip(data: bytes, file: str, opts: BenchOptions, session: LmSession | None) -> Result:
    from lmzip.api import Decompressor
    from lmzip.pipeline import read_archive_info

    use_lm = opts.use_lm and session is not None
    codec = session.get() if use_lm and data and session is not None else None  # load outside the timer
    if codec is not None:
        codec.reset()
    factory = (lambda _o: codec) if codec is not None else None
    archive, t_c = _timed(lambda: lmzip_archive(data, opts, factory))

    def decompress() -> bytes:
        return Decompressor.from_options(opts.decompress_options(factory)).decompress(archive)

    unpacked, t_d = _timed(decompress)
    info = read_archive_info(io.BytesIO(archive))
    kinds = [getattr(e.codec, "name", str(e.codec)).lower() for e in info.chunks]
    payloads = [int(e.payload_length) for e in info.chunks]
    chunks: dict[str, int] = {}
    for k in kinds:
        chunks[k] = chunks.get(k, 0) + 1
    ideal: float | None = None
    if use_lm:
        if codec is None:  # empty input: nothing to code
            ideal = 0.0
        elif codec.ideal_ok and (codec.text_bits or len(codec.chunk_bits) == len(kinds)):
            bits = 0.0
            for i, (kind, size) in enumerate(zip(kinds, payloads, strict=True)):
                lm_bits: float | None = None
                if kind == "lm" and codec.text_bits:
                    e = info.chunks[i]
                    chunk = data[e.original_offset : e.original_offset + e.original_length]
                    lm_bits = codec.text_bits.get(hashlib.sha1(chunk).digest())
                elif kind == "lm":
                    lm_bits = codec.chunk_bits[i]
                if kind == "lm" and lm_bits is None:
                    break
                # spans records: their payload (the model's share of it is not split out here)
                bits += lm_bits if kind == "lm" else 8 * size  # type: ignore[operator]
            else:
                ideal = bits / 8
    mixed: float | None = None
    if use_lm and ideal is not None and codec is not None and codec.mixed_bits:
        total = 0.0
        for e, kind, size in zip(info.chunks, kinds, payloads, strict=True):
            chunk = data[e.original_offset : e.original_offset + e.original_length]
            m = codec.mixed_bits.get(hashlib.sha1(chunk).digest()) if kind == "lm" else 8.0 * size
            if m is None:
                break
            total += m
        else:
            mixed = total / 8
    return Result(
        file,
        LMZIP if opts.use_lm else LMZIP_NO_LM,
        len(data),
        len(archive),
        t_c,
        t_d,
        unpacked == data,
        ideal_bytes=ideal,
        mixed_ideal_bytes=mixed,
        payload_bytes=sum(payloads),
        chunks=chunks,
        coder_bytes=dict(info.coder_bytes),
    )


def bench_data(data: bytes, file: str, opts: BenchOptions, session: LmSession | None = None) -> Iterable[Result]:
    """One Result per codec in opts.codecs, in that order."""
    for name in opts.codecs:
        if name == LMZIP:
            yield bench_lmzip(data, file, opts, session)
        else:
            yield bench_baseline(name, data, file)


def read_input(path: str) -> bytes:
    if os.path.isdir(path):
        raise IsADirectoryError(21, "Is a directory", path)
    with open(path, "rb") as f:
        return f.read()


def _one_line(e: BaseException, where: str) -> str:
    from lmzip.errors import LmzipError

    if isinstance(e, OSError):
        return f"{e.filename if e.filename is not None else where}: {e.strerror or e}"
    if isinstance(e, LmzipError):
        return f"{where}: {e}"
    return f"{where}: internal error: {type(e).__name__}: {e}"


def bench_files(
    paths: Sequence[str],
    opts: BenchOptions,
    on_error: Callable[[str], None],
    on_result: Callable[[Result], None] | None = None,
    session: LmSession | None = None,
) -> list[Result]:
    """Bench every file; failures (unreadable file, codec error, round trip mismatch)
    go to on_error as one line each, and the run goes on with the next file/codec."""
    session = session or (LmSession(opts) if opts.use_lm and LMZIP in opts.codecs else None)
    results: list[Result] = []
    for path in paths:
        try:
            data = read_input(path)
        except OSError as e:
            on_error(_one_line(e, path))
            continue
        for name in opts.codecs:
            one = BenchOptions(**{**vars(opts), "codecs": [name]})
            try:
                with _status(f"{path}: {name}"):
                    (res,) = bench_data(data, path, one, session)
            except BrokenPipeError:
                raise
            except Exception as e:  # noqa: BLE001 - one line per failure, then go on
                if os.environ.get("LMZIP_DEBUG"):
                    raise
                on_error(_one_line(e, f"{path}: {name}"))
                continue
            if not res.roundtrip_ok:
                on_error(f"{path}: {res.codec}: round trip FAILED (decompressed data differs)")
            results.append(res)
            if on_result:
                on_result(res)
    return results


class _status:
    """A transient spinner on stderr while one codec runs (only on a terminal)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.cm: Any = None

    def __enter__(self) -> None:
        if sys.stderr.isatty():
            from rich.console import Console

            self.cm = Console(stderr=True).status(self.text)
            self.cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.cm is not None:
            self.cm.__exit__(*exc)


# --------------------------------------------------------------------------- output


def to_json(results: Sequence[Result], model_load_s: float | None = None) -> str:
    doc: dict[str, Any] = {"results": [r.as_dict() for r in results]}
    if model_load_s is not None:
        doc["model_load_s"] = round(model_load_s, 3)
    return json.dumps(doc, indent=2)


def to_csv(results: Sequence[Result]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    for r in results:
        d = r.as_dict()
        cells = []
        for k in FIELDS:
            v = d[k]
            if v is None:
                v = ""
            elif isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, dict):
                v = " ".join(f"{c}={n}" for c, n in v.items())
            cells.append(v)
        w.writerow(cells)
    return buf.getvalue()


def _label(codec: str) -> str:
    if codec in BASELINES:
        return BASELINES[codec].label
    return "lmzip --no-lm" if codec == LMZIP_NO_LM else codec


def _secs(x: float) -> str:
    return f"{x:.3f}s" if x < 10 else f"{x:.1f}s"


def print_table(results: Sequence[Result], model_load_s: float | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lmzip bench", title_justify="left")
    for col, just in (
        ("file", "left"),
        ("codec", "left"),
        ("original", "right"),
        ("compressed", "right"),
        ("ratio", "right"),
        ("bits/byte", "right"),
        ("compress", "right"),
        ("decompress", "right"),
        ("round trip", "center"),
    ):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    notes = []
    prev_file = None
    for r in results:
        first = r.file != prev_file
        if first and prev_file is not None:
            table.add_section()
        prev_file = r.file
        table.add_row(
            r.file if first else "",
            _label(r.codec),
            f"{r.original_bytes:,}",
            f"{r.compressed_bytes:,}",
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            "-" if r.bpb is None else f"{r.bpb:.3f}",
            _secs(r.compress_s),
            _secs(r.decompress_s),
            "ok" if r.roundtrip_ok else "[bold red]FAILED[/]",
        )
        if r.codec == LMZIP and r.ideal_bytes is not None and r.payload_bytes is not None:
            coded = r.mixed_ideal_bytes if r.mixed_ideal_bytes is not None else r.ideal_bytes
            notes.append(
                f"{r.file}: model cross-entropy {r.ideal_bytes:,.1f} B"
                + (f" ({r.ideal_bpb:.3f} bits/byte)" if r.ideal_bpb is not None else "")
                + (
                    f"; with file-wide memory {r.mixed_ideal_bytes:,.1f} B ({r.mixed_ideal_bpb:.3f} bits/byte)"
                    if r.mixed_ideal_bytes is not None and r.mixed_ideal_bpb is not None
                    else ""
                )
                + f"; chunk payloads {r.payload_bytes:,} B (coder {r.payload_bytes - coded:+,.1f} B)"
                + f"; archive {r.compressed_bytes:,} B (container {r.compressed_bytes - r.payload_bytes:+,} B)"
            )
        elif r.codec == LMZIP:
            notes.append(f"{r.file}: model cross-entropy unavailable")
        if r.codec in (LMZIP, LMZIP_NO_LM) and r.coder_bytes:
            parts = ", ".join(f"{k} {v:,}" for k, v in r.coder_bytes.items() if v)
            notes.append(f"{r.file}: {_label(r.codec)} bytes by coder: {parts} (escapes estimated)")
    # Piped output: rich would squeeze the table into 80 columns; let it take its width.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    for n in notes:
        console.print(n, highlight=False, soft_wrap=True)
    if model_load_s is not None:
        console.print(f"model load: {model_load_s:.1f}s (not included in the lmzip timings)", highlight=False)


def run_bench(files: Sequence[str], settings: Any, codecs: str | None, fmt: str = "table") -> int:
    """The `lmzip bench` command: returns the exit status (0 ok, 1 any failure).
    settings: lmzip.files.Settings (level, chunk_size, window, use_lm, model, device, threads, batch)."""
    status = 0

    def error(msg: str) -> None:
        nonlocal status
        print(f"{PROG}: {msg}", file=sys.stderr)
        status = 1

    try:
        names = parse_codecs(codecs)
    except ValueError as e:
        error(f"bench: {e}")
        return status
    use_lm = None if settings.use_lm else False  # --no-lm overrides the level
    lv = defaults.level_settings(settings.level, chunk_size=settings.chunk_size, window=settings.window, use_lm=use_lm)
    opts = BenchOptions(
        codecs=names,
        use_lm=lv.use_lm,
        chunk_size=lv.chunk_size,
        model=settings.model,
        device=settings.device,
        threads=settings.threads,
        batch=settings.batch,
        window=lv.window,
        memory_block=getattr(settings, "memory_block", None),
    )
    session = LmSession(opts) if opts.use_lm and LMZIP in names else None
    results = bench_files(files, opts, error, session=session)
    load_s = session.load_s if session else None
    if fmt == "json":
        print(to_json(results, load_s))
    elif fmt == "csv":
        sys.stdout.write(to_csv(results))
    elif results:
        print_table(results, load_s)
    return status
