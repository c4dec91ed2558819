/*
 * Tectra AF_XDP receive shim (libxdp xsk API): one socket per rx queue, its UMEM, its fill and
 * rx rings, and a batch receive that runs the per-frame loop in C so Python only sees batches.
 *
 * The XDP program and its XSKMAP belong to the controller (tectra/io/xdp.py, bcc); a socket is
 * created with XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD so libxdp never loads a program of its own,
 * and the controller inserts the socket's fd into the XSKMAP (tx_xskmap_set).
 *
 * Every function returns 0 / a count on success and -errno on failure.
 */
#ifndef TECTRA_XSK_H
#define TECTRA_XSK_H

#include <stdint.h>

#define TX_XSK_MAX_SOCKS 64

/* tx_xsk_config_t.bind_mode */
#define TX_XSK_BIND_AUTO 0     /* let the kernel pick: zero-copy when the driver has it */
#define TX_XSK_BIND_COPY 1     /* force copy mode (XDP_COPY) */
#define TX_XSK_BIND_ZEROCOPY 2 /* force zero-copy (XDP_ZEROCOPY); fails where unsupported */

/* tx_xsk_info_t.busy_poll when it was not requested */
#define TX_XSK_BUSY_POLL_OFF 1

typedef struct tx_xsk_config {
    uint32_t frame_size;     /* UMEM chunk size: 2048 or 4096 */
    uint32_t num_frames;     /* UMEM chunks; >= fill_size (extra frames keep the fill ring topped up) */
    uint32_t fill_size;      /* fill ring entries (power of two) */
    uint32_t comp_size;      /* completion ring entries (power of two; unused by rx, required) */
    uint32_t rx_size;        /* rx ring entries (power of two) */
    uint32_t bind_mode;      /* TX_XSK_BIND_* */
    uint32_t need_wakeup;    /* bind with XDP_USE_NEED_WAKEUP */
    int32_t busy_poll_usecs; /* > 0: SO_PREFER_BUSY_POLL + SO_BUSY_POLL (+ budget) */
    int32_t busy_poll_budget;
} tx_xsk_config_t;

typedef struct tx_xsk_info {
    int32_t fd;
    uint32_t queue;
    uint32_t ifindex;
    uint32_t frame_size;
    uint32_t num_frames;
    int32_t zerocopy;    /* 1 zero-copy, 0 copy: read back with getsockopt(XDP_OPTIONS) */
    int32_t need_wakeup; /* XDP_USE_NEED_WAKEUP was requested and bound */
    int32_t busy_poll;   /* 0 applied, TX_XSK_BUSY_POLL_OFF, or -errno of the failed setsockopt */
    int32_t umem_owned;  /* 1 when the shim mmap()ed the UMEM, 0 when the caller passed it */
} tx_xsk_info_t;

typedef struct tx_xsk_stats {
    /* counted by the shim */
    uint64_t rx_frames;   /* frames taken off the rx ring */
    uint64_t rx_packets;  /* UDP payloads delivered into a batch */
    uint64_t rx_bytes;    /* payload bytes delivered */
    uint64_t rx_batches;  /* non-empty peeks of the rx ring */
    uint64_t empty_polls; /* peeks that found the rx ring empty */
    uint64_t wakeups;     /* recvfrom() kicks (need_wakeup set, or busy polling) */
    uint64_t fill_fail;   /* refills that left frames with us the fill ring should have taken */
    uint64_t malformed;   /* frames whose Ethernet/IPv4/UDP headers did not parse */
    uint64_t free_frames; /* frames neither in the fill ring nor the rx ring right now */
    /* getsockopt(XDP_STATISTICS) */
    uint64_t rx_dropped;
    uint64_t rx_invalid_descs;
    uint64_t rx_ring_full;
    uint64_t rx_fill_ring_empty_descs;
} tx_xsk_stats_t;

typedef struct tx_xsk tx_xsk_t;

int tx_xsk_open(tx_xsk_t **out, const char *ifname, uint32_t queue, void *umem_area,
                uint64_t umem_len, const tx_xsk_config_t *cfg);
void tx_xsk_close(tx_xsk_t *x);
int tx_xsk_info(const tx_xsk_t *x, tx_xsk_info_t *out);
int tx_xsk_stats(const tx_xsk_t *x, tx_xsk_stats_t *out);

/* Receive up to MAX UDP payloads from NSOCKS sockets into PAYLOAD (CAP bytes): payload i is
 * PAYLOAD[OFFSETS[i] : OFFSETS[i] + LENGTHS[i]], seen at RECV_NS[i] (CLOCK_MONOTONIC, taken when
 * the batch was peeked). TIMEOUT_NS: 0 = do not wait, < 0 = wait forever, > 0 = wait that long.
 * Returns the count (0 on timeout or signal) or -errno. */
int64_t tx_xsk_rx_batch(tx_xsk_t *const *socks, uint32_t nsocks, uint32_t max, uint8_t *payload,
                        uint64_t cap, uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                        int64_t timeout_ns);

/* XSKMAP maintenance for the controller: map[key] = sock_fd / delete map[key]. */
int tx_xskmap_set(int map_fd, uint32_t key, int sock_fd);
int tx_xskmap_clear(int map_fd, uint32_t key);

/* Program identity for the controller: an fd for a loaded program's id (the caller closes it),
 * and the id and name (up to 15 chars) behind a program fd. These are how a predecessor's
 * program is recognised and replaced. */
int tx_bpf_prog_fd_by_id(uint32_t prog_id);
int tx_bpf_prog_info(int prog_fd, uint32_t *id, char *name, uint32_t len);

#endif
