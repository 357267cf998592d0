"""Watch which files a piece of code touches: `with AccessGuard(forbid=[p]) as g:` refuses
(PermissionError) and records every open, listing, directory change and stat of a path at
or below p; `AccessGuard(allow=[root])` does the same for every path outside root.

Used by tests/test_model_by_hash.py and scripts/fuzz.py to show that a name stored in an
archive never makes lmzip open or even look at a file. Opens and listings are seen through
a process-wide audit hook (sys.addaudithook; it stays installed but does nothing while no
guard is active), stats through os.stat / os.lstat replaced while a guard is active. A
refused open of a FIFO fails at once instead of blocking.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

# audit events whose first argument is a path
_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "os.chdir", "os.mkdir", "os.rename", "os.remove", "os.rmdir"})
_active: list[AccessGuard] = []
_hooked = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _active and event in _EVENTS and args:
        _active[-1].check(event, args[0])


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class AccessGuard:
    def __init__(self, forbid: Iterable[os.PathLike[str] | str] = (), allow: Iterable[os.PathLike[str] | str] = ()):
        self.forbid = [os.path.abspath(p) for p in forbid]
        self.allow = [os.path.abspath(p) for p in allow]
        self.violations: list[str] = []

    def check(self, what: str, path: object) -> None:
        if path is None or isinstance(path, int):  # "." or a file descriptor
            return
        try:
            p = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except TypeError:
            return
        if _under(p, self.forbid) or (self.allow and not _under(p, self.allow)):
            self.violations.append(f"{what} {p}")
            raise PermissionError(f"access to {p} refused by the test's AccessGuard")

    def __enter__(self) -> AccessGuard:
        global _hooked
        if not _hooked:
            sys.addaudithook(_hook)
            _hooked = True
        self._saved = os.stat, os.lstat
        stat, lstat = self._saved

        def guarded_stat(path: Any, *a: Any, **kw: Any) -> os.stat_result:
            self.check("stat", path)
            return stat(path, *a, **kw)

        def guarded_lstat(path: Any, *a: Any, **kw: Any) -> os.stat_result:
            self.check("lstat", path)
            return lstat(path, *a, **kw)

        os.stat, os.lstat = guarded_stat, guarded_lstat  # type: ignore[assignment]
        _active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _active.remove(self)
        os.stat, os.lstat = self._saved  # type: ignore[assignment]
