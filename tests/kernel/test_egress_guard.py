"""TC egress guard on a real veth: blocked destinations are dropped, others pass, removal
restores, detach is idempotent."""

from __future__ import annotations

import socket

import pytest

from tectra.io.egress_guard import EgressGuard, EgressGuardError
from tectra.io.netns import in_namespace

from .conftest import VethPair

pytestmark = pytest.mark.kernel


def _udp(ns: str, bind: tuple[str, int] | None = None) -> socket.socket:
    with in_namespace(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if bind:
        s.bind(bind)
    s.settimeout(0.3)
    return s


def _delivered(tx: socket.socket, rx: socket.socket, dest: tuple[str, int], tag: bytes) -> bool:
    tx.sendto(tag, dest)
    try:
        while True:
            if rx.recv(64) == tag:
                return True
    except TimeoutError:
        return False


def test_blocked_destination_dropped_others_pass_removal_restores(veth_pair: VethPair) -> None:
    v = veth_pair
    rx1 = _udp(v.venue_ns, (v.venue_ip, 15000))
    rx2 = _udp(v.venue_ns, (v.venue_ip, 15001))
    tx = _udp(v.appliance_ns)
    guard = EgressGuard(v.appliance_if, namespace=v.appliance_ns)
    try:
        assert _delivered(tx, rx1, (v.venue_ip, 15000), b"before")
        assert guard.block(v.venue_ip, 15000)
        assert not guard.block(v.venue_ip, 15000)  # already there
        assert not _delivered(tx, rx1, (v.venue_ip, 15000), b"blocked")
        assert _delivered(tx, rx2, (v.venue_ip, 15001), b"other-port")
        assert guard.blocked() == {(v.venue_ip, 15000): 1}
        # the whole address
        assert guard.block(v.venue_ip)
        assert not _delivered(tx, rx2, (v.venue_ip, 15001), b"any-port")
        assert guard.unblock(v.venue_ip) and guard.unblock(v.venue_ip, 15000)
        assert not guard.unblock(v.venue_ip)
        assert _delivered(tx, rx1, (v.venue_ip, 15000), b"restored")
        c = guard.counters()
        assert c.dropped == 2 and c.passed >= 3
        with pytest.raises(EgressGuardError):
            guard.block("not-an-ip")
    finally:
        guard.detach()
        guard.detach()  # idempotent
        for s in (rx1, rx2, tx):
            s.close()
    with pytest.raises(EgressGuardError):
        guard.counters()


def test_missing_interface_is_a_typed_error(veth_pair: VethPair) -> None:
    with pytest.raises(EgressGuardError, match="no interface"):
        EgressGuard("nonexistent0", namespace=veth_pair.appliance_ns)
