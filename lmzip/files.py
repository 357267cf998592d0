"""gzip's per-file behaviour: what `lmzip [options] FILE...` does with each FILE.

Compress FILE to FILE.lmz (or stdin to stdout), decompress, test and list, each file
on its own: an error is reported in one line and processing continues with the next
file. Exit codes follow gzip: 0 ok, 1 error, 2 warning (an error wins over a warning).
The command line (cli.py) parses options into `Settings` and calls `run`.

Import cost matters: this module imports no torch (the API loads the model at the first
chunk that needs it); rich is imported only for a progress bar.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

import click

from lmzip import defaults
from lmzip.api import Compressor, Decompressor
from lmzip.fileio import AtomicOutput

SUFFIX = ".lmz"
EXIT_OK, EXIT_ERROR, EXIT_WARNING = 0, 1, 2
PROG = "lmzip"

ProgressFn = Callable[[int], None]


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Everything the per-file actions need, gathered from any of the entry points."""

    decompress: bool = False
    test: bool = False
    list: bool = False
    stdout: bool = False
    keep: bool = False
    force: bool = False
    verbose: bool = False
    quiet: bool = False
    name: bool = False
    recursive: bool = False
    suffix: str = SUFFIX
    model: str | None = None
    device: str = "cpu"
    threads: int | None = None
    batch: int = defaults.BATCH
    level: int = defaults.LEVEL
    chunk_size: int | None = None  # None: the level's
    window: int | None = None  # None: the level's
    memory_block: int | None = None  # file-wide memory block in positions; 0: none; None: the default
    use_lm: bool = True  # False (--no-lm) overrides the level
    # The Compressor / Decompressor of this run: the model loads once for all its files.
    engines: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Reporter:
    """Collects the exit status and prints gzip-style one-line diagnostics."""

    quiet: bool = False
    status: int = EXIT_OK
    err: IO[str] = field(default_factory=lambda: sys.stderr)

    def error(self, msg: str) -> None:
        print(f"{PROG}: {msg}", file=self.err)
        self.status = EXIT_ERROR

    def warn(self, msg: str) -> None:
        # gzip -q silences warnings but still reports them in the exit status.
        if not self.quiet:
            print(f"{PROG}: {msg}", file=self.err)
        if self.status == EXIT_OK:
            self.status = EXIT_WARNING


class Skip(Exception):
    """A per-file warning: report it and go on (exit status 2)."""


# --------------------------------------------------------------------------- streams


class CountingWriter:
    """Write-only wrapper that counts bytes, so sizes are known even for pipes."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = self.raw.write(data)
        n = len(data) if n is None else n
        self.count += n
        return n

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


class CountingReader:
    """Counts bytes handed to the pipeline; works for pipes, where tell() does not."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data

    def read1(self, n: int = -1) -> bytes:
        data = self.raw.read1(n)  # type: ignore[attr-defined]
        self.count += len(data)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        n = self.raw.readinto(buf) or 0  # type: ignore[attr-defined]
        self.count += n
        return n

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class NullSink:
    """Destination for `-t`: decoding still happens, nothing is stored."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


def _stdout() -> BinaryIO:
    return sys.stdout.buffer


@contextmanager
def seekable_input(src: BinaryIO) -> Iterator[BinaryIO]:
    """A seekable source: a pipe is spooled into a temp file first (readers seek over
    payloads, and to a format v2-v4 archive's index)."""
    try:
        seekable = src.seekable()
    except (AttributeError, OSError, ValueError):
        seekable = False
    if seekable:
        yield src
        return
    import shutil
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        shutil.copyfileobj(src, tmp, 1 << 20)
        tmp.seek(0)
        yield tmp  # type: ignore[misc]


# --------------------------------------------------------------------------- progress


@contextmanager
def progress_bar(total: int | None, label: str, enabled: bool) -> Iterator[ProgressFn | None]:
    """A rich bar on stderr; None (no bar) when quiet, size unknown, or stderr not a tty."""
    if not enabled or not total or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


# --------------------------------------------------------------------------- pipeline glue


def _compressor(s: Settings) -> Compressor:
    """The run's Compressor (made at the first file that needs it)."""
    if "compressor" not in s.engines:
        s.engines["compressor"] = Compressor(
            s.level,
            chunk_size=s.chunk_size,
            window=s.window,
            use_lm=None if s.use_lm else False,
            model=s.model,
            device=s.device,
            threads=s.threads,
            batch=s.batch,
            memory_block=s.memory_block,
        )
    return s.engines["compressor"]


def _decompressor(s: Settings) -> Decompressor:
    """The run's Decompressor, made from _decompress_options(s)."""
    if "decompressor" not in s.engines:
        s.engines["decompressor"] = Decompressor.from_options(_decompress_options(s))
    return s.engines["decompressor"]


def _decompress_options(s: Settings) -> Any:
    from lmzip.pipeline import DecompressOptions

    return DecompressOptions(model=s.model, device=s.device, threads=s.threads, batch=s.batch)


def _info(src: BinaryIO) -> Any:
    from lmzip.pipeline import read_archive_info

    return read_archive_info(src)


def ratio(original: int, compressed: int) -> float:
    """gzip's figure: space saved, in percent (negative when the output grew)."""
    return 0.0 if original == 0 else 100.0 * (1 - compressed / original)


# --------------------------------------------------------------------------- per-file actions


def _safe_basename(name: str) -> str | None:
    # A stored name comes from the archive, i.e. from whoever made it: never a path.
    base = os.path.basename(name.replace("\\", "/"))
    return base if base not in ("", ".", "..") else None


def _open_regular(path: str, s: Settings) -> tuple[BinaryIO, os.stat_result]:
    if os.path.isdir(path):  # checked first: open() would fail with a less useful error
        raise Skip(f"{path} is a directory -- ignored")
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) and not (s.force or s.stdout):
            raise Skip(f"{path} is not a directory or a regular file - ignored")
    except BaseException:
        f.close()
        raise
    return f, st


def compress_one(path: str | None, s: Settings) -> str | None:
    """Compress a file (or stdin when path is None); returns the verbose line."""
    if path is None:
        src = CountingReader(_stdin())
        out = CountingWriter(_stdout())
        _compressor(s).copy_stream(src, out)
        out.flush()
        return f"stdin:\t{ratio(src.count, out.count):5.1f}%"
    if path.endswith(s.suffix):
        raise Skip(f"{path} already has {s.suffix} suffix -- unchanged")
    raw, st = _open_regular(path, s)
    with raw:
        src = CountingReader(raw)
        name, mtime = (os.path.basename(path), int(st.st_mtime)) if s.name else (None, None)
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
        target = None if s.stdout else path + s.suffix
        with progress_bar(size, os.path.basename(path), not s.quiet) as prog:
            if target is None:
                out = CountingWriter(_stdout())
                _compressor(s).copy_stream(src, out, name=name, mtime=mtime, progress=prog)
                out.flush()
            else:
                with AtomicOutput(target, overwrite=s.force, like=st) as f:
                    out = CountingWriter(f)
                    _compressor(s).copy_stream(src, out, name=name, mtime=mtime, progress=prog)
    # Only now, with the archive renamed into place, may the input go.
    if target is not None and not s.keep:
        os.unlink(path)
    return _verbose_line(path, src.count, out.count, target, s)


def _verbose_line(path: str, n_in: int, n_out: int, target: str | None, s: Settings) -> str:
    r = ratio(n_in, n_out) if not s.decompress else ratio(n_out, n_in)
    line = f"{path}:\t{r:5.1f}%"
    if target is not None:
        line += f" -- {'created' if s.keep else 'replaced with'} {target}"
    return line


def decompression_target(path: str, suffix: str = SUFFIX) -> str:
    if not path.endswith(suffix) or len(path) == len(suffix) or path.endswith("/" + suffix):
        raise Skip(f"{path}: unknown suffix -- ignored")
    return path[: -len(suffix)]


def _resolve_archive(path: str, suffix: str = SUFFIX) -> str:
    # Like gzip: `lmzip -d foo` finds foo.lmz when foo itself does not exist.
    if not path.endswith(suffix) and not os.path.lexists(path) and os.path.exists(path + suffix):
        return path + suffix
    return path


def decompress_one(path: str | None, s: Settings) -> str | None:
    dec = _decompressor(s)
    if path is None:
        out = CountingWriter(_stdout())
        dec.copy_stream(_stdin(), out)
        out.flush()
        return None
    path = _resolve_archive(path, s.suffix)
    target = None if s.stdout else decompression_target(path, s.suffix)
    src, st = _open_regular(path, s)
    with src:
        mtime = None
        if s.name and target is not None:
            info = _info(src)
            src.seek(0)
            safe = _safe_basename(info.name) if info.name else None
            if safe:
                target = os.path.join(os.path.dirname(path), safe)
                if os.path.abspath(target) == os.path.abspath(path):
                    raise Skip(f"{path}: stored name is the archive itself -- ignored")
            mtime = info.mtime
        with progress_bar(st.st_size, os.path.basename(path), not s.quiet) as prog:
            if target is None:
                out = CountingWriter(_stdout())
                dec.copy_stream(src, out, progress=prog)
                out.flush()
            else:
                with AtomicOutput(target, overwrite=s.force, like=st, mtime=mtime) as f:
                    out = CountingWriter(f)
                    dec.copy_stream(src, out, progress=prog)
        n_in = st.st_size
    if target is not None and not s.keep:
        os.unlink(path)
    return _verbose_line(path, n_in, out.count, target, s)


def test_one(path: str | None, s: Settings) -> str | None:
    dec = _decompressor(s)
    if path is None:
        dec.test(_stdin())
        return None
    path = _resolve_archive(path, s.suffix)
    src, st = _open_regular(path, s)
    with src, progress_bar(st.st_size, os.path.basename(path), not s.quiet) as prog:
        dec.test(src, progress=prog)
    return f"{path}:\t OK"


LIST_HEADER = f"{'compressed':>19} {'uncompressed':>19}  ratio uncompressed_name"


class Lister:
    """gzip -l: a header, one line per archive, and a totals line for several. With -v,
    each line starts with the model's hash (12 hex digits) and label ('-': no model)."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.rows = 0
        self.total_c = 0
        self.total_u = 0

    def one(self, path: str | None, s: Settings) -> None:
        if path is None:
            with seekable_input(_stdin()) as src:
                self._row(src, "stdin", None)
            return
        path = _resolve_archive(path, s.suffix)
        src, _st = _open_regular(path, s)
        with src:
            name = path[: -len(s.suffix)] if path.endswith(s.suffix) else path
            self._row(src, name, path)

    def _row(self, src: BinaryIO, name: str, path: str | None) -> None:
        from lmzip.pipeline import read_archive_infos

        # Concatenated archives: one row, their sizes summed (docs/FORMAT.md).
        infos = read_archive_infos(src)
        original = sum(info.original_size for info in infos)
        src.seek(0, os.SEEK_END)
        compressed = src.tell()
        model = ""
        if self.verbose:
            from lmzip.container import printable_label

            # the first archive's model that has one (concatenated archives may differ)
            m = next((info.model for info in infos if info.model is not None), None)
            model = f"{m.model_hash[:6].hex():<12} {printable_label(m.name):<24} " if m else f"{'-':<12} {'-':<24} "
        if self.rows == 0:
            click.echo(f"{'model_hash':<12} {'model':<24} {LIST_HEADER}" if self.verbose else LIST_HEADER)
        click.echo(f"{model}{compressed:>19} {original:>19} {ratio(original, compressed):5.1f}% {name}")
        self.rows += 1
        self.total_c += compressed
        self.total_u += original

    def totals(self) -> None:
        if self.rows > 1:
            r = ratio(self.total_u, self.total_c)
            pad = " " * 38 if self.verbose else ""
            click.echo(f"{pad}{self.total_c:>19} {self.total_u:>19} {r:5.1f}% (totals)")


# --------------------------------------------------------------------------- driver


def _describe_oserror(e: OSError, default_name: str) -> str:
    name = e.filename if e.filename is not None else default_name
    if e.errno == errno.ENOSPC:
        msg = "No space left on device"
    else:
        msg = e.strerror or str(e)
    return f"{name}: {msg}"


def _guard(rep: Reporter, display: str, action: Callable[[], str | None], s: Settings) -> None:
    """Run one file's action, turning every expected failure into a one-line message."""
    from lmzip.errors import LmzipError

    try:
        line = action()
        if line and s.verbose and not s.quiet:
            print(line, file=sys.stderr)
    except Skip as e:
        rep.warn(str(e))
    except FileExistsError as e:
        rep.warn(f"{e.filename or display} already exists; not overwritten")
    except LmzipError as e:
        rep.error(f"{display}: {e}")
    except BrokenPipeError:
        raise
    except OSError as e:
        rep.error(_describe_oserror(e, display))
    except (MemoryError, RecursionError) as e:
        rep.error(f"{display}: {type(e).__name__}")
    except Exception as e:  # noqa: BLE001 - never show a traceback for bad input
        if os.environ.get("LMZIP_DEBUG"):
            raise
        rep.error(f"{display}: internal error: {type(e).__name__}: {e}")


def run(files: Sequence[str], s: Settings) -> int:
    """Process every file (or stdin), gzip style, and return the exit status."""
    rep = Reporter(quiet=s.quiet)
    paths: list[str | None] = [None if f == "-" else f for f in files] or [None]
    writes_stdout = not (s.test or s.list) and (s.stdout or None in paths)
    if writes_stdout and not s.decompress and not s.force and sys.stdout.isatty():
        rep.error("compressed data not written to a terminal. Use -f to force compression.")
        print("For help, type: lmzip -h", file=sys.stderr)
        return rep.status
    reads_stdin = None in paths and (s.decompress or s.test or s.list)
    if reads_stdin and not s.force and sys.stdin.isatty():
        rep.error("compressed data not read from a terminal. Use -f to force decompression.")
        print("For help, type: lmzip -h", file=sys.stderr)
        return rep.status

    lister = Lister(s.verbose)
    for p in _expand(paths, s, rep):
        display = "stdin" if p is None else p
        action: Callable[[], str | None]
        if s.list:
            action = _bind(lister.one, p, s)
        elif s.test:
            action = _bind(test_one, p, s)
        elif s.decompress:
            action = _bind(decompress_one, p, s)
        else:
            action = _bind(compress_one, p, s)
        _guard(rep, display, action, s)
    if s.list:
        lister.totals()
    if s.verbose and not s.quiet:
        _note_reference_path()
    return rep.status


def _note_reference_path() -> None:
    """-v: one line when the model ran without the C kernels (same output, slower)."""
    kernels = sys.modules.get("lmzip.engine.kernels")
    error = kernels.build_error(build=False) if kernels is not None else None
    if error:
        print(f"{PROG}: C kernels unavailable ({error}); the model ran on the reference path", file=sys.stderr)


def _expand(paths: Sequence[str | None], s: Settings, rep: Reporter) -> Iterator[str | None]:
    """The paths, with -r: each directory replaced by the files below it (sorted, walked
    as it goes), keeping only those the action takes: without the suffix to compress,
    with it otherwise (others are passed over in silence, as gzip -r does)."""
    for p in paths:
        if not (s.recursive and p is not None and os.path.isdir(p)):
            yield p
            continue
        wants_suffix = s.decompress or s.test or s.list
        for root, dirs, names in os.walk(p, onerror=lambda e, top=p: rep.error(_describe_oserror(e, top))):
            dirs.sort()
            for n in sorted(names):
                if n.endswith(s.suffix) == wants_suffix and n != s.suffix:
                    yield os.path.join(root, n)


def _bind(fn: Callable[[str | None, Settings], Any], p: str | None, s: Settings) -> Callable[[], Any]:
    return lambda: fn(p, s)
