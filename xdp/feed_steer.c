/*
 * Tectra feed steering: the XDP program that hands the market-data feed to AF_XDP sockets.
 *
 * Owned by tectra/io/xdp.py (FeedSteering), which compiles this file with bcc and passes the
 * deployment's constants as -D cflags:
 *
 *   FEED_PORTS   comma-separated UDP destination ports, host byte order      (required)
 *   FEED_GROUPS  comma-separated IPv4 multicast groups as host-order u32s    (optional)
 *   XSKS_MAX     entries of the XSKMAP, i.e. rx queues that may hold a socket (default 64)
 *
 * A frame is steered when it is Ethernet (+ at most one 802.1Q/802.1ad tag) -> IPv4 (not a
 * fragment) -> UDP with a destination port in FEED_PORTS and, when FEED_GROUPS is given, a
 * destination address in FEED_GROUPS. Steered frames go to the AF_XDP socket registered for the
 * frame's rx queue; with no socket there, bpf_redirect_map falls back to XDP_PASS. Every other
 * frame (ARP, ICMP, other ports, unicast when groups are configured, fragments, malformed
 * frames) goes to the kernel unchanged: the steering never eats control traffic.
 *
 * Counters are per-CPU (no atomics on the hot path); userspace sums them at scrape time. Each
 * frame lands in exactly one of them.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

#ifndef FEED_PORTS
#error "FEED_PORTS (comma-separated UDP destination ports) must be defined"
#endif
#ifndef XSKS_MAX
#define XSKS_MAX 64
#endif

/* Index of each counter in `counters`; tectra/io/xdp.py mirrors this order. */
#define CNT_STEERED 0   /* redirected to an AF_XDP socket */
#define CNT_PASSED 1    /* not feed traffic: handed to the kernel */
#define CNT_MALFORMED 2 /* headers truncated or inconsistent: handed to the kernel, which drops */
#define CNT_NO_SOCKET 3 /* feed traffic on an rx queue with no socket: handed to the kernel */
#define CNT_MAX 4

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IP_FRAG_MASK 0x3FFF /* MF flag + fragment offset */

BPF_XSKMAP(xsks, XSKS_MAX);
BPF_PERCPU_ARRAY(counters, u64, CNT_MAX);

static const u16 feed_ports[] = {FEED_PORTS};
#ifdef FEED_GROUPS
static const u32 feed_groups[] = {FEED_GROUPS};
#endif

static __always_inline int count(int idx, int action)
{
    u64 *value = counters.lookup(&idx);
    if (value)
        *value += 1; /* per-CPU slot: no other CPU writes it */
    return action;
}

static __always_inline int port_matches(u16 port_host)
{
#pragma unroll
    for (int i = 0; i < (int)(sizeof(feed_ports) / sizeof(feed_ports[0])); i++)
        if (feed_ports[i] == port_host)
            return 1;
    return 0;
}

static __always_inline int group_matches(u32 daddr_host)
{
#ifdef FEED_GROUPS
#pragma unroll
    for (int i = 0; i < (int)(sizeof(feed_groups) / sizeof(feed_groups[0])); i++)
        if (feed_groups[i] == daddr_host)
            return 1;
    return 0;
#else
    return 1; /* no groups configured: any destination address on a feed port */
#endif
}

int tectra_steer(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return count(CNT_MALFORMED, XDP_PASS);
    u16 proto = eth->h_proto;
    void *l3 = eth + 1;

    if (proto == htons(ETH_P_8021Q_) || proto == htons(ETH_P_8021AD_)) {
        /* 802.1Q tag: TCI (2 bytes) then the encapsulated EtherType (2 bytes). */
        if (l3 + 4 > data_end)
            return count(CNT_MALFORMED, XDP_PASS);
        proto = *(u16 *)(l3 + 2);
        l3 += 4;
    }
    if (proto != htons(ETH_P_IP))
        return count(CNT_PASSED, XDP_PASS); /* ARP, IPv6, LLDP, a second VLAN tag ... */

    struct iphdr *ip = l3;
    if ((void *)(ip + 1) > data_end)
        return count(CNT_MALFORMED, XDP_PASS);
    u32 ihl = ip->ihl * 4;
    if (ip->version != 4 || ihl < sizeof(*ip))
        return count(CNT_MALFORMED, XDP_PASS);
    if (ip->protocol != IPPROTO_UDP)
        return count(CNT_PASSED, XDP_PASS);
    /* Fragments are the kernel's job: only it can reassemble them. */
    if (ip->frag_off & htons(IP_FRAG_MASK))
        return count(CNT_PASSED, XDP_PASS);

    struct udphdr *udp = l3 + ihl;
    if ((void *)(udp + 1) > data_end)
        return count(CNT_MALFORMED, XDP_PASS);
    if (!port_matches(ntohs(udp->dest)) || !group_matches(ntohl(ip->daddr)))
        return count(CNT_PASSED, XDP_PASS);

    /* A datagram shorter than its UDP header says was cut on the way: the consumer must not
     * see half a MoldUDP64 packet as a whole one. Trailing padding (len < frame) is fine. */
    u32 udp_len = ntohs(udp->len);
    if (udp_len < sizeof(*udp) || (void *)udp + udp_len > data_end)
        return count(CNT_MALFORMED, XDP_PASS);

    int action = xsks.redirect_map(ctx->rx_queue_index, XDP_PASS);
    if (action == XDP_REDIRECT)
        return count(CNT_STEERED, action);
    return count(CNT_NO_SOCKET, action);
}
