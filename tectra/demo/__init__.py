"""`tectra demo` (what `make demo` runs): the appliance end to end on one host.

At this stage: a publisher role and a consumer role, each its own process pinned to its own
core, joined by a shared-memory ring; live throughput and latency read from the roles' own
/metrics endpoints; `tectractl status` over their control sockets; an orderly SIGTERM stop;
and a summary the consumer writes after verifying every record's checksum and sequence.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tectra.mgmt.role_control import RoleControlError, control_socket_path, fetch_status

ROLES = ("consumer", "publisher")  # consumer first so it is waiting when records start
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DemoOptions:
    seconds: float = 5.0  # ring stage
    rate: int = 1_000_000
    batch: int = 256
    json_out: bool = False
    feed_seconds: float = 10.0  # feed stage
    feed_rate: int = 100_000  # ITCH messages/s from the venue simulator
    gateway_seconds: float = 12.0  # gateway stage
    gateway_rate: float = 100.0  # orders/s per client session
    stages: tuple[str, ...] = ("ring", "feed", "gateway")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_demo_config(
    workdir: Path, shm_root: Path, opts: DemoOptions
) -> tuple[Path, dict[str, int]]:
    """Write the demo appliance's TOML (free ports, one CPU per role) and return it with ports."""
    cpus = sorted(os.sched_getaffinity(0))
    pins = {"publisher": cpus[:1], "consumer": cpus[1:2]} if len(cpus) >= 2 else {}
    ports = {role: _free_port() for role in ROLES}
    roles = "".join(
        f"[roles.{role}]\ncpus = {pins.get(role, [])}\nmetrics_port = {ports[role]}\n"
        "watchdog_s = 10.0\nwarmup_ticks = 10000\n\n"
        for role in ROLES
    )
    text = (
        f'[appliance]\nname = "tectra-demo"\nstate_dir = "{workdir}"\nshm_root = "{shm_root}"\n'
        f'log_level = "info"\n\n[metrics]\nhost = "127.0.0.1"\n\n{roles}'
        '[rings.demo]\ncapacity = 65536\nkind = "spsc"\npolicy = "overwrite"\n'
        'record = "RING_PROBE"\n\n'
        f'[demo]\nring = "demo"\nrate = {opts.rate}\nbatch = {opts.batch}\n'
    )
    path = workdir / "tectra.toml"
    path.write_text(text)
    return path, ports


def scrape(port: int) -> dict[str, float]:
    """One /metrics scrape flattened to {"name{label=value}": value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        text = reply.read().decode()
    flat: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            flat[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return flat


def _micro(seconds: float) -> str:
    return f"{seconds * 1e6:7.1f}µs"


class Appliance:
    """The role processes of one demo stage (started in order, stopped in reverse), and logs."""

    def __init__(self, config: Path, workdir: Path, roles: tuple[str, ...] = ROLES) -> None:
        self.config = config
        self.workdir = workdir
        self.roles = roles
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for role in self.roles:
            log = (self.workdir / f"{role}.log").open("wb")
            self.procs[role] = subprocess.Popen(
                [sys.executable, "-m", "tectra", "run", role, "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = set(self.roles)
        while pending:
            for role in sorted(pending):
                if self.procs[role].poll() is not None:
                    raise RuntimeError(f"{role} exited early:\n{self.log_tail(role)}")
                try:
                    status = fetch_status(control_socket_path(self.workdir, role), 1.0)
                except RoleControlError:
                    continue
                if status.lifecycle == "READY":
                    pending.discard(role)
            if time.monotonic() > deadline:
                raise RuntimeError(f"not READY after {READY_TIMEOUT_S:.0f}s: {sorted(pending)}")
            time.sleep(0.1)

    def stop(self) -> dict[str, int | None]:
        """Stop upstream first (publisher), so the consumer can drain what is left."""
        codes: dict[str, int | None] = {}
        for role in reversed(self.roles):
            proc = self.procs.get(role)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[role] = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[role] = proc.wait()
        return codes

    def log_tail(self, role: str, lines: int = 20) -> str:
        path = self.workdir / f"{role}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _live_line(
    elapsed: float, pub: dict[str, float], con: dict[str, float], prev: dict[str, float], dt: float
) -> str:
    published = pub.get("tectra_demo_published_records_total", 0.0)
    received = con.get("tectra_demo_received_total", 0.0)
    q = "tectra_demo_transit_latency_quantile_seconds{quantile="
    return (
        f"t={elapsed:5.1f}s  published {(published - prev.get('pub', 0)) / dt:11,.0f}/s"
        f"  consumed {(received - prev.get('con', 0)) / dt:11,.0f}/s"
        f"  lost {con.get('tectra_demo_lost_total', 0):,.0f}"
        f"  bad {con.get('tectra_demo_checksum_errors_total', 0):,.0f}"
        f"  depth {pub.get('tectra_ring_depth{ring=demo}', 0):,.0f}"
        f"  latency p50 {_micro(con.get(q + '0.5}', 0))} p99 {_micro(con.get(q + '0.99}', 0))}"
        f" p999 {_micro(con.get(q + '0.999}', 0))}"
    )


def run_demo(opts: DemoOptions) -> int:
    """Every stage in turn; exit 0 only when every stage's own checks passed."""
    summaries: dict[str, dict[str, Any]] = {}
    if "ring" in opts.stages:
        summaries["ring"] = run_ring_stage(opts)
    if "feed" in opts.stages:
        from tectra.demo.feed import run_feed_stage

        summaries["feed"] = run_feed_stage(opts)
    if "gateway" in opts.stages:
        from tectra.demo.gateway import run_gateway_stage

        summaries["gateway"] = run_gateway_stage(opts)
    ok = bool(summaries) and all(s.get("ok") for s in summaries.values())
    if opts.json_out:
        print(json.dumps({**summaries, "ok": ok}))
    else:
        print(
            f"\nDemo {'OK' if ok else 'FAILED'}: "
            + ", ".join(
                f"{name} {'ok' if s.get('ok') else 'FAILED'}" for name, s in summaries.items()
            )
        )
    return 0 if ok else 1


def run_ring_stage(opts: DemoOptions) -> dict[str, Any]:
    """Publisher → shm ring → consumer, live figures, a reconciling summary."""
    workdir = Path(tempfile.mkdtemp(prefix="tectra-demo-"))
    shm_root = (
        Path("/dev/shm") if Path("/dev/shm").is_dir() else workdir
    ) / f"tectra-demo-{os.getpid()}"
    config, ports = write_demo_config(workdir, shm_root, opts)
    appliance = Appliance(config, workdir)
    say = (lambda *a: None) if opts.json_out else print
    say("Stage 1 — rings: publisher → shm ring 'demo' (SPSC, overwrite, 65536 × 64 B) → consumer")
    say(f"  I/O path: shared memory under {shm_root}")
    say(f"  rate {opts.rate:,} records/s in batches of {opts.batch}; running {opts.seconds:g}s")
    ok = False
    summary: dict[str, Any] = {}
    try:
        appliance.start()
        appliance.wait_ready()
        for role in ROLES:
            url = f"http://127.0.0.1:{ports[role]}"
            say(f"  {role:9s} READY  metrics {url}/metrics  health {url}/health/ready")
        say("")
        started = last = time.monotonic()
        prev = {
            "pub": scrape(ports["publisher"]).get("tectra_demo_published_records_total", 0.0),
            "con": scrape(ports["consumer"]).get("tectra_demo_received_total", 0.0),
        }
        while (now := time.monotonic()) - started < opts.seconds:
            time.sleep(max(0.0, 1.0 - (now - last)))
            now = time.monotonic()
            pub, con = scrape(ports["publisher"]), scrape(ports["consumer"])
            say(_live_line(now - started, pub, con, prev, now - last))
            prev = {
                "pub": pub.get("tectra_demo_published_records_total", 0.0),
                "con": con.get("tectra_demo_received_total", 0.0),
            }
            last = now
        say("")
        say(
            subprocess.run(
                [sys.executable, "-m", "tectra.mgmt.ctl", "--config", str(config), "status"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        )
        codes = appliance.stop()
        summary = json.loads((workdir / "demo" / "consumer-summary.json").read_text())
        published = json.loads((workdir / "demo" / "publisher-summary.json").read_text())
        summary["published"] = published["published"]
        summary["exit_codes"] = codes
        ok = (
            all(code == 0 for code in codes.values())
            and summary["received"] > 0
            and summary["checksum_errors"] == 0
            and summary["sequence_errors"] == 0
            # Overwrite never blocks the publisher, so every record is received or counted lost.
            and summary["received"] + summary["lost"] == summary["published"]
        )
        summary["ok"] = ok
    except (RuntimeError, OSError, ValueError) as exc:
        appliance.stop()
        print(f"demo failed: {exc}", file=sys.stderr)
        for role in ROLES:
            print(f"--- {role} log ---\n{appliance.log_tail(role)}", file=sys.stderr)
    finally:
        shutil.rmtree(shm_root, ignore_errors=True)
    if summary and not opts.json_out:
        lat = summary["latency_ns"]
        print(
            "\nRing stage summary\n"
            f"  published {summary['published']:,}  received {summary['received']:,}"
            f"  lost to overrun {summary['lost']:,} (counted exactly by the ring)\n"
            f"  checksum errors {summary['checksum_errors']}"
            f"  sequence errors {summary['sequence_errors']}\n"
            f"  transit latency p50 {lat['p50'] / 1e3:.1f}µs  p99 {lat['p99'] / 1e3:.1f}µs"
            f"  p99.9 {lat['p99.9'] / 1e3:.1f}µs\n"
            f"  roles exited {summary['exit_codes']}; logs and lifecycle journals in {workdir}\n"
            f"  result: {'OK' if ok else 'FAILED'}"
        )
    summary["ok"] = ok
    return summary
