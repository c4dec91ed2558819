/*
 * Tectra AF_XDP receive shim: see xsk.h for the contract and docs/kernel-bypass.md for the
 * design. The receive loop follows the usual shape (peek a batch of rx descriptors -> copy the
 * UDP payloads out -> return the frames to the fill ring -> release the descriptors), kicks the
 * kernel only when it asks (need_wakeup) or when busy polling, and sleeps in ppoll() otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll */
#endif

#include "xsk.h"

#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <xdp/xsk.h>

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef SO_BUSY_POLL
#define SO_BUSY_POLL 46
#endif
#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif
#ifndef SO_BUSY_POLL_BUDGET
#define SO_BUSY_POLL_BUDGET 70
#endif

#define ETH_HLEN_ 14
#define VLAN_HLEN_ 4
#define IPV4_MIN_HLEN 20
#define UDP_HLEN 8

/* Counters are written only by the receiving thread and read by a metrics scrape on another
 * one: relaxed single-writer updates, once per batch, keep the reads tear-free and cheap. */
#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define BUMP(field, n) __atomic_store_n(&(field), LOAD(field) + (n), __ATOMIC_RELAXED)

struct tx_xsk {
    struct xsk_ring_prod fq;
    struct xsk_ring_cons cq;
    struct xsk_ring_cons rx;
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    uint8_t *area;
    uint64_t area_len;
    int area_owned;
    uint32_t frame_size;
    uint32_t num_frames;
    uint32_t fill_size;
    uint64_t *free_frames; /* stack of frame addresses owned by userspace */
    uint32_t nfree;
    int fd;
    uint32_t queue;
    uint32_t ifindex;
    int need_wakeup;
    int busy_poll; /* 0 applied, TX_XSK_BUSY_POLL_OFF, -errno */
    uint32_t rr;   /* rotating start when this socket heads a multi-socket batch */
    tx_xsk_stats_t st;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

/* Hand every free frame the fill ring has room for back to the kernel. Frames beyond
 * num_frames - fill_size that stay with us afterwards mean the fill ring refused frames it
 * should have had room for: that is a fill failure (the kernel may run dry). */
static void refill(tx_xsk_t *x)
{
    if (x->nfree == 0)
        return;
    uint32_t room = xsk_prod_nb_free(&x->fq, x->nfree);
    uint32_t n = room < x->nfree ? room : x->nfree;
    uint32_t idx;
    if (n > 0 && xsk_ring_prod__reserve(&x->fq, n, &idx) == n) {
        for (uint32_t i = 0; i < n; i++)
            *xsk_ring_prod__fill_addr(&x->fq, idx + i) = x->free_frames[--x->nfree];
        xsk_ring_prod__submit(&x->fq, n);
    }
    if (x->nfree > x->num_frames - x->fill_size)
        BUMP(x->st.fill_fail, 1);
}

/* Ethernet (+ one VLAN tag) -> IPv4 -> UDP; on success points at the UDP payload. The XDP
 * program has already checked all this for steered frames: this is the userspace guard. */
static int udp_payload(const uint8_t *p, uint32_t len, const uint8_t **payload, uint32_t *plen)
{
    if (len < ETH_HLEN_)
        return -1;
    uint32_t off = ETH_HLEN_;
    uint16_t proto = (uint16_t)(p[12] << 8 | p[13]);
    if (proto == 0x8100 || proto == 0x88A8) {
        if (len < ETH_HLEN_ + VLAN_HLEN_)
            return -1;
        proto = (uint16_t)(p[16] << 8 | p[17]);
        off += VLAN_HLEN_;
    }
    if (proto != 0x0800 || len < off + IPV4_MIN_HLEN)
        return -1;
    const uint8_t *ip = p + off;
    uint32_t ihl = (uint32_t)(ip[0] & 0x0F) * 4;
    if ((ip[0] >> 4) != 4 || ihl < IPV4_MIN_HLEN || ip[9] != 17 || len < off + ihl + UDP_HLEN)
        return -1;
    const uint8_t *udp = ip + ihl;
    uint32_t ulen = (uint32_t)(udp[4] << 8 | udp[5]);
    if (ulen < UDP_HLEN || off + ihl + ulen > len)
        return -1;
    *payload = udp + UDP_HLEN;
    *plen = ulen - UDP_HLEN;
    return 0;
}

int tx_xsk_open(tx_xsk_t **out, const char *ifname, uint32_t queue, void *umem_area,
                uint64_t umem_len, const tx_xsk_config_t *cfg)
{
    if (!out || !ifname || !cfg)
        return -EINVAL;
    *out = NULL;
    if ((cfg->frame_size != 2048 && cfg->frame_size != 4096) || !is_pow2(cfg->fill_size) ||
        !is_pow2(cfg->comp_size) || !is_pow2(cfg->rx_size) || cfg->num_frames < cfg->fill_size ||
        cfg->bind_mode > TX_XSK_BIND_ZEROCOPY)
        return -EINVAL;
    uint64_t need = (uint64_t)cfg->num_frames * cfg->frame_size;
    long page = sysconf(_SC_PAGESIZE);
    if (umem_area && (umem_len < need || ((uintptr_t)umem_area % (uintptr_t)page) != 0))
        return -EINVAL; /* the kernel pins the UMEM by pages: it must start on one */

    unsigned int ifindex = if_nametoindex(ifname);
    if (ifindex == 0)
        return -(errno ? errno : ENODEV);

    tx_xsk_t *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->fd = -1;
    x->queue = queue;
    x->ifindex = ifindex;
    x->frame_size = cfg->frame_size;
    x->num_frames = cfg->num_frames;
    x->fill_size = cfg->fill_size;
    x->busy_poll = TX_XSK_BUSY_POLL_OFF;
    int rc;

    x->free_frames = calloc(cfg->num_frames, sizeof(uint64_t));
    if (!x->free_frames) {
        rc = -ENOMEM;
        goto fail;
    }
    if (umem_area) {
        x->area = umem_area;
        x->area_len = umem_len;
    } else {
        void *area = mmap(NULL, need, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (area == MAP_FAILED) {
            rc = -errno;
            goto fail;
        }
        x->area = area;
        x->area_len = need;
        x->area_owned = 1;
    }

    struct xsk_umem_config ucfg = {
        .fill_size = cfg->fill_size,
        .comp_size = cfg->comp_size,
        .frame_size = cfg->frame_size,
        .frame_headroom = 0,
        .flags = 0,
    };
    rc = xsk_umem__create(&x->umem, x->area, need, &x->fq, &x->cq, &ucfg);
    if (rc) {
        x->umem = NULL;
        goto fail;
    }

    uint16_t bind_flags = 0;
    if (cfg->bind_mode == TX_XSK_BIND_COPY)
        bind_flags |= XDP_COPY;
    else if (cfg->bind_mode == TX_XSK_BIND_ZEROCOPY)
        bind_flags |= XDP_ZEROCOPY;
    if (cfg->need_wakeup)
        bind_flags |= XDP_USE_NEED_WAKEUP;
    struct xsk_socket_config scfg = {
        .rx_size = cfg->rx_size,
        .tx_size = 0,
        /* Our bcc program and its XSKMAP are the controller's: libxdp must not load its own. */
        .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
        .xdp_flags = 0,
        .bind_flags = bind_flags,
    };
    rc = xsk_socket__create(&x->xsk, ifname, queue, x->umem, &x->rx, NULL, &scfg);
    if (rc) {
        x->xsk = NULL;
        goto fail;
    }
    x->fd = xsk_socket__fd(x->xsk);
    x->need_wakeup = cfg->need_wakeup ? 1 : 0;

    if (cfg->busy_poll_usecs > 0) {
        int one = 1, usecs = cfg->busy_poll_usecs, budget = cfg->busy_poll_budget;
        x->busy_poll = 0;
        /* Optional: a kernel or socket without busy polling still receives, it just says so. */
        if (setsockopt(x->fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(one)) ||
            setsockopt(x->fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof(usecs)) ||
            (budget > 0 &&
             setsockopt(x->fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof(budget))))
            x->busy_poll = -errno;
    }

    for (uint32_t i = 0; i < x->num_frames; i++)
        x->free_frames[x->nfree++] = (uint64_t)(x->num_frames - 1 - i) * x->frame_size;
    refill(x);
    x->st.free_frames = x->nfree;
    *out = x;
    return 0;

fail:
    tx_xsk_close(x);
    return rc < 0 ? rc : -rc;
}

void tx_xsk_close(tx_xsk_t *x)
{
    if (!x)
        return;
    if (x->xsk)
        xsk_socket__delete(x->xsk);
    if (x->umem)
        xsk_umem__delete(x->umem);
    if (x->area_owned && x->area)
        munmap(x->area, x->area_len);
    free(x->free_frames);
    free(x);
}

int tx_xsk_info(const tx_xsk_t *x, tx_xsk_info_t *out)
{
    if (!x || !out)
        return -EINVAL;
    struct xdp_options opts = {0};
    socklen_t len = sizeof(opts);
    if (getsockopt(x->fd, SOL_XDP, XDP_OPTIONS, &opts, &len))
        return -errno;
    out->fd = x->fd;
    out->queue = x->queue;
    out->ifindex = x->ifindex;
    out->frame_size = x->frame_size;
    out->num_frames = x->num_frames;
    out->zerocopy = (opts.flags & XDP_OPTIONS_ZEROCOPY) ? 1 : 0;
    out->need_wakeup = x->need_wakeup;
    out->busy_poll = x->busy_poll;
    out->umem_owned = x->area_owned;
    return 0;
}

int tx_xsk_stats(const tx_xsk_t *x, tx_xsk_stats_t *out)
{
    if (!x || !out)
        return -EINVAL;
    out->rx_frames = LOAD(x->st.rx_frames);
    out->rx_packets = LOAD(x->st.rx_packets);
    out->rx_bytes = LOAD(x->st.rx_bytes);
    out->rx_batches = LOAD(x->st.rx_batches);
    out->empty_polls = LOAD(x->st.empty_polls);
    out->wakeups = LOAD(x->st.wakeups);
    out->fill_fail = LOAD(x->st.fill_fail);
    out->malformed = LOAD(x->st.malformed);
    out->free_frames = LOAD(x->st.free_frames);
    struct xdp_statistics ks = {0};
    socklen_t len = sizeof(ks);
    if (getsockopt(x->fd, SOL_XDP, XDP_STATISTICS, &ks, &len))
        return -errno;
    out->rx_dropped = ks.rx_dropped;
    out->rx_invalid_descs = ks.rx_invalid_descs;
    out->rx_ring_full = ks.rx_ring_full;
    out->rx_fill_ring_empty_descs = ks.rx_fill_ring_empty_descs;
    return 0;
}

/* Drain up to MAX descriptors of one socket into the batch starting at slot N (used bytes
 * USED). Returns the new slot count; *used is advanced. Descriptors whose payload would not
 * fit stay on the rx ring for the next call. */
static uint32_t drain(tx_xsk_t *x, uint32_t n, uint32_t max, uint8_t *payload, uint64_t cap,
                      uint64_t *used, uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns)
{
    uint32_t idx;
    uint32_t got = xsk_ring_cons__peek(&x->rx, max - n, &idx);
    if (got == 0) {
        BUMP(x->st.empty_polls, 1);
        return n;
    }
    /* The batch's receive time: as soon as userspace sees it (docs/kernel-bypass.md). */
    int64_t now = mono_ns();
    uint32_t taken = 0, delivered = 0, malformed = 0;
    uint64_t bytes = 0;
    for (; taken < got; taken++) {
        const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx + taken);
        uint64_t addr = xsk_umem__add_offset_to_addr(d->addr);
        const uint8_t *p;
        uint32_t plen;
        if (addr + d->len > x->area_len ||
            udp_payload(x->area + addr, d->len, &p, &plen) != 0) {
            malformed++;
        } else {
            if (*used + plen > cap && n > 0)
                break; /* no room: leave this and the rest on the ring */
            if (*used + plen > cap)
                plen = (uint32_t)(cap - *used); /* cannot happen with cap >= frame_size */
            memcpy(payload + *used, p, plen);
            offsets[n] = (uint32_t)*used;
            lengths[n] = plen;
            recv_ns[n] = now;
            *used += plen;
            bytes += plen;
            n++;
            delivered++;
        }
        /* Aligned mode: the kernel accepts any address inside a chunk; keep the chunk base. */
        x->free_frames[x->nfree++] = xsk_umem__extract_addr(d->addr) & ~(uint64_t)(x->frame_size - 1);
    }
    if (taken < got)
        xsk_ring_cons__cancel(&x->rx, got - taken);
    if (taken)
        xsk_ring_cons__release(&x->rx, taken);
    refill(x);
    BUMP(x->st.rx_frames, taken);
    BUMP(x->st.rx_packets, delivered);
    BUMP(x->st.rx_bytes, bytes);
    BUMP(x->st.rx_batches, 1);
    if (malformed)
        BUMP(x->st.malformed, malformed);
    __atomic_store_n(&x->st.free_frames, x->nfree, __ATOMIC_RELAXED);
    return n;
}

static void kick(tx_xsk_t *x)
{
    /* need_wakeup: the driver went to sleep and needs a syscall to run its rx again; busy
     * polling: the syscall is what drives the NAPI loop. Otherwise ppoll() is enough. */
    if (x->busy_poll == 0 || (x->need_wakeup && xsk_ring_prod__needs_wakeup(&x->fq))) {
        recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        BUMP(x->st.wakeups, 1);
    }
}

int64_t tx_xsk_rx_batch(tx_xsk_t *const *socks, uint32_t nsocks, uint32_t max, uint8_t *payload,
                        uint64_t cap, uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                        int64_t timeout_ns)
{
    if (!socks || nsocks == 0 || nsocks > TX_XSK_MAX_SOCKS || !payload || !offsets || !lengths ||
        !recv_ns)
        return -EINVAL;
    if (max == 0)
        return 0;
    for (uint32_t i = 0; i < nsocks; i++)
        if (!socks[i] || cap < socks[i]->frame_size)
            return -EINVAL;

    int64_t deadline = timeout_ns > 0 ? mono_ns() + timeout_ns : 0;
    struct pollfd pfds[TX_XSK_MAX_SOCKS];
    for (;;) {
        uint32_t n = 0;
        uint64_t used = 0;
        /* Rotate the starting socket so one busy queue cannot starve another. */
        uint32_t start = socks[0]->rr++ % nsocks;
        for (uint32_t k = 0; k < nsocks && n < max; k++)
            n = drain(socks[(start + k) % nsocks], n, max, payload, cap, &used, offsets, lengths,
                      recv_ns);
        if (n > 0)
            return n;
        if (timeout_ns == 0)
            return 0;

        struct timespec ts, *tsp = NULL;
        if (timeout_ns > 0) {
            int64_t left = deadline - mono_ns();
            if (left <= 0)
                return 0;
            ts.tv_sec = left / 1000000000LL;
            ts.tv_nsec = left % 1000000000LL;
            tsp = &ts;
        }
        for (uint32_t i = 0; i < nsocks; i++) {
            kick(socks[i]);
            pfds[i].fd = socks[i]->fd;
            pfds[i].events = POLLIN;
            pfds[i].revents = 0;
        }
        int rc = ppoll(pfds, nsocks, tsp, NULL);
        if (rc < 0) {
            if (errno == EINTR)
                return 0; /* let Python run its signal handlers */
            return -errno;
        }
        if (rc == 0 && timeout_ns > 0 && mono_ns() >= deadline) {
            /* One last look: a frame may have landed between the peek and the timeout. */
            n = 0;
            used = 0;
            for (uint32_t k = 0; k < nsocks && n < max; k++)
                n = drain(socks[k], n, max, payload, cap, &used, offsets, lengths, recv_ns);
            return n;
        }
    }
}

int tx_xskmap_set(int map_fd, uint32_t key, int sock_fd)
{
    if (bpf_map_update_elem(map_fd, &key, &sock_fd, BPF_ANY))
        return -errno;
    return 0;
}

int tx_xskmap_clear(int map_fd, uint32_t key)
{
    if (bpf_map_delete_elem(map_fd, &key)) {
        if (errno == ENOENT)
            return 0; /* already gone: clearing is idempotent */
        return -errno;
    }
    return 0;
}

int tx_bpf_prog_fd_by_id(uint32_t prog_id)
{
    int fd = bpf_prog_get_fd_by_id(prog_id);
    return fd < 0 ? -errno : fd;
}

int tx_bpf_prog_info(int prog_fd, uint32_t *id, char *name, uint32_t len)
{
    if (!id || !name || len == 0)
        return -EINVAL;
    struct bpf_prog_info info;
    memset(&info, 0, sizeof(info));
    uint32_t info_len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &info_len))
        return -errno;
    *id = info.id;
    size_t n = strnlen(info.name, sizeof(info.name));
    if (n >= len)
        n = len - 1;
    memcpy(name, info.name, n);
    name[n] = '\0';
    return 0;
}
