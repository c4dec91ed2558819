"""FIX session-layer behaviour against a real quickfix initiator on 127.0.0.1.

Logon (good and bad credentials), heartbeats and TestRequest, the order flow with partial
fills, malformed messages, sequence gaps and resends (both directions), PossDup handling and
cancel-on-disconnect. Restart with kill -9 is in test_restart.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.fix.conftest import FixEnv
from tests.fix.fixsupport import FixTestClient, Msg, wait_until


def _is(msg_type: str, **tags: str) -> Callable[[Msg], bool]:
    want = {int(k[1:]): v for k, v in tags.items()}  # t11="X" -> {11: "X"}

    def pred(m: Msg) -> bool:
        return m.get(35) == msg_type and all(m.get(t) == v for t, v in want.items())

    return pred


def _earlier_sending_time() -> str:
    sec = time.time() - 5
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(sec)) + ".000"


def test_logon_with_good_and_bad_password(fix_env: FixEnv) -> None:
    good, bad, anon = fix_env.session(1), fix_env.session(2), fix_env.session(3)
    acc, _ = fix_env.acceptor(good, bad, anon)

    fix_env.client(acc, good)
    assert acc.is_logged_on(1)

    wrong = fix_env.client(acc, bad, password="guess", wait=False)
    logout = wrong.wait_admin(_is("5"))
    assert "invalid username or password" in logout[58]
    nameless = fix_env.client(acc, anon, username=None, password=None, wait=False)
    nameless.wait_admin(_is("5"))

    wait_until(lambda: acc.counters()["logon_rejected"] >= 2, what="rejections counted")
    assert not wrong.logged_on() and not acc.is_logged_on(2) and not acc.is_logged_on(3)
    assert acc.counters()["logons"] == 1
    events = acc.config.log_dir / f"FIX.4.4-TECTRA-{bad.target_comp_id}.event.current.log"
    wait_until(
        lambda: "Rejected Logon Attempt" in events.read_text(), what="rejection in event log"
    )


def test_heartbeats_and_test_request_answered(fix_env: FixEnv) -> None:
    s = fix_env.session(1)
    acc, _ = fix_env.acceptor(s)
    client = fix_env.client(acc, s, heartbeat_s=1)

    client.wait_admin(_is("0"), timeout=5)  # the acceptor heartbeats at the client's interval
    client.send("1", [(112, "PING-42")])
    client.wait_admin(_is("0", t112="PING-42"), timeout=5)
    wait_until(lambda: acc.counters()["test_requests_received"] == 1)
    assert client.logged_on()


def test_order_flow_with_partial_fills(fix_env: FixEnv) -> None:
    s = fix_env.session(7)
    acc, sink = fix_env.acceptor(s)
    client = fix_env.client(acc, s)

    client.new_order("A1", qty="100", price="10.25")
    ack = client.wait_app(_is("8", t11="A1"))
    assert (ack[150], ack[39], ack[151], ack[14], ack[6], ack[44]) == (
        "0",
        "0",
        "100",
        "0",
        "0",
        "10.25",
    )
    assert ack[1] == "ACC1" and ack[37] == "1" and ack[55] == "AAPL" and ack[54] == "1"

    client.new_order("P1", symbol="PART", qty="300", price="10.25")
    done = client.wait_app(_is("8", t11="P1", t39="2"))
    partial = client.wait_app(_is("8", t11="P1", t39="1"))
    assert (partial[150], partial[32], partial[31]) == ("F", "100", "10.25")
    assert (partial[14], partial[151], partial[6]) == ("100", "200", "10.25")
    assert (done[150], done[32], done[31]) == ("F", "200", "10.26")
    # AvgPx = (100 * 10.25 + 200 * 10.26) / 300 = 10.25666.. -> 10.2567 (half away from zero)
    assert (done[14], done[151], done[6]) == ("300", "0", "10.2567")

    client.cancel("C1", "A1")
    canceled = client.wait_app(_is("8", t11="C1"))
    assert (canceled[150], canceled[39], canceled[41], canceled[151]) == ("4", "4", "A1", "0")

    client.cancel("C2", "NOPE")
    reject = client.wait_app(_is("9", t11="C2"))
    assert (reject[41], reject[434], reject[102], reject[39]) == ("NOPE", "1", "1", "8")
    assert reject[58].startswith("UNKNOWN_ORDER")

    client.new_order("R1", qty="100", price="9")
    client.wait_app(_is("8", t11="R1"))
    client.replace("R2", "R1", qty="200", price="9.5")
    replaced = client.wait_app(_is("8", t11="R2"))
    assert (replaced[150], replaced[41], replaced[38], replaced[44]) == ("5", "R1", "200", "9.5")
    assert replaced[151] == "200"

    client.send("H", [(11, "P1"), (55, "PART"), (54, "1")])
    status = client.wait_app(_is("8", t11="P1", t150="I"))
    assert (status[39], status[14]) == ("2", "300")

    records = {d["cl_ord_id"]: d for d in sink.seen}
    assert records["A1"]["price"] == 102_500 and records["A1"]["qty"] == 100
    assert records["A1"]["account"] == "ACC1" and records["A1"]["session_id"] == 7
    assert records["R2"]["orig_cl_ord_id"] == "R1" and records["R2"]["price"] == 95_000
    assert [d["cl_ord_id"] for d in sink.status_requests] == ["P1"]
    wait_until(lambda: acc.counters()["execution_reports_sent"] == 8, what="8 reports counted")
    assert acc.counters()["cancel_rejects_sent"] == 1


def test_malformed_messages_are_rejected_and_the_session_stays_up(fix_env: FixEnv) -> None:
    s = fix_env.session(1)
    acc, sink = fix_env.acceptor(s)
    client = fix_env.client(acc, s)
    cases: list[tuple[str, dict[int, str]]] = []

    def expect(cl: str, msg_type: str, **tags: str) -> None:
        cases.append((cl, {35: msg_type, **{int(k[1:]): v for k, v in tags.items()}}))

    client.new_order("M1", drop=[54])  # missing required tag: quickfix's dictionary check
    expect("M1", "3", t373="1", t371="54")
    client.new_order("M2", side="Z")  # not a Side value at all
    expect("M2", "3", t373="5", t371="54")
    client.new_order("M3", price="10.12345")  # more than 4 decimals: refused, never rounded
    expect("M3", "3", t373="5", t371="44")
    client.new_order("M4", price="abc")
    expect("M4", "3", t373="6", t371="44")
    client.new_order("M5-123456789012345678")  # 21 characters
    expect("M5-123456789012345678", "3", t373="5", t371="11")
    client.new_order("M6", drop=[55])  # Symbol is optional in FIX 4.4, required by us
    expect("M6", "3", t373="1", t371="55")
    client.new_order("M7", price=None)  # limit order without a price
    expect("M7", "j", t380="5", t379="M7")
    client.new_order("M8", ord_type="3", price=None)  # stop orders are not carried
    expect("M8", "3", t373="5", t371="40")
    client.new_order("M9", extra=[(1, "OTHER")])  # not this session's account
    expect("M9", "j", t380="6", t379="M9")
    client.new_order("M10", side="7")  # a FIX Side we do not trade (undisclosed)
    expect("M10", "3", t373="5", t371="54")
    client.send("AF", [(584, "MS1"), (585, "7")])  # valid FIX 4.4, not supported here
    expect("MS1", "j", t380="3", t372="AF")

    for cl, want in cases:
        got = client.wait(
            client.admin_in if want[35] == "3" else client.app_in,
            lambda m, want=want, cl=cl: (
                all(m.get(t) == v for t, v in want.items())
                and (m[35] != "3" or _ref_is(client, m, cl))
            ),
        )
        assert got.get(58), f"{cl}: a reject always says why"
    texts = " | ".join(m.get(58, "") for m in client.admin_in if m.get(35) == "3")
    assert "more than 4 decimal places" in texts and "longer than 20" in texts

    client.new_order("OK1")
    client.wait_app(_is("8", t11="OK1"))
    assert client.logged_on() and acc.is_logged_on(1)
    assert [d["cl_ord_id"] for d in sink.seen] == ["OK1"]
    c = acc.counters()
    assert c["rejects_sent"] == 8 and c["business_rejects_sent"] == 3
    assert c["malformed"] == 8  # the codec's own (the other 3 are quickfix's dictionary checks)
    assert c["reject_value_is_incorrect"] == 5 and c["business_reject_not_authorized"] == 1


def _ref_is(client: FixTestClient, reject: Msg, cl: str) -> bool:
    """A session Reject names the rejected message by RefSeqNum; map it back to its ClOrdID."""
    sent = [m for m in client.app_out if m.get(34) == reject.get(45)]
    return bool(sent) and sent[0].get(11, sent[0].get(584)) == cl


def test_sequence_gap_triggers_resend_and_the_gap_is_filled(fix_env: FixEnv) -> None:
    s = fix_env.session(1, cancel_on_disconnect=False)
    acc, sink = fix_env.acceptor(s)
    client = fix_env.client(acc, s)
    client.new_order("G1", qty="100")
    client.wait_app(_is("8", t11="G1"))

    client.session.logout()
    wait_until(lambda: not acc.is_logged_on(1), what="acceptor sees the logout")
    client.new_order("G2")  # stored by the client's quickfix, not sent: a gap for the acceptor
    client.new_order("G3")
    # The gateway reports a fill while the client is away: stored, resent after logon.
    order = sink.orders["G1"]
    sink._fill(1, order, 100, order.price)
    assert acc.counters()["sends_queued"] == 1
    client.session.logon()

    client.wait_app(_is("8", t11="G3"))
    client.wait_app(_is("8", t11="G1", t39="2", t43="Y"))
    client.wait_admin(_is("2"))  # the acceptor's ResendRequest
    client.new_order("G4")  # and the session carries on normally
    client.wait_app(_is("8", t11="G4"))
    assert [d["cl_ord_id"] for d in sink.seen] == ["G1", "G2", "G3", "G4"]
    resent = [m for m in client.app_out if m.get(11) in ("G2", "G3") and m.get(43) == "Y"]
    assert len(resent) == 2
    c = acc.counters()
    assert c["resend_requests_sent"] >= 1 and c["poss_dup_ignored"] == 0
    wait_until(
        lambda: acc.next_sequence_numbers(1)[1] == client.session.getExpectedSenderNum(),
        what="both sides agree on the next client sequence number",
    )


def test_acceptor_resends_app_messages_and_gap_fills_admin(fix_env: FixEnv) -> None:
    s = fix_env.session(1)
    acc, _ = fix_env.acceptor(s)
    client = fix_env.client(acc, s)
    client.new_order("F1")
    er_seq = int(client.wait_app(_is("8", t11="F1"))[34])
    for probe in ("T1", "T2"):  # heartbeats from the acceptor: admin messages to gap-fill
        client.send("1", [(112, probe)])
        hb_seq = int(client.wait_admin(_is("0", t112=probe))[34])
    # fromAdmin runs before quickfix counts the message: let it finish before rewinding.
    wait_until(lambda: client.session.getExpectedTargetNum() == hb_seq + 1)

    client.session.setNextTargetMsgSeqNum(er_seq)  # pretend everything since the ER was lost
    client.send("1", [(112, "T3")])  # its answer is too high: the client asks for a resend
    gap_fill = client.wait_admin(_is("4", t123="Y"), timeout=5)
    assert int(gap_fill[36]) >= er_seq + 3 and gap_fill[43] == "Y"
    again = client.wait_app(_is("8", t11="F1", t43="Y"), timeout=5)
    assert 122 in again  # OrigSendingTime on the resent report
    wait_until(lambda: acc.counters()["resend_requests_received"] >= 1)
    assert acc.counters()["sequence_resets_sent"] >= 1
    assert client.logged_on()


def test_poss_dup_duplicates_are_not_executed_twice(fix_env: FixEnv) -> None:
    s = fix_env.session(1)
    acc, sink = fix_env.acceptor(s)
    client = fix_env.client(acc, s)
    client.new_order("D1")
    client.wait_app(_is("8", t11="D1"))
    d1_seq = next(m[34] for m in client.app_out if m.get(11) == "D1")
    dup_header = [(43, "Y"), (122, _earlier_sending_time())]

    # An application-level possible duplicate on a new sequence number: dropped by ClOrdID.
    client.new_order("D1", header=dup_header)
    wait_until(lambda: acc.counters()["poss_dup_ignored"] == 1, what="PossDup dropped")
    # PossResend(97) means the same thing.
    client.new_order("D1", header=[(97, "Y")])
    wait_until(lambda: acc.counters()["poss_dup_ignored"] == 2, what="PossResend dropped")
    # A possible duplicate the acceptor has not seen is a new order.
    client.new_order("D2", header=dup_header)
    client.wait_app(_is("8", t11="D2"))

    # A session-level duplicate (an already used MsgSeqNum) is dropped by quickfix itself.
    session = client.session
    next_seq = session.getExpectedSenderNum()
    session.setNextSenderMsgSeqNum(int(d1_seq))
    client.new_order("D1", header=dup_header)
    session.setNextSenderMsgSeqNum(next_seq)
    client.new_order("D3")
    client.wait_app(_is("8", t11="D3"))

    assert [d["cl_ord_id"] for d in sink.seen] == ["D1", "D2", "D3"]
    assert len(client.reports("D1")) == 1
    assert client.logged_on() and acc.counters()["poss_dup_ignored"] == 2


def test_cancel_on_disconnect_only_when_enabled(fix_env: FixEnv) -> None:
    on = fix_env.session(11, cancel_on_disconnect=True)
    off = fix_env.session(12, cancel_on_disconnect=False)
    acc, sink = fix_env.acceptor(on, off)
    c_on, c_off = fix_env.client(acc, on), fix_env.client(acc, off)

    c_on.session.disconnect()  # the socket drops, no Logout
    c_off.session.disconnect()
    wait_until(lambda: sink.cancel_all_calls == [11], what="cancel-all on disconnect")
    c_on.wait_logged_on()  # the client reconnects by itself
    c_off.wait_logged_on()

    c_on.stop()  # a clean Logout
    c_off.stop()
    wait_until(lambda: sink.cancel_all_calls == [11, 11], what="cancel-all on logout")
    time.sleep(0.3)
    assert sink.cancel_all_calls == [11, 11]
    assert acc.counters()["cancel_on_disconnect"] == 2
