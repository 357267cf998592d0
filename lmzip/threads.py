"""How many threads the model uses, and how idle ones wait, so that side-by-side runs share the CPUs.

The model's kernels (torch's and lmzip's C kernels) run on OpenMP threads. By default an
OpenMP thread that waits at the end of a parallel region spins for a while before it
sleeps; when another process holds the core its partner needs, it spins away the time
that partner needed, and two runs on two cores took ten times as long as one instead of
twice. Two measures, both applied before torch (and with it libgomp) is loaded:

- waiting threads spin only briefly, then sleep (GOMP_SPINCOUNT=10000, against libgomp's
  default 300000), unless the environment already says how to wait (OMP_WAIT_POLICY or
  GOMP_SPINCOUNT). A short spin keeps one run alone as fast as with the default wait
  (sleeping at once, OMP_WAIT_POLICY=PASSIVE, made a 16 KiB compression with 2 threads
  take 6.9-7.3 s instead of 5.4-5.7 s), while runs side by side no longer spin away each
  other's time (scripts/concurrency.py);
- the default thread count is the CPUs this process may use (its affinity mask, capped
  by a cgroup CPU quota) less the tasks of other processes running when it starts, at
  least 1. `--threads N` (or OMP_NUM_THREADS) still decides when given.

Thread counts never change results: the engine's integers are the same for any count.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


SPIN_COUNT = 10000  # libgomp spin iterations before an idle thread sleeps


def prepare_openmp() -> None:
    """Make idle OpenMP threads sleep after a short spin (effective only before torch loads)."""
    if not any(v in os.environ for v in _WAIT_VARIABLES):
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs allowed by the cgroup's CPU quota (cgroup v2 cpu.max, else v1 cfs), None without one."""
    candidates = []
    try:
        for line in membership.read_text().splitlines():
            if line.startswith("0::"):
                candidates.append(root / line[3:].lstrip("/") / "cpu.max")
    except OSError:
        pass
    candidates.append(root / "cpu.max")
    for path in candidates:
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota == "max":
            return None
        return int(quota) / int(period)
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def default_threads(cpus: int | None = None, load: float | None = None) -> int:
    """Threads for the model when none are asked for: usable CPUs less the CPUs the load keeps
    busy (whole ones: a load of 0.9 leaves every CPU to this run), at least 1."""
    cpus = usable_cpus() if cpus is None else cpus
    if load is None:
        load = _runnable_now()
    return max(1, min(cpus, cpus - math.floor(load)))


def _own_running_threads(tasks: Path = Path("/proc/self/task")) -> int:
    """This process's threads that are running now (numpy's or OpenBLAS's helpers may be), at least 1."""
    count = 0
    for stat in tasks.glob("*/stat"):
        try:
            count += stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            pass
    return max(1, count)


def _runnable_now(loadavg: Path = Path("/proc/loadavg")) -> float:
    """Tasks running or ready to run right now, this process left out (/proc/loadavg's
    fourth field, R/T). The instant count, not the 1-minute average: a run that just
    ended must not cost the next one its threads (measured: a 16 KiB compression alone
    took 8.8 s on 1 thread instead of 5.7 s on 2 while the average still counted the run
    before it). Where it cannot be read, the 1-minute load average."""
    try:
        running = int(loadavg.read_text().split()[3].split("/")[0])
        return max(0, running - _own_running_threads())
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def choose_threads(requested: int | None) -> int | None:
    """The thread count to set: `requested` if given, none when OMP_NUM_THREADS decides, else the default."""
    if requested:
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return default_threads()
