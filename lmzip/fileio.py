"""Safe file output for the CLI.

An output file never appears half-written under its final name: data goes to a
hidden temp file in the destination directory (same filesystem, so the final
rename is atomic), is fsynced, and only then renamed into place.  Any exception,
including Ctrl-C and SIGTERM (turned into `Terminated`), removes the temp file.
The input is only deleted by the caller after `AtomicOutput` has committed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
from pathlib import Path
from types import FrameType, TracebackType
from typing import BinaryIO


class Terminated(KeyboardInterrupt):
    """Raised from the SIGTERM/SIGHUP handler so the same cleanup as Ctrl-C runs.

    Subclassing KeyboardInterrupt means every `except Exception` lets it through.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP unwind the stack (running cleanup) instead of killing us."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # Respect an inherited "ignore" (e.g. nohup) like gzip does.
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _raise_terminated)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not supported everywhere, so best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicOutput:
    """Context manager yielding a binary file that becomes `path` only on success.

    `overwrite=False` makes the commit fail with FileExistsError if `path` exists,
    even if it was created by someone else while we were writing (os.link is atomic).
    `like` copies permission bits and atime/mtime from a stat result (gzip does this);
    `mtime` overrides the modification time (used for -N restore).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        like: os.stat_result | None = None,
        mtime: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.like = like
        self.mtime = mtime
        self.tmp_path: Path | None = None
        self._file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        if not self.overwrite and os.path.lexists(self.path):
            raise FileExistsError(errno.EEXIST, "already exists", str(self.path))
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        self.tmp_path = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        return self._file

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._file is not None and self.tmp_path is not None
        try:
            if exc_type is None:
                self._commit()
                return
        except BaseException:
            self._discard()
            raise
        self._discard()

    def _commit(self) -> None:
        assert self._file is not None and self.tmp_path is not None
        f = self._file
        f.flush()
        os.fsync(f.fileno())
        if self.like is not None:
            os.chmod(f.fileno(), self.like.st_mode & 0o7777)
        f.close()
        times = self._times()
        if times is not None:
            os.utime(self.tmp_path, times)
        if self.overwrite:
            os.replace(self.tmp_path, self.path)
        else:
            self._link_no_clobber()
        self.tmp_path = None
        _fsync_dir(self.path.parent)

    def _times(self) -> tuple[float, float] | None:
        if self.like is None:
            return None if self.mtime is None else (self.mtime, self.mtime)
        mtime = self.like.st_mtime if self.mtime is None else self.mtime
        return (self.like.st_atime, mtime)

    def _link_no_clobber(self) -> None:
        assert self.tmp_path is not None
        try:
            os.link(self.tmp_path, self.path)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "already exists", str(self.path)) from None
        except OSError:
            # Filesystems without hard links: fall back to check-then-rename.
            if os.path.lexists(self.path):
                raise FileExistsError(errno.EEXIST, "already exists", str(self.path)) from None
            os.replace(self.tmp_path, self.path)
            return
        os.unlink(self.tmp_path)

    def _discard(self) -> None:
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        if self.tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_path)
            self.tmp_path = None
