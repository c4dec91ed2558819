"""Per-core worker processes for a role: one process per CPU, pinned, stopped cleanly.

Python threads share one interpreter lock, so a role that needs more than one core of hot-path
work (one feed worker per NIC queue, say) runs each worker as a process pinned with
os.sched_setaffinity to one CPU from its config. The role's process owns the workers: it stops
them with a shared event, waits a bounded time, and only then kills a worker that hangs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

_CTX = mp.get_context("fork")


@dataclass(frozen=True)
class WorkerContext:
    """What a worker's function gets: its name, the CPU it is pinned to, and the stop event."""

    name: str
    cpu: int
    stop: Event

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()


WorkerMain = Callable[[WorkerContext], int]


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    cpu: int
    main: WorkerMain


class WorkerError(RuntimeError):
    """A worker could not be started (bad CPU) or is not known."""


def _worker_entry(spec: WorkerSpec, stop: Event) -> None:
    os.sched_setaffinity(0, {spec.cpu})
    # The parent decides when workers stop: SIGTERM sets the event, Ctrl-C is the parent's.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    code = spec.main(WorkerContext(spec.name, spec.cpu, stop))
    raise SystemExit(code)


class PinnedWorkers:
    """Start, watch and stop a set of pinned worker processes."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        allowed = os.sched_getaffinity(0)
        for spec in specs:
            if spec.cpu not in allowed:
                raise WorkerError(f"worker {spec.name}: cpu {spec.cpu} not in {sorted(allowed)}")
        if len({s.name for s in specs}) != len(specs):
            raise WorkerError("worker names must be unique")
        self._specs = specs
        self._stop = _CTX.Event()
        self._procs: dict[str, BaseProcess] = {}

    def start(self) -> None:
        for spec in self._specs:
            proc = _CTX.Process(target=_worker_entry, args=(spec, self._stop), name=spec.name)
            proc.start()
            self._procs[spec.name] = proc

    def pids(self) -> dict[str, int]:
        return {name: proc.pid or 0 for name, proc in self._procs.items()}

    def failed(self) -> list[str]:
        """Workers that have exited with a non-zero code (or by a signal)."""
        return sorted(
            name
            for name, proc in self._procs.items()
            if proc.exitcode is not None and proc.exitcode != 0
        )

    def alive(self) -> list[str]:
        return sorted(name for name, proc in self._procs.items() if proc.is_alive())

    def stop(self, timeout_s: float = 5.0) -> dict[str, int | None]:
        """Ask every worker to stop, wait up to TIMEOUT_S, kill stragglers; exit codes by name."""
        self._stop.set()
        for proc in self._procs.values():
            proc.join(timeout_s)
        for proc in self._procs.values():
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        return {name: proc.exitcode for name, proc in self._procs.items()}
