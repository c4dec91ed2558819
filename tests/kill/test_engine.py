"""KillEngine: block effect, idempotency, fail-closed restore, clear rules, ledger records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tectra.io.killblock import Flag, KillBlock, Scope, Verdict, open_gateway_view
from tectra.kill.engine import (
    Action,
    ClearRequest,
    KillRequestError,
    Target,
    TriggerRequest,
)
from tectra.kill.ledger import verify_ledger
from tectra.kill.wire import kill_id_u64
from tectra.schema import KillReason

from .conftest import Rig, make_rig


def req(
    kill_id: str,
    scope: Scope = Scope.FIRM,
    sid: int = 0,
    action: Action = Action.BLOCK,
    **kw: object,
) -> TriggerRequest:
    return TriggerRequest(kill_id, Target(scope, sid), action, "test reason", "ops@desk", **kw)  # type: ignore[arg-type]


def kinds(r: Rig) -> list[tuple[str, str]]:
    return [(e.kind, e.kill_id) for e in r.ledger.entries()]


def test_firm_block_is_visible_to_a_gateway_view_when_trigger_returns(rig: Rig) -> None:
    view = open_gateway_view("kill", rig.root)
    assert view.check().verdict is Verdict.OK
    res = rig.engine.trigger(req("k1"))
    assert res.applied and not res.dry_run
    assert res.trigger_to_block_ns > 0
    assert view.check(venue=1).verdict is Verdict.BLOCKED
    assert rig.engine.status().blocked_all
    assert rig.engine.actions == {"block": 1}
    assert rig.engine.trigger_to_block.count == 1


def test_scoped_actions_block_and_slow_only_their_scope(rig: Rig) -> None:
    view = open_gateway_view("kill", rig.root)
    rig.engine.trigger(req("v", Scope.VENUE, 1, Action.CANCEL))
    rig.engine.trigger(req("s", Scope.SYMBOL, 7, Action.SLOW))
    assert view.check(venue=1).verdict is Verdict.BLOCKED
    assert view.check(venue=2).verdict is Verdict.OK
    assert view.check(venue=2, symbol=7).verdict is Verdict.SLOW


def test_scope_by_venue_name_and_unknown_names_refused(rig: Rig) -> None:
    r = TriggerRequest("n", Target(Scope.VENUE, 0, "XNYS"), Action.BLOCK, "why", "me")
    rig.engine.trigger(r)
    assert rig.engine.active()[0].target.scope_id == 2
    with pytest.raises(KillRequestError, match="cannot resolve"):
        rig.engine.trigger(
            TriggerRequest("m", Target(Scope.ACCOUNT, 0, "ACME"), Action.BLOCK, "w", "me")
        )
    assert rig.engine.failures["bad_request"] == 1


@pytest.mark.parametrize(
    ("kill_id", "reason", "actor", "match"),
    [
        ("", "r", "a", "kill id"),
        ("k", "", "a", "reason"),
        ("k", "r", " ", "actor"),
        ("has space", "r", "a", "kill id"),
    ],
)
def test_trigger_refuses_missing_fields(
    rig: Rig, kill_id: str, reason: str, actor: str, match: str
) -> None:
    with pytest.raises(KillRequestError, match=match):
        rig.engine.trigger(TriggerRequest(kill_id, Target(Scope.FIRM), Action.BLOCK, reason, actor))
    assert rig.block.state().epoch == 0
    assert not rig.ledger.entries()


def test_isolate_needs_a_venue_and_scoped_ids_need_an_id(rig: Rig) -> None:
    with pytest.raises(KillRequestError, match="VENUE"):
        rig.engine.trigger(req("i", Scope.FIRM, 0, Action.ISOLATE_VENUE))
    with pytest.raises(KillRequestError, match="id in"):
        rig.engine.trigger(req("i", Scope.ACCOUNT, 0))


def test_same_kill_id_twice_has_one_effect(rig: Rig) -> None:
    first = rig.engine.trigger(req("dup", Scope.VENUE, 1))
    epoch = rig.block.epoch
    again = rig.engine.trigger(req("dup", Scope.VENUE, 1))
    assert first.applied and not again.applied
    assert "already applied" in again.detail
    assert rig.block.epoch == epoch
    assert rig.engine.actions == {"block": 1}
    assert rig.engine.counts["duplicates"] == 1
    # and after a clear, the id stays spent
    rig.engine.clear(ClearRequest("dup", Target(Scope.FIRM), "all clear", "risk@desk"))
    assert not rig.engine.trigger(req("dup", Scope.VENUE, 1)).applied
    assert open_gateway_view("kill", rig.root).check(venue=1).verdict is Verdict.OK


def test_dry_run_records_but_changes_nothing(rig: Rig) -> None:
    res = rig.engine.trigger(req("drill", dry_run=True))
    assert res.dry_run and not res.applied
    assert rig.block.state().epoch == 0 and not rig.engine.active()
    assert [k for k, _ in kinds(rig)] == ["trigger", "action"]
    assert rig.ledger.entries()[0].payload["dry_run"] is True
    # the id is not spent by a drill
    assert rig.engine.trigger(req("drill")).applied


def test_clear_needs_reason_and_actor(rig: Rig) -> None:
    rig.engine.trigger(req("k"))
    for reason, actor in (("", "risk"), ("why", "")):
        with pytest.raises(KillRequestError):
            rig.engine.clear(ClearRequest("k", Target(Scope.FIRM), reason, actor))
    assert rig.engine.status().blocked_all


def test_clear_keeps_flags_other_kills_still_need(rig: Rig) -> None:
    view = open_gateway_view("kill", rig.root)
    rig.engine.trigger(req("a", Scope.VENUE, 1))
    rig.engine.trigger(req("b", Scope.VENUE, 1, Action.CANCEL))
    res = rig.engine.clear(ClearRequest("a", Target(Scope.FIRM), "a done", "risk"))
    assert res.ok and res.cleared == ("a",)
    assert view.check(venue=1).verdict is Verdict.BLOCKED  # b still holds it
    res = rig.engine.clear(ClearRequest("", Target(Scope.VENUE, 1), "venue fine", "risk"))
    assert res.cleared == ("b",)
    assert view.check(venue=1).verdict is Verdict.OK
    assert not rig.engine.clear(ClearRequest("zz", Target(Scope.FIRM), "x", "risk")).ok


def test_clear_dry_run_changes_nothing(rig: Rig) -> None:
    rig.engine.trigger(req("k"))
    res = rig.engine.clear(ClearRequest("", Target(Scope.FIRM), "drill", "risk", dry_run=True))
    assert res.ok and "would clear" in res.message
    assert rig.engine.status().blocked_all


def test_every_trigger_action_and_clear_is_in_the_ledger_and_it_verifies(rig: Rig) -> None:
    rig.engine.trigger(req("k1", Scope.ACCOUNT, 9))
    rig.engine.clear(ClearRequest("k1", Target(Scope.FIRM), "ok now", "risk@desk"))
    rig.engine.arm("reject_rate", True, False, "enable", "risk@desk")
    assert [k for k, _ in kinds(rig)] == ["trigger", "action", "clear", "arm"]
    trig = rig.ledger.entries()[0]
    assert trig.actor == "ops@desk" and trig.reason == "test reason"
    assert trig.payload["target"] == {"scope": "account", "scope_id": 9, "name": ""}
    assert trig.payload["kid"] == f"{kill_id_u64('k1'):016x}"
    report = verify_ledger(rig.ledger.path, "kill")
    assert report.ok and report.records == 4


def test_restart_while_halted_comes_up_halted(shm_root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = make_rig(shm_root, state)
    r.engine.restore()
    r.engine.trigger(req("halt", action=Action.CANCEL))
    r.engine.trigger(req("v3", Scope.VENUE, 3, Action.SLOW))
    r.engine.arm("latency", True, True, "drill", "risk")
    r.block.unlink()  # host restart: /dev/shm is gone, only the state file remains
    r.close()
    assert not (shm_root / "kill").exists()

    r2 = make_rig(shm_root, state)
    what = r2.engine.restore()
    try:
        assert "restored 2" in what
        view = open_gateway_view("kill", shm_root)
        assert view.check().verdict is Verdict.BLOCKED
        st = r2.engine.status()
        assert st.blocked_all and {k.kill_id for k in st.active} == {"halt", "v3"}
        assert r2.engine.triggers.latency.settings.armed
        assert r2.engine.triggers.latency.settings.dry_run
        # idempotency survives the restart
        assert not r2.engine.trigger(req("halt")).applied
        r2.engine.clear(ClearRequest("", Target(Scope.FIRM), "resume", "risk"))
        assert view.check(venue=3).verdict is Verdict.OK
    finally:
        r2.close()


def test_process_restart_keeps_the_live_block(shm_root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = make_rig(shm_root, state)
    r.engine.restore()
    r.engine.trigger(req("halt"))
    r.close()  # the block file stays in /dev/shm
    r2 = make_rig(shm_root, state)
    try:
        r2.engine.restore()
        assert r2.engine.status().blocked_all
    finally:
        r2.close()


def test_unreadable_state_comes_up_blocked_firm_wide(shm_root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "kill").mkdir(parents=True)
    (state / "kill" / "state.json").write_text("{not json")
    r = make_rig(shm_root, state)
    try:
        what = r.engine.restore()
        assert what.startswith("FAIL CLOSED")
        assert open_gateway_view("kill", shm_root).check().verdict is Verdict.BLOCKED
        (active,) = r.engine.active()
        assert active.reason_code is KillReason.RESTART_FAIL_CLOSED
        assert r.engine.failures["restore"] == 1
        assert [e.kind for e in r.ledger.entries()] == ["trigger", "action"]
        # an operator clears it like any kill; the repaired state file is written
        r.engine.clear(ClearRequest("", Target(Scope.FIRM), "state checked", "risk"))
        assert not r.engine.status().blocked_all
        assert json.loads((state / "kill" / "state.json").read_text())["active"] == []
    finally:
        r.close()


def test_missing_state_with_a_ledger_fails_closed(shm_root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = make_rig(shm_root, state)
    r.engine.restore()
    r.engine.trigger(req("x", Scope.VENUE, 1))
    r.block.unlink()
    r.close()
    (state / "kill" / "state.json").unlink()
    r2 = make_rig(shm_root, state)
    try:
        assert "missing" in r2.engine.restore()
        assert r2.engine.status().blocked_all
    finally:
        r2.close()


def test_block_flags_without_a_persisted_kill_are_adopted(shm_root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = make_rig(shm_root, state)
    r.engine.restore()
    r.block.set(Flag.BLOCK, Scope.STRATEGY, 4, kill_id=99)  # as if we died before persisting
    r.close()
    r2 = make_rig(shm_root, state)
    try:
        assert "adopted 1" in r2.engine.restore()
        (k,) = r2.engine.active()
        assert k.kill_id == "recovered:strategy:4:block"
        r2.engine.clear(ClearRequest(k.kill_id, Target(Scope.FIRM), "known", "risk"))
        assert KillBlock.attach("kill", root=shm_root).check(strategy=4).verdict is Verdict.OK
    finally:
        r2.close()


def test_full_scoped_table_escalates_to_a_firm_block(rig: Rig) -> None:
    for i in range(64):
        rig.engine.trigger(req(f"s{i}", Scope.SYMBOL, i + 1))
    res = rig.engine.trigger(req("s64", Scope.SYMBOL, 100))
    assert res.applied and "escalated" in res.detail
    assert rig.engine.status().blocked_all
    assert rig.engine.failures["block_table_full"] == 1


def test_isolate_without_egress_guard_is_reported(rig: Rig) -> None:
    res = rig.engine.trigger(req("iso", Scope.VENUE, 1, Action.ISOLATE_VENUE))
    assert res.applied and "unavailable" in res.detail
    assert rig.engine.failures["isolate"] == 1
    steps = [e.payload.get("step") for e in rig.ledger.entries() if e.kind == "action"]
    assert steps == ["control_block_block", "isolate_venue"]


class FakeIsolator:
    def __init__(self) -> None:
        self.isolated: list[int] = []

    def isolate(self, venue_id: int) -> str:
        self.isolated.append(venue_id)
        return f"venue {venue_id} isolated"

    def release(self, venue_id: int) -> str:
        self.isolated.remove(venue_id)
        return f"venue {venue_id} released"


def test_isolate_then_clear_releases_the_venue(shm_root: Path, tmp_path: Path) -> None:
    iso = FakeIsolator()
    r = make_rig(shm_root, tmp_path / "s", isolator=iso)
    try:
        r.engine.restore()
        res = r.engine.trigger(req("iso", Scope.VENUE, 2, Action.ISOLATE_VENUE))
        assert "venue 2 isolated" in res.detail and iso.isolated == [2]
        msg = r.engine.clear(ClearRequest("iso", Target(Scope.FIRM), "venue ok", "risk")).message
        assert "released" in msg and iso.isolated == []
    finally:
        r.close()
