"""gzip-compatible command line for lmzip: options and subcommands over lmzip.files.

Import cost matters: `lmzip --help`, `info` and `-l` must not load torch, so this
module imports only click and lmzip's light modules at top level; the pipeline,
rich and everything model-related are imported inside the functions that need them.

Exit codes follow gzip: 0 ok, 1 error, 2 warning (an error wins over a warning),
128+signal when interrupted. Processing continues with the next file after an error.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

import click

from lmzip import defaults
from lmzip.fileio import install_signal_handlers
from lmzip.files import (
    EXIT_ERROR,
    PROG,
    SUFFIX,
    Reporter,
    Settings,
    _guard,
    _info,
    _stdin,
    progress_bar,
    run,
    seekable_input,
)


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


# --------------------------------------------------------------------------- click


def _engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option(
                "--model",
                metavar="NAME|PATH",
                help="GGUF file or Hugging Face model directory (default: SmolLM2-135M-Instruct). "
                "Decompressing, only needed where no model with the archive's hashes was converted yet.",
            ),
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
                default=defaults.BATCH,
                show_default=True,
                help="Chunks evaluated together.",
            ),
        ]
    ):
        f = opt(f)
    return f


def _level_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """-1 .. -9, --fast (-1) and --best (-9), all setting `level`; the last one given wins."""
    best = defaults.LEVELS[defaults.BEST]
    for n in range(9, 0, -1):
        if n == defaults.FAST:
            names, text = ("-1", "--fast"), "Compress fastest: no model, each chunk stored or zstd-compressed."
        elif n == defaults.BEST:
            names = ("-9", "--best")
            text = (
                f"Compress best: {best.chunk_size // 1024}K chunks, {best.window}-token window. -2 .. -8 lie "
                f"between; default -{defaults.LEVEL} (docs/levels.md)."
            )
        else:
            names, text = (f"-{n}",), ""
        f = click.option(*names, "level", flag_value=n, hidden=not text, help=text)(f)
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
        help="File-wide memory: the lm chunks of a --batch group share it every N positions "
        "(default 12; 0: off, numerics v4 archives).",
    )(f)
    f = click.option(
        "--window",
        type=click.IntRange(64, 8192),
        help=f"LM context window in tokens (default: the level's, {defaults.WINDOW} at -{defaults.LEVEL}; "
        "the archive records it; docs/levels.md, docs/benchmarks.md).",
    )(f)
    f = click.option(
        "--chunk-size",
        type=SizeType(),
        help=f"Independent chunk size, e.g. 64K (default: the level's, {defaults.CHUNK_SIZE // 1024}K at "
        f"-{defaults.LEVEL}); an input of a few chunks is cut into equal chunks of at most this size.",
    )(f)
    return _level_options(f)


def _check_suffix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value or "/" in value:
        raise click.BadParameter(f"invalid suffix {value!r}", ctx, param)
    return value


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
            click.option("-r", "--recursive", is_flag=True, help="Operate on every file below each directory."),
            click.option(
                "-S",
                "--suffix",
                default=SUFFIX,
                show_default=True,
                metavar="SUF",
                callback=_check_suffix,
                help="Suffix of compressed files.",
            ),
        ]
    ):
        f = opt(f)
    return f


CONTEXT = {"help_option_names": ["-h", "--help"]}


def _settings(**kw: Any) -> Settings:
    no_lm = kw.pop("no_lm", False)
    level = kw.pop("level", None)
    return Settings(use_lm=not no_lm, level=defaults.LEVEL if level is None else level, **kw)


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
        first_word = not args  # for completion: the first word may be a subcommand (parsing empties args)
        ctx = super().make_context(PROG, args, parent=None, **extra)
        ctx.meta["lmzip.first_word"] = first_word
        return ctx


def _complete_file(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of FILE: file names, and the subcommands as the first word."""
    from click.shell_completion import CompletionItem

    items = [CompletionItem(incomplete, type="file")]
    if ctx.meta.get("lmzip.first_word"):
        items[:0] = [CompletionItem(n) for n in cli.list_commands(ctx) if n.startswith(incomplete)]
    return items


@click.group(cls=LmzipGroup, context_settings=CONTEXT, add_help_option=False)
def cli() -> None:
    """lmzip: a gzip-like compressor driven by a local language model."""


GZIP_EPILOG = """\b
Subcommands (first argument):
  compress FILE...     same as `lmzip FILE...`
  decompress FILE...   same as `lmzip -d FILE...`
  info FILE [--json]   header, records and chunks of an archive
  test FILE...         full decode and verify, writes nothing
  bench FILE...        compare with gzip/bzip2/xz/zstd, round trips verified
  explain FILE         where the bits go: text colored by cost (--html OUT)
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
@click.argument("file", nargs=-1, type=click.Path(), shell_complete=_complete_file)
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
    """Show the header, records and chunks of an archive."""
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


@cli.command("explain", context_settings=CONTEXT)
@click.option("--html", "html_out", metavar="OUT", type=click.Path(dir_okay=False), help="Write an HTML page to OUT.")
@_engine_options
@click.option("--chunk-size", type=SizeType(), default=str(defaults.CHUNK_SIZE), show_default=True, help="As -c.")
@click.option("--window", type=click.IntRange(64, 8192), default=defaults.WINDOW, show_default=True, help="As -c.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.argument("file", type=click.Path())
def explain_cmd(file: str, html_out: str | None, quiet: bool, **kw: Any) -> None:
    """Show where the bits go: FILE's text colored by bits per token, with per-line totals
    and the file's total, from the frequencies `lmzip -c` codes with (--html OUT: a page
    with the model's top guesses per token)."""
    from lmzip.explain import explain_file

    rep = Reporter(quiet=quiet)

    def action() -> None:
        size = None if file == "-" else os.path.getsize(file)
        with progress_bar(size, "explaining", not quiet) as prog:
            explain_file(file, html_out, progress=prog, **kw)

    _guard(rep, file, action, Settings())
    sys.exit(rep.status)


@contextmanager
def _open_info_source(file: str) -> Iterator[BinaryIO]:
    if file == "-":
        with seekable_input(_stdin()) as src:
            yield src
    else:
        with open(file, "rb") as f:
            yield f


def _format_info(file: str, data: Any) -> str:
    from lmzip.container import printable_label  # names from an archive: escaped, never raw

    def show(v: Any) -> Any:
        return printable_label(v) if isinstance(v, str) else v

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
                lines.append(f"  {k}.{k2}: {show(v2)}")
        else:
            lines.append(f"  {k}: {show(v)}")
    if table:
        cols = list(table[0].keys())
        widths = [max(len(c), *(len(str(r.get(c, ""))) for r in table)) for c in cols]
        lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
        for r in table:
            cells = (str(r.get(c, "")).rjust(w) for c, w in zip(cols, widths, strict=True))
            lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


COMPLETE_VAR = "_LMZIP_COMPLETE"  # click's shell completion: `_LMZIP_COMPLETE=bash_source lmzip`


def _shell_completion() -> None:
    """Answer a completion request (or print the script for `*_source`) when the shell asks."""
    instruction = os.environ.get(COMPLETE_VAR)
    if instruction:
        from click.shell_completion import shell_complete

        sys.exit(shell_complete(cli, {}, PROG, COMPLETE_VAR, instruction))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    _shell_completion()
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
