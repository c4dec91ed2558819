"""Kernel-test fixtures: a venue/appliance pair of network namespaces joined by a veth pair.

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range) and exist only inside the
namespaces the fixture creates; everything is removed afterwards, even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class VethPair:
    venue_ns: str
    appliance_ns: str
    venue_if: str
    appliance_if: str
    venue_ip: str
    appliance_ip: str
    venue_mac: str
    appliance_mac: str


@pytest.fixture
def veth_pair() -> Iterator[VethPair]:
    from pyroute2 import IPRoute, netns

    tag = os.urandom(3).hex()
    venue_ns, appliance_ns = f"tectra-venue-{tag}", f"tectra-appl-{tag}"
    venue_if, appliance_if = f"tv{tag}", f"ta{tag}"
    venue_ip, appliance_ip = "198.18.0.1", "198.18.0.2"
    netns.create(venue_ns)
    netns.create(appliance_ns)
    try:
        with IPRoute() as ipr:
            ipr.link(
                "add",
                ifname=venue_if,
                kind="veth",
                peer={"ifname": appliance_if, "net_ns_fd": appliance_ns},
            )
            ipr.link("set", index=ipr.link_lookup(ifname=venue_if)[0], net_ns_fd=venue_ns)
        macs = {}
        for ns, ifname, ip in (
            (venue_ns, venue_if, venue_ip),
            (appliance_ns, appliance_if, appliance_ip),
        ):
            with IPRoute(netns=ns) as ipr:
                idx = ipr.link_lookup(ifname=ifname)[0]
                ipr.addr("add", index=idx, address=ip, prefixlen=24)
                ipr.link("set", index=idx, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                macs[ns] = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
        # Static neighbours: an XDP program that steers everything would otherwise eat ARP.
        for ns, ifname, peer_ip, peer_ns in (
            (venue_ns, venue_if, appliance_ip, appliance_ns),
            (appliance_ns, appliance_if, venue_ip, venue_ns),
        ):
            with IPRoute(netns=ns) as ipr:
                idx = ipr.link_lookup(ifname=ifname)[0]
                ipr.neigh(
                    "replace", dst=peer_ip, lladdr=macs[peer_ns], ifindex=idx, state="permanent"
                )
        yield VethPair(
            venue_ns,
            appliance_ns,
            venue_if,
            appliance_if,
            venue_ip,
            appliance_ip,
            macs[venue_ns],
            macs[appliance_ns],
        )
    finally:
        for ns in (venue_ns, appliance_ns):
            with contextlib.suppress(OSError):
                netns.remove(ns)
