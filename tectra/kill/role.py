"""The `kill` role (`tectra run kill`, `tectra@kill`): the I/O shell around `KillEngine`.

It wires the parts: the control block (restored from the state file, or the live one in shared
memory), the ledger, the engine, the fan-out (local sockets always, NATS when configured),
the egress guard for ISOLATE_VENUE (when ``kill.egress_interface`` is set and the kernel path
works), the trigger inputs (E-stop file, market-data activity from the feed's reference table,
and an `Observations` queue for everything else), the KillControl service on the role's
control socket, metrics on /metrics, and — with ``kill.mirror`` — a `KillSubscriber` that
applies other appliances' NATS commands to this host's control block.

The loop polls the inputs, evaluates the triggers, and runs the engine's timer work every
``kill.evaluate_interval_s``.
"""

from __future__ import annotations

from pathlib import Path

from tectra.core.clock import monotonic_ns
from tectra.core.config import KillConfig, TectraConfig
from tectra.io.killblock import Scope
from tectra.journal.writer import WriterOptions
from tectra.kill.engine import KillEngine, VenueBook, open_block
from tectra.kill.fanout import Fanout
from tectra.kill.inputs import (
    EStopFile,
    GatewayActivity,
    MarketDataActivity,
    Observations,
    TriggerInput,
)
from tectra.kill.journal import KillJournal
from tectra.kill.ledger import KillLedger
from tectra.kill.servicer import kill_control_adder
from tectra.kill.state import StateStore
from tectra.kill.subscriber import CancelProgress, KillSubscriber
from tectra.kill.triggers import KillActionName, TriggerSet, TriggerSettings
from tectra.mgmt.role_control import control_socket_path
from tectra.roles.shell import RoleShell

__all__ = ["GuardIsolator", "build_triggers", "run_kill"]

LEDGER_NAME = "kill"  # what `tectractl kill verify` checks against by default


class GuardIsolator:
    """`Isolator` over the TC egress guard: a venue's configured addresses are dropped."""

    def __init__(self, kc: KillConfig, venues: VenueBook) -> None:
        from tectra.io.egress_guard import EgressGuard

        self.venues = venues
        self.guard = EgressGuard(kc.egress_interface, namespace=kc.egress_netns or None)

    def isolate(self, venue_id: int) -> str:
        dests = self.venues.destinations(venue_id)
        if not dests:
            return f"no addresses configured for venue {venue_id} (kill.venues): not isolated"
        for d in dests:
            self.guard.block(d.address, d.port)
        listed = ", ".join(f"{d.address}:{d.port or '*'}" for d in dests)
        return f"venue {venue_id} isolated in the kernel ({listed})"

    def release(self, venue_id: int) -> str:
        for d in self.venues.destinations(venue_id):
            self.guard.unblock(d.address, d.port)
        return f"venue {venue_id} released from the egress guard"

    def close(self) -> None:
        self.guard.detach()


class _NoGateway:
    """The mirror's KillActions: a kill role has no orders of its own."""

    def cancel_scope(self, scope: Scope, scope_id: int, kill_id: int) -> int:
        return 0

    def cancel_progress(self, kill_id: int) -> CancelProgress:
        return CancelProgress(0, 0)

    def open_orders(self, scope: Scope, scope_id: int) -> int:
        return 0

    def orders_blocked(self, scope: Scope, scope_id: int) -> int:
        return 0


def build_triggers(kc: KillConfig) -> TriggerSet:
    return TriggerSet.from_settings(
        {
            name: TriggerSettings(
                armed=t.armed,
                dry_run=t.dry_run,
                threshold=t.threshold,
                window_s=t.window_s,
                min_samples=t.min_samples,
                action=KillActionName(t.action),
            )
            for name, t in kc.triggers.items()
        }
    )


def run_kill(config: TectraConfig, observations: Observations | None = None) -> int:
    kc = config.kill
    state_dir = Path(config.appliance.state_dir)
    kill_dir = state_dir / "kill"
    kill_dir.mkdir(parents=True, exist_ok=True)
    run_dir = state_dir / "run"
    store = StateStore(kc.state_file or kill_dir / "state.json")
    ledger = KillLedger(
        kc.ledger or kill_dir / "ledger.jsonl", LEDGER_NAME, on_torn_tail="truncate"
    )
    block = open_block(kc.control_block, config.appliance.shm_root, store)
    # Capture of every command, ack and ledger record (issue 6); its own thread, never on the
    # kill path. Started before restore so a fail-closed restore is captured too.
    # A journal that cannot be opened (locked, damaged) must not keep the kill switch down:
    # the role runs without capture and says so in its status.
    capture = KillJournal(state_dir / "journal" / "kill", WriterOptions.from_config(config.journal))
    journal: KillJournal | None = capture
    journal_state = "capturing to " + str(capture.directory)
    try:
        capture.start()
    except Exception as exc:
        journal_state = f"unavailable: {exc}"
        journal = None
    venues = VenueBook(kc.venues)
    appliance = config.appliance.name
    fanout = Fanout(
        run_dir, appliance=appliance, nats_url=kc.nats_url, subject_prefix=kc.subject_prefix
    )
    isolator: GuardIsolator | None = None
    isolation = "unavailable (kill.egress_interface not set)"
    if kc.egress_interface:
        from tectra.io.egress_guard import EgressGuardError

        try:
            isolator = GuardIsolator(kc, venues)
            isolation = f"tc egress guard on {kc.egress_interface}"
        except EgressGuardError as exc:
            isolation = f"unavailable: {exc}"
    engine = KillEngine(
        block,
        ledger,
        store,
        fanout=fanout,
        triggers=build_triggers(kc),
        isolator=isolator,
        venues=venues,
        expected_subscribers=kc.subscribers,
        ack_timeout_s=kc.ack_timeout_s,
        ack_retry_s=kc.ack_retry_s,
        confirm_timeout_s=kc.confirm_timeout_s,
        slow_max_orders_per_s=kc.slow_max_orders_per_s,
        issuer=f"{appliance}/kill",
        journal=journal,
    )
    restored = engine.restore()
    obs = observations or Observations()
    md = MarketDataActivity(config.feed.refs_table, config.appliance.shm_root)
    gateway = GatewayActivity(control_socket_path(Path(config.appliance.state_dir), "gateway"))
    inputs: list[TriggerInput] = [
        EStopFile(kc.estop_file or run_dir / "kill.estop"),
        md,
        gateway,
        obs,
    ]
    mirror: KillSubscriber | None = None
    try:
        with RoleShell(
            "kill", config, io_path="shm+local", services=[kill_control_adder(engine)]
        ) as shell:
            shell.log.info("kill state", restored=restored, isolation=isolation)
            fanout.start()
            for line in engine.reapply_isolation():
                shell.log.info("isolation re-applied", result=line)
            shell.io_path = "shm+" + fanout.paths
            if kc.mirror and kc.nats_url:
                mirror = KillSubscriber(
                    f"{appliance}-kill"[:16],
                    _NoGateway(),
                    appliance=appliance,
                    nats_url=kc.nats_url,
                    subject_prefix=kc.subject_prefix,
                    applier=engine,
                    accept_own_appliance=False,
                )
                mirror.start()
            _register_metrics(shell, engine, fanout)
            shell.details["halted"] = lambda: str(engine.status().blocked_all).lower()
            shell.details["active_kills"] = lambda: str(len(engine.active()))
            shell.details["fanout"] = lambda: fanout.paths
            shell.details["isolation"] = lambda: isolation
            shell.details["journal"] = lambda: journal_state
            shell.details["market_data"] = lambda: md.error or "refs attached"
            shell.details["gateway_inputs"] = lambda: gateway.error or f"{gateway.polls} polls"
            shell.ready(f"kill switch serving ({fanout.paths}); {restored}")
            interval = kc.evaluate_interval_s or 0.05
            while not shell.stopping:
                shell.heartbeat()
                now = monotonic_ns()
                for source in inputs:
                    source.poll(engine.triggers, now)
                engine.evaluate(now)
                engine.tick(now)
                shell.wait(interval)
    finally:
        if mirror is not None:
            mirror.stop()
        fanout.stop()
        md.close()
        gateway.close()
        if isolator is not None:
            # Isolation in force stays in force only while the role runs; on stop the block
            # (persisted, in shm) still rejects orders, and a restart re-isolates active kills.
            isolator.close()
        if journal is not None:
            journal.close()
        ledger.close()
        block.close()  # never unlinked: gateways keep reading it
    return 0


def _register_metrics(shell: RoleShell, engine: KillEngine, fanout: Fanout) -> None:
    m = shell.metrics
    for hist in (
        engine.trigger_to_block,
        engine.trigger_to_cancels_sent,
        engine.trigger_to_cancels_confirmed,
        engine.trigger_to_ack,
    ):
        m.register(hist)
    m.counter_from(
        "tectra_kill_actions",
        "Kills applied, per action.",
        lambda: {(k,): float(v) for k, v in dict(engine.actions).items()},
        labels=["action"],
    )
    m.counter_from(
        "tectra_kill_failures",
        "Kill-switch failures, per kind (bad_request, persist, ledger, isolate, fanout, ...).",
        lambda: {(k,): float(v) for k, v in dict(engine.failures).items()},
        labels=["kind"],
    )
    m.counter_from(
        "tectra_kill_events",
        "Kill-switch events: retries, duplicates, acks, late/missing acks, dry runs, clears.",
        lambda: {(k,): float(v) for k, v in dict(engine.counts).items()},
        labels=["event"],
    )
    m.counter_from(
        "tectra_kill_fanout",
        "Fan-out counters (local/nats sends and failures, acks, malformed acks).",
        lambda: {(k,): float(getattr(fanout.stats, k)) for k in fanout.stats.__dataclass_fields__},
        labels=["counter"],
    )
    m.gauge_from(
        "tectra_kill_halted",
        "1 while the control block blocks the whole firm.",
        lambda: float(engine.status().blocked_all),
    )
    m.gauge_from(
        "tectra_kill_active",
        "Kills in force.",
        lambda: float(len(engine.active())),
    )
    m.gauge_from(
        "tectra_kill_epoch",
        "Control-block epoch.",
        lambda: float(engine.block.epoch),
    )
