"""Local fan-out: subscribers ack what they did; silent ones are reported by name."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tectra.io.killblock import Scope
from tectra.kill.engine import Action, Target, TriggerRequest
from tectra.kill.subscriber import KillSubscriber
from tectra.kill.wire import SUBSCRIBER_DIR, KillCommand, kill_id_u64
from tectra.schema import KillAckStatus, KillAction

from .conftest import FakeGateway, Rig, make_rig


@contextmanager
def subscribers(run_dir: Path, **gws: FakeGateway) -> Iterator[dict[str, KillSubscriber]]:
    subs = {
        n: KillSubscriber(n, gw, run_dir=run_dir, confirm_timeout_s=2.0) for n, gw in gws.items()
    }
    for s in subs.values():
        s.start()
    try:
        yield subs
    finally:
        for s in subs.values():
            s.stop()


def cancel(kill_id: str, venue: int = 1, **kw: object) -> TriggerRequest:
    return TriggerRequest(kill_id, Target(Scope.VENUE, venue), Action.CANCEL, "drill", "ops", **kw)  # type: ignore[arg-type]


def wait_for(pred: object, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.002)
    return False


def test_every_local_subscriber_acks_with_its_cancels(fan_rig: Rig) -> None:
    a, b = FakeGateway(open=10), FakeGateway(open=3)
    with subscribers(fan_rig.run_dir, gw_a=a, gw_b=b):
        res = fan_rig.engine.trigger(cancel("c1"))
        assert fan_rig.engine.status().subscribers == ("gw_a", "gw_b")
    assert res.applied and not res.missing
    by = {x.subscriber: x for x in res.acks}
    assert set(by) == {"gw_a", "gw_b"}
    assert by["gw_a"].cancels_sent == 10 and by["gw_b"].cancels_sent == 3
    assert all(x.ok and x.latency_ns > 0 for x in res.acks)
    kid = kill_id_u64("c1")
    assert a.calls == [(Scope.VENUE, 1, kid)] and b.calls == [(Scope.VENUE, 1, kid)]
    acks = [e for e in fan_rig.ledger.entries() if e.kind == "ack"]
    assert {e.actor for e in acks} == {"gw_a", "gw_b"}
    assert fan_rig.engine.trigger_to_cancels_sent.count == 1


def test_block_is_acked_too_and_reports_orders_blocked(fan_rig: Rig) -> None:
    gw = FakeGateway(blocked=4)
    with subscribers(fan_rig.run_dir, gw_a=gw):
        res = fan_rig.engine.trigger(
            TriggerRequest("b1", Target(Scope.FIRM), Action.BLOCK, "why", "ops")
        )
    (ack,) = res.acks
    assert ack.orders_blocked == 4 and ack.cancels_sent == 0 and gw.calls == []


def test_a_subscriber_that_never_acks_is_reported_by_name(shm_root: Path, tmp_path: Path) -> None:
    rig = make_rig(
        shm_root,
        tmp_path / "s",
        fanout=True,
        ack_timeout_s=0.2,
        ack_retry_s=0.05,
        expected_subscribers=["gw_a", "gw_gone"],
    )
    rig.engine.restore()
    mute_path = rig.run_dir / SUBSCRIBER_DIR / "gw_mute.sock"
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    mute.bind(str(mute_path))  # bound, alive, never reads nor acks
    try:
        with subscribers(rig.run_dir, gw_a=FakeGateway()):
            t0 = time.monotonic()
            res = rig.engine.trigger(cancel("c2"))
            waited = time.monotonic() - t0
        assert res.missing == ("gw_gone", "gw_mute")
        assert [x.subscriber for x in res.acks] == ["gw_a"]
        assert 0.2 <= waited < 1.0
        assert rig.engine.counts["missing_acks"] == 2
        assert rig.engine.counts["retries"] >= 2
        (deadline,) = [e for e in rig.ledger.entries() if e.payload.get("step") == "ack_deadline"]
        assert deadline.payload["missing"] == ["gw_gone", "gw_mute"]
    finally:
        mute.close()
        rig.close()


def test_cancel_confirmations_are_tracked_after_the_reply(fan_rig: Rig) -> None:
    gw = FakeGateway(open=5)
    with subscribers(fan_rig.run_dir, gw_a=gw):
        res = fan_rig.engine.trigger(cancel("c3"))
        (ack,) = res.acks
        assert ack.cancels_sent == 5 and ack.cancels_confirmed == 0 and ack.ok
        assert ack.status is KillAckStatus.PARTIAL
        kid = kill_id_u64("c3")
        gw.confirm(kid, 3)
        gw.confirm(kid, 2)
        assert wait_for(lambda: fan_rig.engine.trigger_to_cancels_confirmed.count == 1)
        fan_rig.engine.tick()
    finals = [e for e in fan_rig.ledger.entries() if e.kind == "ack" and e.payload.get("final")]
    assert len(finals) == 1 and finals[0].payload["cancels_confirmed"] == 5
    assert finals[0].payload["status"] == "APPLIED"


def test_failing_gateway_action_gives_a_failed_ack(fan_rig: Rig) -> None:
    with subscribers(fan_rig.run_dir, gw_a=FakeGateway(fail=True)) as subs:
        res = fan_rig.engine.trigger(cancel("c4"))
        assert subs["gw_a"].stats.action_failures == 1
    (ack,) = res.acks
    assert not ack.ok and ack.status is KillAckStatus.FAILED and ack.error


def test_repeated_command_is_not_acted_on_twice_and_garbage_is_counted(fan_rig: Rig) -> None:
    gw = FakeGateway()
    with subscribers(fan_rig.run_dir, gw_a=gw) as subs:
        fo = fan_rig.fanout
        assert fo is not None
        fo.send_local("gw_a", b"\x00" * 128)
        fo.send_local("gw_a", b"short")
        cmd = KillCommand(77, KillAction.CANCEL_ALL, Scope.ACCOUNT, 9)
        fo.publish(cmd)
        fo.publish(cmd)
        assert wait_for(lambda: subs["gw_a"].stats.commands == 2)
        assert subs["gw_a"].stats.malformed == 2
        assert subs["gw_a"].stats.duplicates == 1
    assert gw.calls == [(Scope.ACCOUNT, 9, 77)]


def test_dry_run_reports_what_would_be_cancelled(fan_rig: Rig) -> None:
    gw = FakeGateway(open=12)
    with subscribers(fan_rig.run_dir, gw_a=gw):
        res = fan_rig.engine.trigger(cancel("drill", dry_run=True))
    (ack,) = res.acks
    assert ack.status is KillAckStatus.DRY_RUN and ack.cancels_sent == 12 and gw.calls == []
    assert res.dry_run and not res.applied


def test_clear_is_sent_to_subscribers(fan_rig: Rig) -> None:
    from tectra.kill.engine import ClearRequest

    seen: list[KillAction] = []
    with subscribers(fan_rig.run_dir, gw_a=FakeGateway()) as subs:
        subs["gw_a"].on_command = lambda cmd, ack: seen.append(cmd.action)
        fan_rig.engine.trigger(cancel("c5"))
        fan_rig.engine.clear(ClearRequest("c5", Target(Scope.FIRM), "ok", "risk"))
        assert wait_for(lambda: KillAction.CLEAR in seen)
    assert seen == [KillAction.CANCEL_ALL, KillAction.CLEAR]


def test_dead_subscriber_socket_is_removed(fan_rig: Rig) -> None:
    path = fan_rig.run_dir / SUBSCRIBER_DIR / "gw_dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody is bound: ECONNREFUSED
    res = fan_rig.engine.trigger(cancel("c6", ack_timeout_s=0.05))
    assert res.missing == ("gw_dead",)
    assert fan_rig.fanout is not None and fan_rig.fanout.stats.stale_sockets_removed == 1
    assert not path.exists()
