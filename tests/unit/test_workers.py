"""Pinned workers: each runs on the CPU it was given, stops on request, stragglers are killed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tectra.roles.workers import PinnedWorkers, WorkerContext, WorkerError, WorkerSpec


def _check_pinned(ctx: WorkerContext) -> int:
    # Exit 0 only when the affinity the worker actually got is exactly its own CPU.
    pinned = os.sched_getaffinity(0) == {ctx.cpu}
    while not ctx.stopping:
        time.sleep(0.01)
    return 0 if pinned else 7


def _ignore_stop(ctx: WorkerContext) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.05)


def _crash(ctx: WorkerContext) -> int:
    return 3


def test_each_worker_is_pinned_and_stops_cleanly() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    workers = PinnedWorkers([WorkerSpec(f"w{c}", c, _check_pinned) for c in cpus])
    workers.start()
    time.sleep(0.2)
    assert workers.alive() == sorted(f"w{c}" for c in cpus)
    codes = workers.stop(timeout_s=5)
    assert codes == {f"w{c}": 0 for c in cpus}
    assert workers.failed() == []


def test_hung_worker_is_killed_after_timeout() -> None:
    workers = PinnedWorkers([WorkerSpec("stuck", 0, _ignore_stop)])
    workers.start()
    started = time.monotonic()
    codes = workers.stop(timeout_s=0.3)
    assert codes["stuck"] == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_failed_worker_is_reported_by_name() -> None:
    workers = PinnedWorkers([WorkerSpec("bad", 0, _crash)])
    workers.start()
    deadline = time.monotonic() + 5
    while workers.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers.failed() == ["bad"]
    workers.stop()


def test_unknown_cpu_and_duplicate_names_are_refused() -> None:
    with pytest.raises(WorkerError, match="cpu 4096"):
        PinnedWorkers([WorkerSpec("x", 4096, _crash)])
    with pytest.raises(WorkerError, match="unique"):
        PinnedWorkers([WorkerSpec("x", 0, _crash), WorkerSpec("x", 0, _crash)])
