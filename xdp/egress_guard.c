/*
 * Tectra egress guard: the TC egress program that isolates a venue in the kernel.
 *
 * Owned by tectra/io/egress_guard.py (EgressGuard), which compiles this file with bcc
 * (BPF_PROG_TYPE_SCHED_CLS) and attaches it with pyroute2 to a clsact qdisc's egress hook in
 * direct-action mode. The kill switch's ISOLATE_VENUE puts the venue's destinations into
 * `blocked`; from then on every IPv4 packet leaving the interface for one of them is dropped,
 * whatever user space does (a gateway that ignores the control block still cannot reach the
 * venue).
 *
 * Map key: destination IPv4 address (network byte order) + destination port (host order);
 * port 0 means every port of that address (TCP, UDP, ICMP...). A packet is dropped when its
 * (daddr, dport) or (daddr, 0) is in the map. Non-IPv4 frames, and IPv4 to other destinations,
 * pass untouched.
 *
 * Counters are per-CPU (no atomics on the egress path), summed by user space at scrape time:
 * each packet lands in exactly one of them.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#ifndef GUARD_MAX
#define GUARD_MAX 1024
#endif

#define CNT_PASSED 0
#define CNT_DROPPED 1
#define CNT_NON_IP 2
#define CNT_MAX 3

struct guard_key {
    u32 daddr; /* network byte order */
    u16 dport; /* host byte order; 0 = any port */
    u16 pad;
};

BPF_HASH(blocked, struct guard_key, u64, GUARD_MAX); /* value: packets dropped for this key */
BPF_PERCPU_ARRAY(counters, u64, CNT_MAX);

static __always_inline int count(int idx, int verdict)
{
    u64 *value = counters.lookup(&idx);
    if (value)
        *value += 1;
    return verdict;
}

static __always_inline int drop_if_blocked(struct guard_key *key)
{
    u64 *hits = blocked.lookup(key);
    if (hits) {
        __sync_fetch_and_add(hits, 1);
        return count(CNT_DROPPED, TC_ACT_SHOT);
    }
    return -1;
}

int tectra_egress(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return count(CNT_NON_IP, TC_ACT_OK);
    if (eth->h_proto != htons(ETH_P_IP))
        return count(CNT_NON_IP, TC_ACT_OK);
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return count(CNT_NON_IP, TC_ACT_OK);

    struct guard_key key = {.daddr = ip->daddr, .dport = 0, .pad = 0};
    u16 dport = 0;
    u32 ihl = ip->ihl * 4;
    if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && ihl >= sizeof(*ip) &&
        !(ip->frag_off & htons(0x1FFF))) {
        /* TCP and UDP both start with source and destination ports */
        struct udphdr *l4 = (void *)ip + ihl;
        if ((void *)(l4 + 1) <= data_end)
            dport = ntohs(l4->dest);
    }
    int verdict = drop_if_blocked(&key); /* every port of the address */
    if (verdict >= 0)
        return verdict;
    if (dport) {
        key.dport = dport;
        verdict = drop_if_blocked(&key);
        if (verdict >= 0)
            return verdict;
    }
    return count(CNT_PASSED, TC_ACT_OK);
}
