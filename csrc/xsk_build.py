"""cffi API-mode builder for the AF_XDP receive shim: csrc/xsk.c -> tectra._xsk.

Links libxdp (xsk sockets, UMEM) and libbpf (XSKMAP updates, program info). libxdp's ring
helpers are `static inline`, which is why the per-frame loop lives in C and Python only sees
`tx_xsk_rx_batch`. setup.py names `csrc/xsk_build.py:ffibuilder` in `cffi_modules`; running
this file builds `tectra/_xsk*.so` in place for development.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

# The Python-visible part of csrc/xsk.h (the socket struct stays opaque).
CDEF = """
#define TX_XSK_MAX_SOCKS ...
#define TX_XSK_BIND_AUTO ...
#define TX_XSK_BIND_COPY ...
#define TX_XSK_BIND_ZEROCOPY ...
#define TX_XSK_BUSY_POLL_OFF ...

typedef struct tx_xsk_config {
    uint32_t frame_size;
    uint32_t num_frames;
    uint32_t fill_size;
    uint32_t comp_size;
    uint32_t rx_size;
    uint32_t bind_mode;
    uint32_t need_wakeup;
    int32_t busy_poll_usecs;
    int32_t busy_poll_budget;
} tx_xsk_config_t;

typedef struct tx_xsk_info {
    int32_t fd;
    uint32_t queue;
    uint32_t ifindex;
    uint32_t frame_size;
    uint32_t num_frames;
    int32_t zerocopy;
    int32_t need_wakeup;
    int32_t busy_poll;
    int32_t umem_owned;
} tx_xsk_info_t;

typedef struct tx_xsk_stats {
    uint64_t rx_frames;
    uint64_t rx_packets;
    uint64_t rx_bytes;
    uint64_t rx_batches;
    uint64_t empty_polls;
    uint64_t wakeups;
    uint64_t fill_fail;
    uint64_t malformed;
    uint64_t free_frames;
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
int64_t tx_xsk_rx_batch(tx_xsk_t *const *socks, uint32_t nsocks, uint32_t max, uint8_t *payload,
                        uint64_t cap, uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                        int64_t timeout_ns);
int tx_xskmap_set(int map_fd, uint32_t key, int sock_fd);
int tx_xskmap_clear(int map_fd, uint32_t key);
int tx_bpf_prog_fd_by_id(uint32_t prog_id);
int tx_bpf_prog_info(int prog_fd, uint32_t *id, char *name, uint32_t len);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._xsk",
        CDEF,
        source="xsk.c",
        header="xsk.h",
        libraries=["xdp", "bpf"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
