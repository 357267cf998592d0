"""Thread counts and OpenMP waiting for side-by-side runs (lmzip/threads.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmzip import threads


def test_default_threads_leaves_the_loaded_cpus() -> None:
    assert threads.default_threads(cpus=2, load=0.0) == 2
    assert threads.default_threads(cpus=2, load=0.9) == 2  # less than a whole CPU busy
    assert threads.default_threads(cpus=2, load=1.2) == 1
    assert threads.default_threads(cpus=2, load=9.0) == 1  # at least one
    assert threads.default_threads(cpus=16, load=3.5) == 13


def test_cgroup_quota(tmp_path: Path) -> None:
    def quota() -> float | None:
        return threads._cgroup_quota(tmp_path, tmp_path / "membership")

    assert quota() is None  # no cgroup files at all
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert quota() == 1.5
    (tmp_path / "membership").write_text("0::/box\n")
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "cpu.max").write_text("300000 100000\n")
    assert quota() == 3.0  # the process's own cgroup first
    (tmp_path / "box" / "cpu.max").write_text("max 100000\n")
    assert quota() is None
    (tmp_path / "membership").unlink()
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert quota() == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert quota() is None


def test_usable_cpus_obeys_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.usable_cpus() == 4
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1.5)
    assert threads.usable_cpus() == 2
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 0.2)
    assert threads.usable_cpus() == 1


def test_choose_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "default_threads", lambda: 3)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.choose_threads(None) == 3
    assert threads.choose_threads(5) == 5  # --threads wins
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_threads(None) is None  # OpenMP's own variable decides
    assert threads.choose_threads(2) == 2


def test_prepare_openmp_respects_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    threads.prepare_openmp()
    assert os.environ["GOMP_SPINCOUNT"] == str(threads.SPIN_COUNT) and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.prepare_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")
    threads.prepare_openmp()
    assert "OMP_WAIT_POLICY" not in os.environ and os.environ["GOMP_SPINCOUNT"] == "1000"


def test_default_threads_count_other_processes_running_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instant count of running tasks (not the 1-minute average), this process's own left out."""
    tasks = tmp_path / "task"
    for tid, state in ((1, "R"), (2, "S"), (3, "R")):
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (py thon) {state} 1 2 3\n")
    assert threads._own_running_threads(tasks) == 2
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("3.50 2.00 1.00 3/120 999\n")
    monkeypatch.setattr(threads, "_own_running_threads", lambda: 1)
    assert threads._runnable_now(loadavg) == 2  # an average of 3.5 would have said 3
    assert threads.default_threads(cpus=4, load=threads._runnable_now(loadavg)) == 2
    loadavg.write_text("garbage\n")
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert threads._runnable_now(loadavg) == 1.5  # unreadable: the 1-minute average
