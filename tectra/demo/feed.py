"""Stage 2 of `tectra demo`: the venue simulator and the feed handler across namespaces.

As root: a `venue` and an `appliance` network namespace joined by a veth pair; the simulator
publishes a seeded ITCH 5.0 day over MoldUDP64 from the venue (dropping a few packets on
purpose), and `tectra run feed` receives it in the appliance namespace on the best path the
host offers (AF_XDP behind the XDP steering program first), recovers the drops from the
simulator's retransmission server, and keeps books. Without root: the same over loopback
sockets, and it says so. Live: message rates, gaps and retransmissions, latencies, book tops.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tectra.demo import Appliance, DemoOptions, scrape
from tectra.feed.refs import RefTable
from tectra.io.netns import VethTopology, veth_topology
from tectra.mgmt.role_control import control_socket_path, fetch_status
from tectra.schema import fixed_to_str

FEED_PORT, RETRANS_PORT = 26400, 26401
SYMBOLS = 64
CTX = mp.get_context("fork")
SESSION = "tectra_feed_session_events_total{counter="
LATENCY = "tectra_feed_recv_to_book_latency_quantile_seconds{quantile="


@contextlib.contextmanager
def _network(root: bool) -> Iterator[VethTopology | None]:
    if not root:
        yield None
        return
    with veth_topology() as topo:
        yield topo


def _config_text(workdir: Path, shm_root: Path, topo: VethTopology | None, port: int) -> str:
    cpus = sorted(os.sched_getaffinity(0))
    feed_cpu = cpus[1:2] if len(cpus) >= 2 else []
    if topo is None:
        where = 'io = "socket"\ninterface = "lo"\nretrans_host = "127.0.0.1"\n'
    else:
        where = (
            f'io = "auto"\ninterface = "{topo.appliance_if}"\nnetns = "{topo.appliance_ns}"\n'
            f'retrans_host = "{topo.venue_ip}"\n'
        )
    rings = "".join(
        f'[rings.md-{name}]\ncapacity = 65536\nkind = "spsc"\npolicy = "overwrite"\n'
        f'record = "{record}"\n\n'
        for name, record in (("book", "BOOK_UPDATE"), ("tick", "TICK"), ("trade", "TRADE"))
    )
    return (
        f'[appliance]\nname = "tectra-demo"\nstate_dir = "{workdir}"\nshm_root = "{shm_root}"\n\n'
        f'[metrics]\nhost = "127.0.0.1"\n\n'
        f"[roles.feed]\ncpus = {feed_cpu}\nmetrics_port = {port}\nwatchdog_s = 10.0\n"
        "warmup_ticks = 10000\n\n"
        f"[feed]\n{where}udp_port = {FEED_PORT}\nretrans_port = {RETRANS_PORT}\n"
        'md_ring = "md"\nrefs_table = "refs"\nsnapshot_interval_s = 5.0\ncapture = true\n\n'
        f"{rings}"
    )


def _publish(
    topo: VethTopology | None, rate: int, seconds: float, go: Connection, out: Connection
) -> None:
    """The venue: in its own namespace (as root), pinned to the other core."""
    from tectra.sim.itch_flow import ItchFlow
    from tectra.sim.mold_publisher import FaultPlan, MoldPublisher, PublisherConfig

    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if topo is not None:
        from pyroute2 import netns

        netns.setns(topo.venue_ns)
    dest_ip = topo.appliance_ip if topo else "127.0.0.1"
    retrans_ip = topo.venue_ip if topo else "127.0.0.1"
    config = PublisherConfig(
        dest=(dest_ip, FEED_PORT),
        retrans_bind=(retrans_ip, RETRANS_PORT),
        rate=float(rate),
        heartbeat_s=0.2,
        faults=FaultPlan(seed=5, drop=0.002),  # a few gaps for the feed to recover
    )
    flow = ItchFlow(2026, symbols=SYMBOLS)
    with MoldPublisher(config, symbols=flow.symbols) as publisher:
        go.recv()
        sent = publisher.run(flow, seconds=seconds)
        out.send((sent, dict(publisher.stats)))
        go.recv()  # keep answering retransmission requests until the feed has everything


def _tops(refs: RefTable, limit: int = 4) -> str:
    shown = []
    for instrument in range(1, SYMBOLS + 1):
        row = refs.read(instrument)
        if row is None or not row["bid_qty"] or not row["ask_qty"]:
            continue
        symbol = bytes(row["symbol"]).decode(errors="replace").strip()
        shown.append(
            f"{symbol} {fixed_to_str(int(row['bid_px']))}×{int(row['bid_qty'])}"
            f" / {fixed_to_str(int(row['ask_px']))}×{int(row['ask_qty'])}"
        )
        if len(shown) == limit:
            break
    return "   ".join(shown) or "(no two-sided books yet)"


def _line(elapsed: float, metrics: dict[str, float], prev: float, dt: float) -> str:
    got = metrics.get(SESSION + "messages}", 0.0)
    return (
        f"t={elapsed:5.1f}s  feed {(got - prev) / dt:9,.0f} msg/s"
        f"  gaps {metrics.get(SESSION + 'gaps}', 0):,.0f}"
        f"  retransmitted {metrics.get(SESSION + 'retrans_filled}', 0):,.0f}"
        f"  lost {metrics.get(SESSION + 'lost}', 0):,.0f}"
        f"  recv→book p50 {metrics.get(LATENCY + '0.5}', 0) * 1e6:6.1f}µs"
        f" p99 {metrics.get(LATENCY + '0.99}', 0) * 1e6:7.1f}µs"
    )


def run_feed_stage(opts: DemoOptions) -> dict[str, Any]:
    from tectra.demo import _free_port

    say = (lambda *a: None) if opts.json_out else print
    root = os.geteuid() == 0
    workdir = Path(tempfile.mkdtemp(prefix="tectra-demo-feed-"))
    shm_root = Path("/dev/shm") / f"tectra-demo-feed-{os.getpid()}"
    summary: dict[str, Any] = {"ok": False}
    say("\nStage 2 — market data: venue simulator → MoldUDP64/ITCH 5.0 → feed → books")
    if not root:
        say("  not root: no namespaces or XDP; loopback UDP sockets (io = socket)")
    with _network(root) as topo:
        port = _free_port()
        config = workdir / "tectra.toml"
        config.write_text(_config_text(workdir, shm_root, topo, port))
        appliance = Appliance(config, workdir, roles=("feed",))
        go_rx, go_tx = CTX.Pipe(duplex=False)
        out_rx, out_tx = CTX.Pipe(duplex=False)
        venue = CTX.Process(
            target=_publish, args=(topo, opts.feed_rate, opts.feed_seconds, go_rx, out_tx)
        )
        try:
            appliance.start()
            appliance.wait_ready()
            status = fetch_status(control_socket_path(workdir, "feed"))
            summary["io_path"] = status.io_path
            if topo is not None:
                say(
                    f"  venue {topo.venue_ns} {topo.venue_ip}  →  appliance {topo.appliance_ns}"
                    f" {topo.appliance_ip} (veth {topo.appliance_if})"
                )
            say(
                f"  feed READY on io path '{status.io_path}', cpus {list(status.cpus)},"
                f" metrics http://127.0.0.1:{port}/metrics"
            )
            say(
                f"  venue publishes {opts.feed_rate:,} msg/s for {opts.feed_seconds:g}s,"
                " dropping 0.2 % of packets on purpose\n"
            )
            venue.start()
            go_tx.send(True)
            refs = _attach_refs(shm_root)
            started = last = time.monotonic()
            prev = 0.0
            sent: tuple[int, dict[str, int]] | None = None
            metrics: dict[str, float] = {}
            while True:
                time.sleep(1.0)
                now = time.monotonic()
                metrics = scrape(port)
                say(_line(now - started, metrics, prev, now - last))
                if refs is not None:
                    say(f"         {_tops(refs)}")
                prev, last = metrics.get(SESSION + "messages}", 0.0), now
                if sent is None and out_rx.poll():
                    sent = out_rx.recv()
                if sent is not None and prev >= sent[0]:
                    break
                if now - started > opts.feed_seconds + 15:
                    break
            go_tx.send(True)
            venue.join(10)
            if refs is not None:
                refs.close()
            codes = appliance.stop()
            summary.update(
                published=sent[0] if sent else None,
                venue_dropped_packets=sent[1]["dropped"] if sent else None,
                delivered=int(metrics.get(SESSION + "messages}", 0)),
                gaps=int(metrics.get(SESSION + "gaps}", 0)),
                retransmitted=int(metrics.get(SESSION + "retrans_filled}", 0)),
                lost=int(metrics.get(SESSION + "lost}", 0)),
                recv_to_book_p50_us=round(metrics.get(LATENCY + "0.5}", 0) * 1e6, 1),
                recv_to_book_p99_us=round(metrics.get(LATENCY + "0.99}", 0) * 1e6, 1),
                exit_codes=codes,
            )
            summary.update(_replay_capture(workdir / "journal" / "feed", say))
            summary["ok"] = bool(
                sent
                and summary["delivered"] == sent[0]
                and summary["lost"] == 0
                and all(code == 0 for code in codes.values())
                and summary["journal_verified"]
                and summary["replay_divergences"] == 0
            )
        except (RuntimeError, OSError, ValueError) as exc:
            appliance.stop()
            say(f"feed stage failed: {exc}\n--- feed log ---\n{appliance.log_tail('feed')}")
            summary["error"] = str(exc)
        finally:
            if venue.is_alive():
                venue.kill()
            shutil.rmtree(shm_root, ignore_errors=True)
    if not opts.json_out and "delivered" in summary:
        say(
            "\nFeed stage summary\n"
            f"  io path {summary['io_path']}; published {summary['published']:,} messages,"
            f" delivered {summary['delivered']:,} in order\n"
            f"  gaps {summary['gaps']} (venue dropped {summary['venue_dropped_packets']} packets),"
            f" retransmitted {summary['retransmitted']:,}, lost {summary['lost']}\n"
            f"  receive→book latency p50 {summary['recv_to_book_p50_us']}µs"
            f"  p99 {summary['recv_to_book_p99_us']}µs\n"
            f"  logs, lifecycle journal and book snapshots in {workdir}\n"
            f"  result: {'OK' if summary['ok'] else 'FAILED'}"
        )
    return summary


def _replay_capture(journal_dir: Path, say: Any) -> dict[str, Any]:
    """Verify the feed's capture, replay it instantly through a fresh FeedComponent and diff."""
    from tectra.feed.component import FeedComponent
    from tectra.journal.manifest import load_manifest
    from tectra.journal.replay import replay_journal
    from tectra.journal.verify import verify_journal

    verified = verify_journal(journal_dir)
    report = replay_journal(journal_dir, FeedComponent())
    manifest = load_manifest(journal_dir)
    roots = [s.merkle_root for s in manifest.segments] if manifest else []
    say("\nCapture and replay")
    say(
        f"  journal {journal_dir}: {len(roots)} segment(s), verify "
        f"{'OK' if verified.ok else 'FAILED: ' + str(verified.errors()[:3])}"
    )
    for i, root in enumerate(roots):
        say(f"  segment {i} Merkle root {root}")
    if manifest is not None:
        say(f"  journal root {manifest.journal_root}")
    say("  " + report.format_text().replace("\n", "\n  "))
    return {
        "journal_verified": verified.ok,
        "journal_root": manifest.journal_root if manifest else None,
        "segment_merkle_roots": roots,
        "replay_steps": report.steps,
        "replay_outputs": report.actual_outputs,
        "replay_divergences": report.divergences,
    }


def _attach_refs(shm_root: Path) -> RefTable | None:
    try:
        return RefTable.attach("refs", root=shm_root)
    except (OSError, ValueError):
        return None
