"""Network namespaces and link setup over netlink (pyroute2): never by shelling out to `ip`.

This module owns the interface plumbing the feed, the demo and the kernel tests share:
creating and removing named network namespaces, entering one for the calling thread, veth
pairs, addresses, link state, static neighbours, rx queue counts, the XDP attachment of a link
as the kernel reports it, and multicast group membership (a held socket, so the kernel programs
the NIC's multicast filter and sends the IGMP report switches need).

Namespace names are those of `ip netns` (bind mounts under /var/run/netns). ``namespace=None``
everywhere means the namespace the calling thread is in. Entering a namespace
(:func:`in_namespace`) affects only the calling thread, and sockets keep the namespace they
were created in, so a socket opened inside the block keeps working after it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Self

__all__ = [
    "XDP_FLAGS_DRV_MODE",
    "XDP_FLAGS_HW_MODE",
    "XDP_FLAGS_REPLACE",
    "XDP_FLAGS_SKB_MODE",
    "XDP_FLAGS_UPDATE_IF_NOEXIST",
    "LinkInfo",
    "LinkNotFoundError",
    "MulticastMembership",
    "NetnsError",
    "VethTopology",
    "XdpAttachment",
    "add_address",
    "add_static_neighbour",
    "add_veth",
    "create_namespace",
    "delete_link",
    "in_namespace",
    "join_multicast",
    "link_index",
    "link_info",
    "multicast_groups",
    "namespace_exists",
    "remove_namespace",
    "rx_queue_count",
    "set_link_state",
    "set_link_xdp",
    "veth_topology",
    "xdp_attachment",
]

NETNS_DIR: Final = "/var/run/netns"

# linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST: Final = 1 << 0
XDP_FLAGS_SKB_MODE: Final = 1 << 1
XDP_FLAGS_DRV_MODE: Final = 1 << 2
XDP_FLAGS_HW_MODE: Final = 1 << 3
XDP_FLAGS_REPLACE: Final = 1 << 4

# IFLA_XDP_ATTACHED as pyroute2 decodes it -> our names for XDP attach modes.
_XDP_MODES: Final = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload"}
_XDP_PROG_ID_ATTR: Final = {
    "native": "IFLA_XDP_DRV_PROG_ID",
    "generic": "IFLA_XDP_SKB_PROG_ID",
    "offload": "IFLA_XDP_HW_PROG_ID",
}


class NetnsError(Exception):
    """A namespace or link operation failed; ``errno`` holds the kernel's error code."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.errno = code


class LinkNotFoundError(NetnsError):
    """No link of that name in that namespace."""


@dataclass(frozen=True)
class XdpAttachment:
    """What the kernel says is attached to a link: mode is native|generic|offload|multi|None."""

    mode: str | None
    prog_id: int | None


@dataclass(frozen=True)
class LinkInfo:
    index: int
    ifname: str
    mac: str
    mtu: int
    up: bool
    rx_queues: int
    tx_queues: int
    xdp: XdpAttachment


def _code(exc: BaseException) -> int:
    value = getattr(exc, "code", None) or getattr(exc, "errno", None)
    return int(value) if isinstance(value, int) else 0


@contextlib.contextmanager
def _iproute(namespace: str | None) -> Iterator[Any]:
    from pyroute2 import IPRoute

    if namespace is not None and not namespace_exists(namespace):
        raise NetnsError(f"network namespace {namespace!r} does not exist", errno.ENOENT)
    try:
        # flags=0: never create the namespace by accident; groups=0: no event subscriptions
        # for a one-shot request; ext_ack: the kernel's own words in errors.
        ipr = IPRoute(netns=namespace, flags=0, groups=0, ext_ack=True)
    except OSError as exc:
        raise NetnsError(
            f"netlink socket in {namespace or 'current'} namespace: {exc}", _code(exc)
        ) from exc
    with ipr:
        yield ipr


def _netlink_call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return fn(*args, **kwargs)
    except NetlinkError as exc:
        detail = os.strerror(exc.code)
        extack = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(extack, str) and extack and extack != detail:
            detail = f"{detail} ({extack})"
        raise NetnsError(f"{what}: {detail}", exc.code) from exc


# ---- namespaces -------------------------------------------------------------------------


def namespace_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def create_namespace(name: str) -> None:
    """Create the named namespace (like `ip netns add`); it must not exist yet."""
    from pyroute2 import netns

    if namespace_exists(name):
        raise NetnsError(f"network namespace {name!r} exists", errno.EEXIST)
    try:
        netns.create(name)
    except OSError as exc:
        raise NetnsError(f"create namespace {name!r}: {exc}", _code(exc)) from exc


def remove_namespace(name: str) -> None:
    """Remove the named namespace; idempotent. Its links go with it (veth peers too)."""
    from pyroute2 import netns

    if not namespace_exists(name):
        return
    try:
        netns.remove(name)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise NetnsError(f"remove namespace {name!r}: {exc}", _code(exc)) from exc


@contextlib.contextmanager
def in_namespace(name: str | None) -> Iterator[None]:
    """Run the block with the calling thread in namespace NAME (None: stay where we are).

    setns(2) for network namespaces is per thread, so other threads are unaffected; the
    thread's previous namespace is restored on exit, even when the block raises.
    """
    if name is None:
        yield
        return
    from pyroute2 import netns

    if not namespace_exists(name):
        raise NetnsError(f"network namespace {name!r} does not exist", errno.ENOENT)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            netns.setns(name, flags=0)  # flags=0: never create it by accident
        except OSError as exc:
            raise NetnsError(f"enter namespace {name!r}: {exc}", _code(exc)) from exc
        try:
            yield
        finally:
            netns.setns(home, flags=0)
    finally:
        os.close(home)


# ---- links --------------------------------------------------------------------------------


def link_index(ifname: str, namespace: str | None = None) -> int:
    with _iproute(namespace) as ipr:
        found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LinkNotFoundError(
            f"no link {ifname!r} in {namespace or 'current'} namespace", errno.ENODEV
        )
    return int(found[0])


def _xdp_from_link(link: Any) -> XdpAttachment:
    xdp = link.get_attr("IFLA_XDP")
    if not xdp:
        return XdpAttachment(None, None)
    attrs = dict(xdp.get("attrs", []))
    raw = attrs.get("IFLA_XDP_ATTACHED")
    if raw is None:
        return XdpAttachment(None, None)
    mode = _XDP_MODES.get(raw, "multi" if raw == "xdpmulti" else str(raw))
    prog_id = attrs.get(_XDP_PROG_ID_ATTR.get(mode, "IFLA_XDP_PROG_ID"))
    if prog_id is None:
        prog_id = attrs.get("IFLA_XDP_PROG_ID")
    return XdpAttachment(mode, int(prog_id) if prog_id is not None else None)


def link_info(ifname: str, namespace: str | None = None) -> LinkInfo:
    """The link as netlink reports it now (index, MAC, MTU, state, queues, XDP attachment)."""
    with _iproute(namespace) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise LinkNotFoundError(
                f"no link {ifname!r} in {namespace or 'current'} namespace", errno.ENODEV
            )
        link = _netlink_call(f"get link {ifname}", ipr.get_links, found[0])[0]
    flags = int(link.get("flags", 0))
    return LinkInfo(
        index=int(link["index"]),
        ifname=ifname,
        mac=str(link.get_attr("IFLA_ADDRESS")),
        mtu=int(link.get_attr("IFLA_MTU") or 0),
        up=bool(flags & 1),  # IFF_UP
        rx_queues=int(link.get_attr("IFLA_NUM_RX_QUEUES") or 1),
        tx_queues=int(link.get_attr("IFLA_NUM_TX_QUEUES") or 1),
        xdp=_xdp_from_link(link),
    )


def rx_queue_count(ifname: str, namespace: str | None = None) -> int:
    """Rx queues in use on the link: one AF_XDP socket per queue sees all of its traffic.

    The driver's channel count (ethtool channels: rx + combined) is what an AF_XDP bind is
    checked against; IFLA_NUM_RX_QUEUES is only what was allocated (a veth allocates one per
    CPU but uses one). Falls back to the latter when the driver has no channel report.
    """
    from pyroute2.ethtool import Ethtool

    allocated = link_info(ifname, namespace).rx_queues
    with in_namespace(namespace):
        try:
            with Ethtool() as ethtool:
                channels = ethtool.get_channels(ifname)
        except Exception:  # pyroute2 raises bare errors for unsupported ioctls
            return allocated
    in_use = int(channels.rx_count) + int(channels.combined_count)
    return in_use if 0 < in_use <= allocated else allocated


def xdp_attachment(ifname: str, namespace: str | None = None) -> XdpAttachment:
    """The XDP program the kernel has on the link and in which mode (not what we asked for)."""
    return link_info(ifname, namespace).xdp


def set_link_xdp(
    ifname: str,
    prog_fd: int,
    flags: int,
    namespace: str | None = None,
    expected_fd: int | None = None,
) -> None:
    """Attach PROG_FD to the link with XDP_FLAGS_* FLAGS; prog_fd -1 detaches (IFLA_XDP).

    With EXPECTED_FD the kernel acts only if the program attached now is that one
    (XDP_FLAGS_REPLACE), so nobody else's program is ever removed by mistake (EEXIST then).
    """
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", prog_fd)]
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    attrs.append(("IFLA_XDP_FLAGS", flags))
    with _iproute(namespace) as ipr:
        index = _require(ipr, ifname, namespace)
        _netlink_call(f"set XDP on {ifname}", ipr.link, "set", index=index, xdp={"attrs": attrs})


def add_veth(
    ifname: str, peer: str, namespace: str | None = None, peer_namespace: str | None = None
) -> None:
    """A veth pair IFNAME <-> PEER with each end in its namespace (None: the current one)."""
    with _iproute(None) as ipr:
        peer_spec: dict[str, Any] = {"ifname": peer}
        if peer_namespace:
            peer_spec["net_ns_fd"] = peer_namespace
        _netlink_call(
            f"add veth {ifname}", ipr.link, "add", ifname=ifname, kind="veth", peer=peer_spec
        )
        if namespace:
            index = ipr.link_lookup(ifname=ifname)[0]
            _netlink_call(f"move {ifname}", ipr.link, "set", index=index, net_ns_fd=namespace)


def delete_link(ifname: str, namespace: str | None = None) -> None:
    """Delete the link (its veth peer goes too); idempotent."""
    with _iproute(namespace) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            _netlink_call(f"delete {ifname}", ipr.link, "del", index=found[0])


def set_link_state(ifname: str, up: bool = True, namespace: str | None = None) -> None:
    with _iproute(namespace) as ipr:
        index = _require(ipr, ifname, namespace)
        _netlink_call(
            f"set {ifname} {'up' if up else 'down'}",
            ipr.link,
            "set",
            index=index,
            state="up" if up else "down",
        )


def add_address(ifname: str, address: str, prefixlen: int, namespace: str | None = None) -> None:
    with _iproute(namespace) as ipr:
        index = _require(ipr, ifname, namespace)
        _netlink_call(
            f"add {address}/{prefixlen} on {ifname}",
            ipr.addr,
            "add",
            index=index,
            address=address,
            prefixlen=prefixlen,
        )


def add_static_neighbour(ifname: str, address: str, mac: str, namespace: str | None = None) -> None:
    """A permanent neighbour entry: no ARP needed for ADDRESS on IFNAME."""
    with _iproute(namespace) as ipr:
        index = _require(ipr, ifname, namespace)
        _netlink_call(
            f"neighbour {address} on {ifname}",
            ipr.neigh,
            "replace",
            dst=address,
            lladdr=mac,
            ifindex=index,
            state="permanent",
        )


def _require(ipr: Any, ifname: str, namespace: str | None) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LinkNotFoundError(
            f"no link {ifname!r} in {namespace or 'current'} namespace", errno.ENODEV
        )
    return int(found[0])


# ---- multicast ----------------------------------------------------------------------------


class MulticastMembership:
    """Holds an IPv4 multicast group joined on one interface until ``close()``.

    Joining programs the interface's multicast filter and makes the kernel answer IGMP
    queries, which switches doing IGMP snooping need before they forward the group. The AF_XDP
    path needs this as much as the socket paths: XDP only sees frames the NIC accepted.
    """

    def __init__(self, group: str, ifname: str, namespace: str | None = None) -> None:
        if not ipaddress.IPv4Address(group).is_multicast:
            raise NetnsError(f"{group} is not an IPv4 multicast group", errno.EINVAL)
        self.group = group
        self.ifname = ifname
        self.namespace = namespace
        with in_namespace(namespace):
            index = link_index(ifname)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                # struct ip_mreqn: group, local address (any), ifindex.
                mreq = struct.pack("=4s4si", socket.inet_aton(group), b"\0\0\0\0", index)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            except OSError as exc:
                sock.close()
                raise NetnsError(f"join {group} on {ifname}: {exc}", _code(exc)) from exc
        self._sock: socket.socket | None = sock

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        """Leave the group (closing the socket drops the membership); idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def join_multicast(group: str, ifname: str, namespace: str | None = None) -> MulticastMembership:
    return MulticastMembership(group, ifname, namespace)


def multicast_groups(ifname: str, namespace: str | None = None) -> set[str]:
    """IPv4 groups the kernel has joined on IFNAME (from /proc/net/igmp of that namespace)."""
    groups: set[str] = set()
    # thread-self: /proc/self/net would show the main thread's namespace.
    with in_namespace(namespace), open("/proc/thread-self/net/igmp", encoding="ascii") as fh:
        lines = fh.read().splitlines()[1:]
    current = None
    for line in lines:
        if not line.startswith(("\t", " ")):
            fields = line.split()
            current = fields[1].rstrip(":") if len(fields) > 1 else None
        elif current == ifname:
            # /proc prints the group as the host-order hex of the network-order word.
            groups.add(socket.inet_ntoa(struct.pack("=I", int(line.split()[0], 16))))
    return groups


# ---- a venue/appliance pair, for the demo and tests ----------------------------------------


@dataclass(frozen=True)
class VethTopology:
    venue_ns: str
    appliance_ns: str
    venue_if: str
    appliance_if: str
    venue_ip: str
    appliance_ip: str
    venue_mac: str
    appliance_mac: str


@contextlib.contextmanager
def veth_topology(
    tag: str | None = None,
    venue_ip: str = "198.18.0.1",
    appliance_ip: str = "198.18.0.2",
    prefixlen: int = 24,
) -> Iterator[VethTopology]:
    """Two fresh namespaces (venue, appliance) joined by a veth pair, addressed, up, with static
    neighbours both ways (so XDP programs can never starve ARP); all removed on exit."""
    tag = tag or os.urandom(3).hex()
    topo_ns = (f"tectra-venue-{tag}", f"tectra-appl-{tag}")
    ifs = (f"tv{tag}", f"ta{tag}")
    ips = (venue_ip, appliance_ip)
    created: list[str] = []
    try:
        for ns in topo_ns:
            create_namespace(ns)
            created.append(ns)
        add_veth(ifs[0], ifs[1], namespace=topo_ns[0], peer_namespace=topo_ns[1])
        macs = []
        for ns, ifname, ip in zip(topo_ns, ifs, ips, strict=True):
            add_address(ifname, ip, prefixlen, ns)
            set_link_state(ifname, True, ns)
            set_link_state("lo", True, ns)
            macs.append(link_info(ifname, ns).mac)
        add_static_neighbour(ifs[0], ips[1], macs[1], topo_ns[0])
        add_static_neighbour(ifs[1], ips[0], macs[0], topo_ns[1])
        yield VethTopology(topo_ns[0], topo_ns[1], ifs[0], ifs[1], ips[0], ips[1], macs[0], macs[1])
    finally:
        for ns in created:
            with contextlib.suppress(NetnsError):
                remove_namespace(ns)
