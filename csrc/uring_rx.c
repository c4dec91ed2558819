/*
 * Tectra io_uring receive shim (liburing): batches of UDP datagrams from a socket Python has
 * already bound (and joined to its multicast group), into the same batch form as the AF_XDP
 * and recvmmsg paths: payload buffer + offsets + lengths + CLOCK_MONOTONIC receive stamps.
 *
 * Two ways to keep receives outstanding, picked at open and read back with tx_uring_info:
 *   MULTISHOT  one IORING_OP_RECVMSG with IORING_RECV_MULTISHOT over a provided-buffer ring:
 *              the kernel picks a buffer per datagram and keeps the request armed (6.0+).
 *   SINGLE     N plain recvmsg SQEs, one per buffer, as one linked chain (in order), armed
 *              again once the whole chain has completed (5.1+).
 * AUTO tries MULTISHOT and falls back to SINGLE when the kernel refuses the buffer ring or the
 * multishot request. Every function returns 0 / a count on success and -errno on failure.
 *
 * csrc/uring_build.py compiles this file as the single translation unit of tectra._uring, so
 * the interface block below is the whole public surface (mirrored in the builder's cdef).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

/* ---- interface (mirrored in csrc/uring_build.py) ---- */

#define TX_URING_AUTO 0      /* multishot + provided buffers, else N outstanding recvmsg */
#define TX_URING_MULTISHOT 1 /* multishot recvmsg over a provided-buffer ring only */
#define TX_URING_SINGLE 2    /* N outstanding recvmsg SQEs only */

typedef struct tx_uring_info {
    uint32_t mode; /* TX_URING_MULTISHOT or TX_URING_SINGLE: what is actually in use */
    uint32_t nbufs;
    uint32_t buf_size;
    int32_t ring_fd;
} tx_uring_info_t;

typedef struct tx_uring_stats {
    uint64_t rx_packets;  /* datagrams delivered into a batch */
    uint64_t rx_bytes;    /* payload bytes delivered */
    uint64_t rx_batches;  /* non-empty batches */
    uint64_t empty_polls; /* looks at the completion queue that found nothing */
    uint64_t truncated;   /* datagrams larger than a buffer: dropped, never half-delivered */
    uint64_t no_buffers;  /* -ENOBUFS: the provided-buffer ring ran dry (consumer too slow) */
    uint64_t rearms;      /* receives armed again: a multishot that ended, or a SINGLE chain */
    uint64_t errors;      /* other failed completions */
    uint64_t fallbacks;   /* MULTISHOT refused by the kernel, SINGLE used instead */
} tx_uring_stats_t;

typedef struct tx_uring tx_uring_t;

int tx_uring_open(tx_uring_t **out, int fd, uint32_t nbufs, uint32_t buf_size, uint32_t mode);
void tx_uring_close(tx_uring_t *u);
int tx_uring_info(const tx_uring_t *u, tx_uring_info_t *out);
int tx_uring_stats(const tx_uring_t *u, tx_uring_stats_t *out);
/* Up to MAX datagrams into PAYLOAD (CAP >= buf_size bytes); TIMEOUT_NS 0 = poll, < 0 = wait
 * forever, > 0 = wait that long. Returns the count (0 on timeout or signal) or -errno. */
int64_t tx_uring_rx_batch(tx_uring_t *u, uint32_t max, uint8_t *payload, uint64_t cap,
                          uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                          int64_t timeout_ns);

/* ---- implementation ---- */

#define BGID 7 /* our only provided-buffer group */

#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define BUMP(field, n) __atomic_store_n(&(field), LOAD(field) + (n), __ATOMIC_RELAXED)

struct tx_uring {
    struct io_uring ring;
    int ring_ok;
    int fd;
    uint32_t mode; /* TX_URING_MULTISHOT or TX_URING_SINGLE once open */
    uint32_t auto_mode;
    uint32_t nbufs;
    uint32_t buf_size;
    uint8_t *bufs;
    size_t bufs_len;
    /* MULTISHOT */
    struct io_uring_buf_ring *br;
    size_t br_len;
    int br_registered;
    struct msghdr ms_msg; /* template: no name, no control, payload only */
    int armed;
    uint64_t delivered_once;
    /* SINGLE */
    struct msghdr *msgs;
    struct iovec *iovs;
    uint32_t *rearm;
    uint32_t nrearm;
    tx_uring_stats_t st;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int arm_multishot(tx_uring_t *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_recvmsg_multishot(sqe, u->fd, &u->ms_msg, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    u->armed = 1;
    BUMP(u->st.rearms, 1);
    return 0;
}

static int arm_single(tx_uring_t *u, uint32_t slot, int link)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe)
        return -EBUSY;
    /* MSG_TRUNC: the result is the datagram's real length, so truncation is visible. */
    io_uring_prep_recvmsg(sqe, u->fd, &u->msgs[slot], MSG_TRUNC);
    io_uring_sqe_set_data64(sqe, slot);
    if (link)
        sqe->flags |= IOSQE_IO_LINK;
    return 0;
}

/* The N receives go out as one linked chain: each starts when the previous completed, so the
 * datagrams come back in socket order. Independent receives would race for the queue and
 * could complete out of order, which a sequenced feed would see as gaps. A new chain is armed
 * only once every receive of the previous one has been reaped. */
static int arm_chain(tx_uring_t *u, const uint32_t *slots, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = arm_single(u, slots[i], i + 1 < n);
        if (rc)
            return rc;
    }
    return 0;
}

static int setup_single(tx_uring_t *u)
{
    u->msgs = calloc(u->nbufs, sizeof(*u->msgs));
    u->iovs = calloc(u->nbufs, sizeof(*u->iovs));
    u->rearm = calloc(u->nbufs, sizeof(*u->rearm));
    if (!u->msgs || !u->iovs || !u->rearm)
        return -ENOMEM;
    for (uint32_t i = 0; i < u->nbufs; i++) {
        u->iovs[i].iov_base = u->bufs + (size_t)i * u->buf_size;
        u->iovs[i].iov_len = u->buf_size;
        u->msgs[i].msg_iov = &u->iovs[i];
        u->msgs[i].msg_iovlen = 1;
        u->rearm[i] = i;
    }
    u->mode = TX_URING_SINGLE;
    int rc = arm_chain(u, u->rearm, u->nbufs);
    if (rc)
        return rc;
    rc = io_uring_submit(&u->ring);
    return rc < 0 ? rc : 0;
}

static int setup_multishot(tx_uring_t *u)
{
    u->br_len = (size_t)u->nbufs * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, u->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED) {
        u->br_len = 0;
        return -errno;
    }
    u->br = br;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = u->nbufs;
    reg.bgid = BGID;
    int rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc)
        return rc;
    u->br_registered = 1;
    io_uring_buf_ring_init(u->br);
    int mask = io_uring_buf_ring_mask(u->nbufs);
    for (uint32_t i = 0; i < u->nbufs; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * u->buf_size, u->buf_size,
                              (unsigned short)i, mask, (int)i);
    io_uring_buf_ring_advance(u->br, (int)u->nbufs);
    memset(&u->ms_msg, 0, sizeof(u->ms_msg));
    u->mode = TX_URING_MULTISHOT;
    rc = arm_multishot(u);
    if (rc)
        return rc;
    rc = io_uring_submit(&u->ring);
    return rc < 0 ? rc : 0;
}

static void teardown_multishot(tx_uring_t *u)
{
    if (u->br_registered)
        io_uring_unregister_buf_ring(&u->ring, BGID);
    u->br_registered = 0;
    if (u->br)
        munmap(u->br, u->br_len);
    u->br = NULL;
}

int tx_uring_open(tx_uring_t **out, int fd, uint32_t nbufs, uint32_t buf_size, uint32_t mode)
{
    if (!out || fd < 0 || nbufs == 0 || nbufs > 32768 || (nbufs & (nbufs - 1)) ||
        buf_size < 64 || mode > TX_URING_SINGLE)
        return -EINVAL;
    *out = NULL;
    tx_uring_t *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->fd = fd;
    u->nbufs = nbufs;
    u->buf_size = buf_size;
    u->auto_mode = mode == TX_URING_AUTO;
    int rc;

    u->bufs_len = (size_t)nbufs * buf_size;
    void *bufs = mmap(NULL, u->bufs_len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (bufs == MAP_FAILED) {
        u->bufs_len = 0;
        rc = -errno;
        goto fail;
    }
    u->bufs = bufs;

    /* Room for every buffer's completion, so a burst never needs the CQ overflow list. */
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = 2 * nbufs;
    rc = io_uring_queue_init_params(nbufs, &u->ring, &p);
    if (rc)
        goto fail;
    u->ring_ok = 1;

    if (mode != TX_URING_SINGLE) {
        rc = setup_multishot(u);
        if (rc == 0) {
            *out = u;
            return 0;
        }
        teardown_multishot(u);
        if (mode == TX_URING_MULTISHOT)
            goto fail;
        BUMP(u->st.fallbacks, 1);
    }
    rc = setup_single(u);
    if (rc)
        goto fail;
    *out = u;
    return 0;

fail:
    tx_uring_close(u);
    return rc < 0 ? rc : -rc;
}

void tx_uring_close(tx_uring_t *u)
{
    if (!u)
        return;
    if (u->ring_ok) {
        teardown_multishot(u);
        io_uring_queue_exit(&u->ring); /* cancels whatever is still outstanding */
    }
    if (u->bufs)
        munmap(u->bufs, u->bufs_len);
    free(u->msgs);
    free(u->iovs);
    free(u->rearm);
    free(u);
}

int tx_uring_info(const tx_uring_t *u, tx_uring_info_t *out)
{
    if (!u || !out)
        return -EINVAL;
    out->mode = u->mode;
    out->nbufs = u->nbufs;
    out->buf_size = u->buf_size;
    out->ring_fd = u->ring.ring_fd;
    return 0;
}

int tx_uring_stats(const tx_uring_t *u, tx_uring_stats_t *out)
{
    if (!u || !out)
        return -EINVAL;
    out->rx_packets = LOAD(u->st.rx_packets);
    out->rx_bytes = LOAD(u->st.rx_bytes);
    out->rx_batches = LOAD(u->st.rx_batches);
    out->empty_polls = LOAD(u->st.empty_polls);
    out->truncated = LOAD(u->st.truncated);
    out->no_buffers = LOAD(u->st.no_buffers);
    out->rearms = LOAD(u->st.rearms);
    out->errors = LOAD(u->st.errors);
    out->fallbacks = LOAD(u->st.fallbacks);
    return 0;
}

/* Switch a MULTISHOT ring whose kernel refused the request to SINGLE (AUTO mode only). */
static int fall_back_to_single(tx_uring_t *u)
{
    teardown_multishot(u);
    u->armed = 0;
    BUMP(u->st.fallbacks, 1);
    return setup_single(u);
}

/* Consume completions into the batch. Stops while there is still room for a whole buffer, so a
 * completion is never consumed that could not be delivered. */
static int64_t reap(tx_uring_t *u, uint32_t max, uint8_t *payload, uint64_t cap,
                    uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns, int *err)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    uint32_t n = 0, returned = 0, truncated = 0, nobufs = 0, errors = 0;
    uint64_t used = 0;
    int64_t now = 0;
    int mask = u->mode == TX_URING_MULTISHOT ? io_uring_buf_ring_mask(u->nbufs) : 0;
    int refused = 0;

    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        if (n >= max || cap - used < u->buf_size)
            break;
        if (!now)
            now = mono_ns(); /* the batch's receive time: as soon as userspace sees it */
        seen++;
        int res = cqe->res;
        const uint8_t *data = NULL;
        uint32_t len = 0;
        if (u->mode == TX_URING_MULTISHOT) {
            if (!(cqe->flags & IORING_CQE_F_MORE))
                u->armed = 0;
            if (res < 0) {
                if (res == -ENOBUFS) {
                    nobufs++;
                } else if (res == -EINVAL && u->auto_mode && !u->delivered_once) {
                    refused = 1; /* kernel without multishot recvmsg */
                } else {
                    errors++;
                    *err = res;
                }
                continue;
            }
            if (!(cqe->flags & IORING_CQE_F_BUFFER))
                continue;
            uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            uint8_t *buf = u->bufs + (size_t)bid * u->buf_size;
            struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, res, &u->ms_msg);
            if (o && !(o->flags & MSG_TRUNC)) {
                data = io_uring_recvmsg_payload(o, &u->ms_msg);
                len = io_uring_recvmsg_payload_length(o, res, &u->ms_msg);
            } else {
                truncated++;
            }
            if (data)
                memcpy(payload + used, data, len);
            io_uring_buf_ring_add(u->br, buf, u->buf_size, (unsigned short)bid, mask,
                                  (int)returned++);
        } else {
            uint32_t slot = (uint32_t)io_uring_cqe_get_data64(cqe);
            if (res == -EAGAIN || res == -EINTR || res == -ECANCELED) {
                /* nothing received: O_NONBLOCK socket, signal, or the chain was broken */
            } else if (res < 0) {
                errors++;
                *err = res;
            } else if ((uint32_t)res > u->buf_size) {
                truncated++;
            } else {
                data = u->bufs + (size_t)slot * u->buf_size;
                len = (uint32_t)res;
                memcpy(payload + used, data, len);
            }
            u->rearm[u->nrearm++] = slot;
        }
        if (data) {
            offsets[n] = (uint32_t)used;
            lengths[n] = len;
            recv_ns[n] = now;
            used += len;
            n++;
        }
    }
    if (returned)
        io_uring_buf_ring_advance(u->br, (int)returned);
    if (seen)
        io_uring_cq_advance(&u->ring, seen);
    if (n)
        u->delivered_once = 1;

    if (refused) {
        int rc = fall_back_to_single(u);
        if (rc)
            *err = rc;
    } else if (u->mode == TX_URING_MULTISHOT) {
        if (!u->armed) {
            int rc = arm_multishot(u); /* ended (ENOBUFS, CQ overflow ...): arm it again */
            if (rc)
                *err = rc;
        }
    } else if (u->nrearm == u->nbufs) {
        int rc = arm_chain(u, u->rearm, u->nrearm);
        if (rc)
            *err = rc;
        u->nrearm = 0;
        BUMP(u->st.rearms, 1);
    }
    if (n) {
        BUMP(u->st.rx_packets, n);
        BUMP(u->st.rx_bytes, used);
        BUMP(u->st.rx_batches, 1);
    }
    if (truncated)
        BUMP(u->st.truncated, truncated);
    if (nobufs)
        BUMP(u->st.no_buffers, nobufs);
    if (errors)
        BUMP(u->st.errors, errors);
    return n;
}

int64_t tx_uring_rx_batch(tx_uring_t *u, uint32_t max, uint8_t *payload, uint64_t cap,
                          uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                          int64_t timeout_ns)
{
    if (!u || !payload || !offsets || !lengths || !recv_ns || cap < u->buf_size)
        return -EINVAL;
    if (max == 0)
        return 0;
    int64_t deadline = timeout_ns > 0 ? mono_ns() + timeout_ns : 0;
    int resubmitted = 0;
    for (;;) {
        if (io_uring_sq_ready(&u->ring)) {
            int rc = io_uring_submit(&u->ring);
            if (rc < 0 && rc != -EINTR)
                return rc;
        }
        int err = 0;
        int64_t n = reap(u, max, payload, cap, offsets, lengths, recv_ns, &err);
        if (n > 0)
            return n;
        if (err)
            return err;
        /* reap() may just have re-armed a receive that ended (ENOBUFS): submitting it runs it
         * inline against data already queued on the socket, so look once more before
         * reporting "nothing" to a poll-mode caller. */
        if (!resubmitted && io_uring_sq_ready(&u->ring)) {
            resubmitted = 1;
            continue;
        }
        BUMP(u->st.empty_polls, 1);
        if (timeout_ns == 0)
            return 0;

        struct __kernel_timespec ts, *tsp = NULL;
        if (timeout_ns > 0) {
            int64_t left = deadline - mono_ns();
            if (left <= 0)
                return 0;
            ts.tv_sec = left / 1000000000LL;
            ts.tv_nsec = left % 1000000000LL;
            tsp = &ts;
        }
        struct io_uring_cqe *cqe = NULL;
        int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
        if (rc == -ETIME) {
            n = reap(u, max, payload, cap, offsets, lengths, recv_ns, &err);
            return n > 0 ? n : (err ? err : 0);
        }
        if (rc == -EINTR)
            return 0; /* let Python run its signal handlers */
        if (rc < 0)
            return rc;
    }
}
