"""gzip-compatible command line for lmzip.

Import cost matters: `lmzip --help`, `info` and `-l` must not load torch, so this
module imports only click and lmzip's light modules at top level; the pipeline,
rich and everything model-related are imported inside the functions that need them.

Exit codes follow gzip: 0 ok, 1 error, 2 warning (an error wins over a warning),
128+signal when interrupted. Processing continues with the next file after an error.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

import click

from lmzip.fileio import AtomicOutput, install_signal_handlers

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
    model: str | None = None
    device: str = "cpu"
    threads: int | None = None
    batch: int = 32
    chunk_size: int = 16384
    window: int = 1024
    memory_block: int = 12  # file-wide memory block in positions; 0: no memory (numerics v4 archives)
    use_lm: bool = True


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


def parse_size(text: str) -> int:
    """'16384', '64K', '1M', '1MiB' -> bytes (binary multiples, like the chunk sizes)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t and t[-1] in "KMG":
        mult = 1024 ** ("KMG".index(t[-1]) + 1)
        t = t[:-1]
    try:
        n = int(t) * mult
    except ValueError:
        raise ValueError(f"invalid size: {text!r}") from None
    if n <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return n


class SizeType(click.ParamType):
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


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
    """Readers of the chunk index need to seek; spool a pipe into a temp file first."""
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


def _compress_options(s: Settings, name: str | None, mtime: int | None) -> Any:
    from lmzip.pipeline import CompressOptions

    return CompressOptions(
        chunk_size=s.chunk_size,
        model=s.model,
        device=s.device,
        threads=s.threads,
        batch=s.batch,
        name=name,
        mtime=mtime,
        use_lm=s.use_lm,
        window=s.window,
        memory_block=s.memory_block,
    )


def _decompress_options(s: Settings) -> Any:
    from lmzip.pipeline import DecompressOptions

    return DecompressOptions(model=s.model, device=s.device, threads=s.threads, batch=s.batch)


def _info(src: BinaryIO) -> Any:
    from lmzip.pipeline import read_archive_info

    return read_archive_info(src)


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value) if not isinstance(obj.value, int) else obj.name.lower()
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj).hex()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str):  # lists, tuples, lazy chunk views
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    if hasattr(obj, "__dict__"):
        return {k: to_jsonable(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return str(obj)


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
        _run_compress(src, out, _compress_options(s, None, None), None)
        out.flush()
        return f"stdin:\t{ratio(src.count, out.count):5.1f}%"
    if path.endswith(SUFFIX):
        raise Skip(f"{path} already has {SUFFIX} suffix -- unchanged")
    raw, st = _open_regular(path, s)
    with raw:
        src = CountingReader(raw)
        stored = (os.path.basename(path), int(st.st_mtime)) if s.name else (None, None)
        opts = _compress_options(s, *stored)
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
        target = None if s.stdout else path + SUFFIX
        with progress_bar(size, os.path.basename(path), not s.quiet) as prog:
            if target is None:
                out = CountingWriter(_stdout())
                _run_compress(src, out, opts, prog)
                out.flush()
            else:
                with AtomicOutput(target, overwrite=s.force, like=st) as f:
                    out = CountingWriter(f)
                    _run_compress(src, out, opts, prog)
    # Only now, with the archive renamed into place, may the input go.
    if target is not None and not s.keep:
        os.unlink(path)
    return _verbose_line(path, src.count, out.count, target, s)


def _run_compress(src: Any, dst: Any, opts: Any, prog: ProgressFn | None) -> None:
    from lmzip.pipeline import compress_stream

    compress_stream(src, dst, opts, progress=prog)


def _verbose_line(path: str, n_in: int, n_out: int, target: str | None, s: Settings) -> str:
    r = ratio(n_in, n_out) if not s.decompress else ratio(n_out, n_in)
    line = f"{path}:\t{r:5.1f}%"
    if target is not None:
        line += f" -- {'created' if s.keep else 'replaced with'} {target}"
    return line


def decompression_target(path: str) -> str:
    if not path.endswith(SUFFIX) or len(path) == len(SUFFIX) or path.endswith("/" + SUFFIX):
        raise Skip(f"{path}: unknown suffix -- ignored")
    return path[: -len(SUFFIX)]


def _resolve_archive(path: str) -> str:
    # Like gzip: `lmzip -d foo` finds foo.lmz when foo itself does not exist.
    if not path.endswith(SUFFIX) and not os.path.lexists(path) and os.path.exists(path + SUFFIX):
        return path + SUFFIX
    return path


def decompress_one(path: str | None, s: Settings) -> str | None:
    opts = _decompress_options(s)
    from lmzip.pipeline import decompress_stream

    if path is None:
        out = CountingWriter(_stdout())
        decompress_stream(_stdin(), out, opts, progress=None)
        out.flush()
        return None
    path = _resolve_archive(path)
    target = None if s.stdout else decompression_target(path)
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
                decompress_stream(src, out, opts, progress=prog)
                out.flush()
            else:
                with AtomicOutput(target, overwrite=s.force, like=st, mtime=mtime) as f:
                    out = CountingWriter(f)
                    decompress_stream(src, out, opts, progress=prog)
        n_in = st.st_size
    if target is not None and not s.keep:
        os.unlink(path)
    return _verbose_line(path, n_in, out.count, target, s)


def test_one(path: str | None, s: Settings) -> str | None:
    from lmzip.pipeline import decompress_stream

    opts = _decompress_options(s)
    if path is None:
        decompress_stream(_stdin(), NullSink(), opts, progress=None, verify_only=True)
        return None
    path = _resolve_archive(path)
    src, st = _open_regular(path, s)
    with src, progress_bar(st.st_size, os.path.basename(path), not s.quiet) as prog:
        decompress_stream(src, NullSink(), opts, progress=prog, verify_only=True)
    return f"{path}:\t OK"


LIST_HEADER = f"{'compressed':>19} {'uncompressed':>19}  ratio uncompressed_name"


class Lister:
    """gzip -l: a header, one line per archive, and a totals line for several."""

    def __init__(self) -> None:
        self.rows = 0
        self.total_c = 0
        self.total_u = 0

    def one(self, path: str | None, s: Settings) -> None:
        if path is None:
            with seekable_input(_stdin()) as src:
                self._row(src, "stdin", None)
            return
        path = _resolve_archive(path)
        src, _st = _open_regular(path, s)
        with src:
            name = path[: -len(SUFFIX)] if path.endswith(SUFFIX) else path
            self._row(src, name, path)

    def _row(self, src: BinaryIO, name: str, path: str | None) -> None:
        info = _info(src)
        src.seek(0, os.SEEK_END)
        compressed = src.tell()
        original = info.original_size
        if self.rows == 0:
            click.echo(LIST_HEADER)
        click.echo(f"{compressed:>19} {original:>19} {ratio(original, compressed):5.1f}% {name}")
        self.rows += 1
        self.total_c += compressed
        self.total_u += original

    def totals(self) -> None:
        if self.rows > 1:
            r = ratio(self.total_u, self.total_c)
            click.echo(f"{self.total_c:>19} {self.total_u:>19} {r:5.1f}% (totals)")


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

    lister = Lister()
    for p in paths:
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
    return rep.status


def _bind(fn: Callable[[str | None, Settings], Any], p: str | None, s: Settings) -> Callable[[], Any]:
    return lambda: fn(p, s)


# --------------------------------------------------------------------------- click


def _engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option("--model", metavar="NAME|PATH", help="Model name or GGUF path."),
            click.option(
                "--device",
                type=click.Choice(["cpu", "cuda"]),
                default="cpu",
                show_default=True,
                help="Where the model runs.",
            ),
            click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the model."),
            click.option(
                "--batch",
                type=click.IntRange(min=1),
                default=32,
                show_default=True,
                help="Chunks evaluated together.",
            ),
        ]
    ):
        f = opt(f)
    return f


def _compress_only_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--no-lm",
        "no_lm",
        is_flag=True,
        help="Fast mode without the model: each chunk stored or zstd-compressed.",
    )(f)
    f = click.option(
        "--memory-block",
        type=click.IntRange(0, 1 << 20),
        default=12,
        show_default=True,
        help="File-wide memory: chunks of a --batch group share it every N positions (0: off).",
    )(f)
    f = click.option(
        "--window",
        type=click.IntRange(64, 8192),
        default=1024,
        show_default=True,
        help="LM context window in tokens (the archive records it; see README's table).",
    )(f)
    f = click.option(
        "--chunk-size",
        type=SizeType(),
        default="16K",
        show_default=True,
        help="Independent chunk size (accepts K/M suffixes, e.g. 64K).",
    )(f)
    return f


def _common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option("-c", "--stdout", is_flag=True, help="Write to stdout, keep input files."),
            click.option("-k", "--keep", is_flag=True, help="Keep (don't delete) input files."),
            click.option("-f", "--force", is_flag=True, help="Overwrite outputs; allow a terminal for data."),
            click.option("-v", "--verbose", is_flag=True, help="Print a ratio line per file."),
            click.option("-q", "--quiet", is_flag=True, help="Suppress warnings and progress."),
            click.option(
                "-N/-n",
                "--name/--no-name",
                default=False,
                help="Store (compress) or restore (decompress) the original name and mtime.",
            ),
        ]
    ):
        f = opt(f)
    return f


CONTEXT = {"help_option_names": ["-h", "--help"]}


def _settings(**kw: Any) -> Settings:
    no_lm = kw.pop("no_lm", False)
    return Settings(use_lm=not no_lm, **kw)


class LmzipGroup(click.Group):
    """`lmzip CMD ...` dispatches to a subcommand; anything else is gzip style.

    A file literally named like a subcommand is reached as `./info` or `-- info`.
    """

    gzip_command = "_gzip"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands or args[0] == self.gzip_command:
            args = [self.gzip_command, *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c for c in super().list_commands(ctx) if c != self.gzip_command]


class GzipCommand(click.Command):
    """The gzip-style command, presented as `lmzip` itself in usage and error text."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # No parent: its command path would read "lmzip _gzip".
        return super().make_context(PROG, args, parent=None, **extra)


@click.group(cls=LmzipGroup, context_settings=CONTEXT, add_help_option=False)
def cli() -> None:
    """lmzip: a gzip-like compressor driven by a local language model."""


GZIP_EPILOG = """\b
Subcommands (first argument):
  compress FILE...     same as `lmzip FILE...`
  decompress FILE...   same as `lmzip -d FILE...`
  info FILE [--json]   header and chunk index of an archive
  test FILE...         full decode and verify, writes nothing
  bench FILE...        compare with gzip/bzip2/xz/zstd, round trips verified
\b
With no FILE, or when FILE is -, read standard input.
Exit status: 0 ok, 1 error, 2 warning."""


@cli.command(
    "_gzip",
    cls=GzipCommand,
    hidden=True,
    context_settings=CONTEXT,
    epilog=GZIP_EPILOG,
    short_help="gzip-style interface",
)
@click.option("-d", "--decompress", is_flag=True, help="Decompress.")
@click.option("-t", "--test", is_flag=True, help="Test archive integrity (full decode).")
@click.option("-l", "--list", "list_", is_flag=True, help="List archive sizes.")
@_common_options
@_engine_options
@_compress_only_options
@click.version_option(None, "-V", "--version", package_name="lmzip", prog_name=PROG)
@click.argument("file", nargs=-1, type=click.Path())
def gzip_style(file: tuple[str, ...], list_: bool, **kw: Any) -> None:
    """Compress or decompress FILEs in place, like gzip (FILE -> FILE.lmz)."""
    sys.exit(run(file, _settings(list=list_, **kw)))


@cli.command("compress", context_settings=CONTEXT)
@_common_options
@_engine_options
@_compress_only_options
@click.argument("files", nargs=-1, type=click.Path())
def compress_cmd(files: tuple[str, ...], **kw: Any) -> None:
    """Compress FILEs to FILE.lmz (stdin to stdout without FILE)."""
    sys.exit(run(files, _settings(**kw)))


@cli.command("decompress", context_settings=CONTEXT)
@_common_options
@_engine_options
@click.argument("files", nargs=-1, type=click.Path())
def decompress_cmd(files: tuple[str, ...], **kw: Any) -> None:
    """Decompress FILE.lmz to FILE (stdin to stdout without FILE)."""
    sys.exit(run(files, _settings(decompress=True, **kw)))


@cli.command("test", context_settings=CONTEXT)
@_engine_options
@click.option("-v", "--verbose", is_flag=True, help="Print OK per file.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress warnings and progress.")
@click.argument("files", nargs=-1, type=click.Path())
def test_cmd(files: tuple[str, ...], **kw: Any) -> None:
    """Fully decode and verify archives; writes nothing."""
    sys.exit(run(files, _settings(test=True, **kw)))


@cli.command("info", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("file", type=click.Path())
def info_cmd(file: str, as_json: bool) -> None:
    """Show the header and chunk index of an archive."""
    rep = Reporter()

    def action() -> None:
        src_cm = _open_info_source(file)
        with src_cm as src:
            data = to_jsonable(_info(src))
        click.echo(json.dumps(data, indent=2) if as_json else _format_info(file, data))

    _guard(rep, file, action, Settings())
    sys.exit(rep.status)


@cli.command("bench", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the results as CSV.")
@click.option("--codecs", metavar="LIST", help="Subset of lmzip,gzip,bzip2,xz,zstd,brotli (comma-separated).")
@_engine_options
@_compress_only_options
@click.argument("files", nargs=-1, required=True, type=click.Path())
def bench_cmd(files: tuple[str, ...], as_json: bool, as_csv: bool, codecs: str | None, **kw: Any) -> None:
    """Compare lmzip with gzip -9, bzip2 -9, xz -9e, zstd -19 (and brotli -q 11) on FILEs.

    Every round trip is verified. lmzip's row is exactly what `lmzip -c FILE` writes,
    plus the model's ideal code length (ideal_bytes)."""
    from lmzip.bench import run_bench  # lazy: the model loads only if lmzip's row needs it

    if as_json and as_csv:
        raise click.UsageError("--json and --csv are mutually exclusive")
    sys.exit(run_bench(files, _settings(**kw), codecs, "json" if as_json else "csv" if as_csv else "table"))


@contextmanager
def _open_info_source(file: str) -> Iterator[BinaryIO]:
    if file == "-":
        with seekable_input(_stdin()) as src:
            yield src
    else:
        with open(file, "rb") as f:
            yield f


def _format_info(file: str, data: Any) -> str:
    if not isinstance(data, dict):
        return f"{file}: {data}"
    lines = [f"{file}:"]
    table: list[dict[str, Any]] = []
    for k, v in data.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            table = v
            continue
        if isinstance(v, dict):
            for k2, v2 in v.items():
                lines.append(f"  {k}.{k2}: {v2}")
        else:
            lines.append(f"  {k}: {v}")
    if table:
        cols = list(table[0].keys())
        widths = [max(len(c), *(len(str(r.get(c, ""))) for r in table)) for c in cols]
        lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
        for r in table:
            cells = (str(r.get(c, "")).rjust(w) for c, w in zip(cols, widths, strict=True))
            lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    install_signal_handlers()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # Not cli.main(): click turns Ctrl-C into "Aborted!" and exit 1, and usage
        # errors into exit 2, which means "warning" for gzip-style tools.
        with cli.make_context(PROG, args) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_ERROR)  # gzip exits 1 on bad usage; 2 means "warning" here
    except click.Abort:
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt as e:
        # Cleanup (temp files) already ran while the exception unwound.
        sys.exit(128 + getattr(e, "signum", 2))
    except BrokenPipeError:
        # Reader went away (e.g. `lmzip -dc x.lmz | head`): quiet exit, like gzip under SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
