"""The benchmark floor: a bare quickfix acceptor that answers every order itself.

`gateway_e2e` measures the gateway against this floor in the same run: the same quickfix
acceptor as the gateway's (ThreadedSocketAcceptor with `settings.acceptor_settings`: FileStore,
FileLog, data dictionary validation), but no codec, no risk, no venue. Each request gets exactly
one answer, built directly as a quickfix message on the session's quickfix thread:

* NewOrderSingle -> ExecutionReport New (mode 'new') or Fill (mode 'fill');
* OrderCancelRequest -> ExecutionReport Canceled ('new') or OrderCancelReject ('fill': the
  order is already filled);
* OrderCancelReplaceRequest -> ExecutionReport Replaced ('new') or OrderCancelReject ('fill');
* anything else -> BusinessMessageReject (unsupported message type).

Run it as a process (`python -m adapters.fix.floor --port P --state-dir D`): it prints one JSON
line `{"event": "ready", ...}` once listening, and its counters as JSON on SIGTERM/SIGINT.
`start_floor_process` / `stop_floor_process` do that from Python (benchmarks, tests).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import quickfix as fix

from adapters.fix.settings import (
    FixAcceptorConfig,
    FixSessionConfig,
    acceptor_settings,
    stop_engine,
)

__all__ = ["FloorAcceptor", "FloorMode", "main", "start_floor_process", "stop_floor_process"]

FloorMode = Literal["new", "fill"]
_REPO_ROOT: Final[Path] = Path(__file__).resolve().parents[2]


class _Clock:
    """TransactTime text, formatted once per second (strftime per message would dominate)."""

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def now(self) -> str:
        ns = time.time_ns()
        sec, rem = divmod(ns, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{rem // 1_000_000:03d}"


class _FloorApplication(fix.Application):  # type: ignore[misc]  # quickfix is untyped
    def __init__(self, mode: FloorMode) -> None:
        super().__init__()
        self._fill = mode == "fill"
        self._ids: Iterator[int] = itertools.count(1)
        self._clock = _Clock()
        self.answered = 0
        self.errors = 0
        self.logons = 0

    def onCreate(self, session_id: Any) -> None:  # noqa: N802
        pass

    def onLogon(self, session_id: Any) -> None:  # noqa: N802
        self.logons += 1

    def onLogout(self, session_id: Any) -> None:  # noqa: N802
        pass

    def toAdmin(self, message: Any, session_id: Any) -> None:  # noqa: N802
        pass

    def fromAdmin(self, message: Any, session_id: Any) -> None:  # noqa: N802
        pass

    def toApp(self, message: Any, session_id: Any) -> None:  # noqa: N802
        pass

    def fromApp(self, message: Any, session_id: Any) -> None:  # noqa: N802
        try:
            reply = self._answer(message)
            fix.Session.sendToTarget(reply, session_id)
            self.answered += 1
        except Exception:
            self.errors += 1  # never let a callback raise into quickfix

    def _answer(self, m: Any) -> Any:
        # Replies are built as FIX text and parsed once by quickfix (fifteen setField calls
        # through SWIG cost three times as much); quickfix fills in the header and trailer.
        # Echoed values come from a message quickfix already parsed: they hold no SOH.
        msg_type = m.getHeader().getField(35)
        n = next(self._ids)
        if msg_type == "D":
            qty = m.getField(38)
            px = m.getField(44) if m.isSetField(44) else "0"
            echo = f"11={m.getField(11)}\x0138={qty}\x0154={m.getField(54)}\x0155={m.getField(55)}"
            if self._fill:
                state = f"6={px}\x0114={qty}\x0131={px}\x0132={qty}\x0139=2\x01150=F\x01151=0"
            else:
                state = f"6=0\x0114=0\x0139=0\x01150=0\x01151={qty}"
            body = f"35=8\x0117={n}\x0137={n}\x01{echo}\x01{state}\x0160={self._clock.now()}\x01"
        elif msg_type in ("F", "G") and self._fill:  # all filled already: too late to cancel
            to = "1" if msg_type == "F" else "2"
            ids = f"11={m.getField(11)}\x0141={m.getField(41)}"
            body = f"35=9\x0137=NONE\x01{ids}\x0139=2\x01102=0\x01434={to}\x01"
        elif msg_type in ("F", "G"):
            qty = m.getField(38) if m.isSetField(38) else "0"
            ids = f"11={m.getField(11)}\x0141={m.getField(41)}"
            echo = f"38={qty}\x0154={m.getField(54)}\x0155={m.getField(55)}"
            canceled = "39=4\x01150=4\x01151=0"
            state = canceled if msg_type == "F" else f"39=0\x01150=5\x01151={qty}"
            body = (
                f"35=8\x016=0\x0114=0\x0117={n}\x0137={n}\x01{ids}\x01{echo}\x01{state}"
                f"\x0160={self._clock.now()}\x01"
            )
        else:
            seq = m.getHeader().getField(34)
            text = f"floor does not handle message type {msg_type}"
            body = f"35=j\x0145={seq}\x0158={text}\x01372={msg_type}\x01380=3\x01"
        return fix.Message(f"8=FIX.4.4\x019={len(body)}\x01{body}10=000\x01", False)


class FloorAcceptor:
    """A bare quickfix acceptor answering D/F/G itself (see the module docstring)."""

    def __init__(
        self,
        port: int,
        state_dir: Path,
        *,
        mode: FloorMode = "new",
        sender_comp_id: str = "TECTRA",
        target_comp_ids: Sequence[str] = ("LOADGEN",),
        store: Literal["file", "memory"] = "file",
        file_log: bool = True,
    ) -> None:
        if mode not in ("new", "fill"):
            raise ValueError(f"floor mode {mode!r} must be 'new' or 'fill'")
        self.config = FixAcceptorConfig(
            port=port,
            state_dir=Path(state_dir),
            sessions=tuple(
                FixSessionConfig(i + 1, sender_comp_id, target, cancel_on_disconnect=False)
                for i, target in enumerate(target_comp_ids)
            ),
            store=store,
            file_log=file_log,
        )
        self._settings = acceptor_settings(self.config)
        self._app = _FloorApplication(mode)
        self._store = (
            fix.FileStoreFactory(self._settings) if store == "file" else fix.MemoryStoreFactory()
        )
        self._log = fix.FileLogFactory(self._settings) if file_log else None
        self._acceptor = fix.ThreadedSocketAcceptor(
            self._app, self._store, self._settings, self._log
        )
        self._session_ids = [
            fix.SessionID("FIX.4.4", s.sender_comp_id, s.target_comp_id)
            for s in self.config.sessions
        ]
        self._started = False

    def start(self) -> None:
        if self._acceptor is None:
            raise RuntimeError("this floor was stopped; create a new FloorAcceptor")
        self._acceptor.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            stop_engine(self._acceptor, self._session_ids)
            self._started = False
        self._acceptor = None  # unregisters the sessions (see FixAcceptor.stop)

    def __enter__(self) -> FloorAcceptor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def counters(self) -> dict[str, int]:
        return {
            "answered": self._app.answered,
            "errors": self._app.errors,
            "logons": self._app.logons,
        }


# --------------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------------


def start_floor_process(
    port: int,
    state_dir: Path,
    *,
    mode: FloorMode = "new",
    sender_comp_id: str = "TECTRA",
    target_comp_ids: Sequence[str] = ("LOADGEN",),
    extra_args: Sequence[str] = (),
    timeout_s: float = 30.0,
) -> subprocess.Popen[str]:
    """Start `python -m adapters.fix.floor` and return once it is listening."""
    cmd = [
        sys.executable,
        "-m",
        "adapters.fix.floor",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        "--mode",
        mode,
        "--sender",
        sender_comp_id,
        *(x for t in target_comp_ids for x in ("--target", t)),
        *extra_args,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.Popen(
        cmd, cwd=_REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
                if not line:
                    break
                if '"ready"' in line:
                    return proc
            if proc.poll() is not None:
                break
    proc.kill()
    proc.wait()
    raise RuntimeError(f"floor did not start: {' '.join(cmd)} (exit {proc.returncode})")


def stop_floor_process(proc: subprocess.Popen[str], timeout_s: float = 15.0) -> dict[str, Any]:
    """SIGTERM the floor, wait, and return the counters it printed (empty if none)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    for line in reversed((out or "").splitlines()):
        try:
            result = json.loads(line)
        except ValueError:
            continue
        if isinstance(result, dict):
            return result
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m adapters.fix.floor`: run the floor until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(prog="python -m adapters.fix.floor", description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--mode", choices=("new", "fill"), default="new")
    ap.add_argument("--sender", default="TECTRA", help="our SenderCompID")
    ap.add_argument("--target", action="append", help="client CompID (repeatable)")
    ap.add_argument("--memory-store", action="store_true", help="MemoryStore, not FileStore")
    ap.add_argument("--no-file-log", action="store_true", help="no quickfix FileLog")
    args = ap.parse_args(argv)
    floor = FloorAcceptor(
        args.port,
        args.state_dir,
        mode=args.mode,
        sender_comp_id=args.sender,
        target_comp_ids=tuple(args.target or ("LOADGEN",)),
        store="memory" if args.memory_store else "file",
        file_log=not args.no_file_log,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    floor.start()
    ready = {"event": "ready", "port": args.port, "mode": args.mode, "pid": os.getpid()}
    print(json.dumps(ready), flush=True)
    while not done.wait(0.5):
        pass
    floor.stop()
    print(json.dumps({"event": "stopped", **floor.counters()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
