/*
 * Tectra socket receive shim: recvmmsg() batches of UDP datagrams from a socket Python has
 * already bound (and joined to its multicast group), into the batch form shared with the
 * AF_XDP and io_uring paths: payload buffer + offsets + lengths + receive stamps.
 *
 * Datagram i of a batch lands in slot i of the payload buffer (slot = max_datagram bytes), so
 * one recvmmsg() fills the whole batch; offsets say where each one starts.
 *
 * Stamps (tx_udp_open STAMP argument):
 *   TX_UDP_STAMP_MONOTONIC  CLOCK_MONOTONIC read as soon as recvmmsg() returns (per batch).
 *   TX_UDP_STAMP_KERNEL     SO_TIMESTAMPNS: the kernel's CLOCK_REALTIME stamp of each skb,
 *                           moved onto CLOCK_MONOTONIC with the realtime-monotonic offset read
 *                           at the same moment (per datagram; earlier than the batch stamp).
 *
 * csrc/udp_build.py compiles this file as the single translation unit of tectra._udp, so the
 * interface block below is the whole public surface (mirrored in the builder's cdef). Every
 * function returns 0 / a count on success and -errno on failure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* recvmmsg, ppoll */
#endif

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* ---- interface (mirrored in csrc/udp_build.py) ---- */

#define TX_UDP_STAMP_MONOTONIC 0
#define TX_UDP_STAMP_KERNEL 1
#define TX_UDP_MAX_BATCH 1024

typedef struct tx_udp_stats {
    uint64_t rx_packets;  /* datagrams delivered into a batch */
    uint64_t rx_bytes;    /* payload bytes delivered */
    uint64_t rx_batches;  /* recvmmsg() calls that returned datagrams */
    uint64_t empty_polls; /* recvmmsg() calls that found the socket empty */
    uint64_t truncated;   /* datagrams larger than a slot: dropped, never half-delivered */
    uint64_t no_stamp;    /* KERNEL stamping asked, datagram came without one: batch stamp used */
} tx_udp_stats_t;

typedef struct tx_udp tx_udp_t;

int tx_udp_open(tx_udp_t **out, int fd, uint32_t max_batch, uint32_t max_datagram,
                uint32_t stamp);
void tx_udp_close(tx_udp_t *u);
int tx_udp_stats(const tx_udp_t *u, tx_udp_stats_t *out);
/* Up to MAX datagrams into PAYLOAD (CAP bytes: at least one slot); TIMEOUT_NS 0 = poll, < 0 =
 * wait forever, > 0 = wait that long. Returns the count (0 on timeout or signal) or -errno. */
int64_t tx_udp_rx_batch(tx_udp_t *u, uint32_t max, uint8_t *payload, uint64_t cap,
                        uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                        int64_t timeout_ns);

/* ---- implementation ---- */

#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define BUMP(field, n) __atomic_store_n(&(field), LOAD(field) + (n), __ATOMIC_RELAXED)

/* Room for one SCM_TIMESTAMPNS per datagram. */
#define CMSG_SPACE_TS CMSG_SPACE(sizeof(struct timespec))

struct tx_udp {
    int fd;
    uint32_t max_batch;
    uint32_t slot;
    uint32_t stamp;
    struct mmsghdr *msgs;
    struct iovec *iovs;
    uint8_t *cmsg;
    tx_udp_stats_t st;
};

static int64_t clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int tx_udp_open(tx_udp_t **out, int fd, uint32_t max_batch, uint32_t max_datagram,
                uint32_t stamp)
{
    if (!out || fd < 0 || max_batch == 0 || max_batch > TX_UDP_MAX_BATCH || max_datagram == 0 ||
        stamp > TX_UDP_STAMP_KERNEL)
        return -EINVAL;
    *out = NULL;
    if (stamp == TX_UDP_STAMP_KERNEL) {
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)))
            return -errno;
    }
    tx_udp_t *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->fd = fd;
    u->max_batch = max_batch;
    u->slot = max_datagram;
    u->stamp = stamp;
    u->msgs = calloc(max_batch, sizeof(*u->msgs));
    u->iovs = calloc(max_batch, sizeof(*u->iovs));
    u->cmsg = calloc(max_batch, CMSG_SPACE_TS);
    if (!u->msgs || !u->iovs || !u->cmsg) {
        tx_udp_close(u);
        return -ENOMEM;
    }
    *out = u;
    return 0;
}

void tx_udp_close(tx_udp_t *u)
{
    if (!u)
        return;
    free(u->msgs);
    free(u->iovs);
    free(u->cmsg);
    free(u);
}

int tx_udp_stats(const tx_udp_t *u, tx_udp_stats_t *out)
{
    if (!u || !out)
        return -EINVAL;
    out->rx_packets = LOAD(u->st.rx_packets);
    out->rx_bytes = LOAD(u->st.rx_bytes);
    out->rx_batches = LOAD(u->st.rx_batches);
    out->empty_polls = LOAD(u->st.empty_polls);
    out->truncated = LOAD(u->st.truncated);
    out->no_stamp = LOAD(u->st.no_stamp);
    return 0;
}

static int64_t kernel_stamp(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    }
    return -1;
}

/* CLOCK_REALTIME - CLOCK_MONOTONIC. A realtime read bracketed by two monotonic reads, three
 * times, keeping the tightest bracket: a thread preempted between two plain back-to-back reads
 * would skew every stamp of the batch by the length of the preemption (milliseconds on a
 * loaded VM, enough to reorder stamps across batches). */
static int64_t realtime_minus_monotonic(void)
{
    int64_t best_gap = INT64_MAX, best = 0;
    for (int k = 0; k < 3; k++) {
        int64_t m1 = clock_ns(CLOCK_MONOTONIC);
        int64_t rt = clock_ns(CLOCK_REALTIME);
        int64_t m2 = clock_ns(CLOCK_MONOTONIC);
        if (m2 - m1 < best_gap) {
            best_gap = m2 - m1;
            best = rt - (m1 + (m2 - m1) / 2);
        }
    }
    return best;
}

/* One non-blocking recvmmsg into slots 0..want-1; compacts away truncated datagrams. */
static int64_t receive(tx_udp_t *u, uint32_t want, uint8_t *payload, uint32_t *offsets,
                       uint32_t *lengths, int64_t *recv_ns)
{
    for (uint32_t i = 0; i < want; i++) {
        u->iovs[i].iov_base = payload + (size_t)i * u->slot;
        u->iovs[i].iov_len = u->slot;
        struct msghdr *mh = &u->msgs[i].msg_hdr;
        memset(mh, 0, sizeof(*mh));
        mh->msg_iov = &u->iovs[i];
        mh->msg_iovlen = 1;
        if (u->stamp == TX_UDP_STAMP_KERNEL) {
            mh->msg_control = u->cmsg + (size_t)i * CMSG_SPACE_TS;
            mh->msg_controllen = CMSG_SPACE_TS;
        }
    }
    int got = recvmmsg(u->fd, u->msgs, want, MSG_DONTWAIT, NULL);
    if (got < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    /* realtime -> monotonic, per batch (NTP slews are tiny). */
    int64_t rt_minus_mono = 0;
    if (u->stamp == TX_UDP_STAMP_KERNEL)
        rt_minus_mono = realtime_minus_monotonic();
    uint32_t n = 0, truncated = 0, no_stamp = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < got; i++) {
        struct msghdr *mh = &u->msgs[i].msg_hdr;
        if (mh->msg_flags & MSG_TRUNC) {
            truncated++;
            continue;
        }
        int64_t t = now;
        if (u->stamp == TX_UDP_STAMP_KERNEL) {
            int64_t k = kernel_stamp(mh);
            if (k >= 0)
                t = k - rt_minus_mono;
            else
                no_stamp++;
        }
        offsets[n] = (uint32_t)((size_t)i * u->slot);
        lengths[n] = u->msgs[i].msg_len;
        recv_ns[n] = t;
        bytes += u->msgs[i].msg_len;
        n++;
    }
    if (n) {
        BUMP(u->st.rx_packets, n);
        BUMP(u->st.rx_bytes, bytes);
        BUMP(u->st.rx_batches, 1);
    }
    if (truncated)
        BUMP(u->st.truncated, truncated);
    if (no_stamp)
        BUMP(u->st.no_stamp, no_stamp);
    if (got > 0 && n == 0)
        return -EAGAIN; /* everything was truncated: look again rather than report a timeout */
    return n;
}

int64_t tx_udp_rx_batch(tx_udp_t *u, uint32_t max, uint8_t *payload, uint64_t cap,
                        uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                        int64_t timeout_ns)
{
    if (!u || !payload || !offsets || !lengths || !recv_ns || cap < u->slot)
        return -EINVAL;
    uint64_t slots = cap / u->slot;
    uint32_t want = max;
    if (want > u->max_batch)
        want = u->max_batch;
    if (want > slots)
        want = (uint32_t)slots;
    if (want == 0)
        return 0;
    int64_t deadline = timeout_ns > 0 ? clock_ns(CLOCK_MONOTONIC) + timeout_ns : 0;
    for (;;) {
        int64_t n = receive(u, want, payload, offsets, lengths, recv_ns);
        if (n > 0 || (n < 0 && n != -EAGAIN))
            return n;
        if (n == 0)
            BUMP(u->st.empty_polls, 1);
        if (timeout_ns == 0)
            return 0;
        /* recvmmsg's own timeout is only checked between datagrams: wait in ppoll instead. */
        struct timespec ts, *tsp = NULL;
        if (timeout_ns > 0) {
            int64_t left = deadline - clock_ns(CLOCK_MONOTONIC);
            if (left <= 0)
                return 0;
            ts.tv_sec = left / 1000000000LL;
            ts.tv_nsec = left % 1000000000LL;
            tsp = &ts;
        }
        struct pollfd pfd = {.fd = u->fd, .events = POLLIN, .revents = 0};
        int rc = ppoll(&pfd, 1, tsp, NULL);
        if (rc < 0)
            return errno == EINTR ? 0 : -errno;
        if (rc == 0)
            return 0;
    }
}
