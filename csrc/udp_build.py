"""cffi API-mode builder for the socket receive shim: csrc/udp_rx.c -> tectra._udp.

recvmmsg batches with CLOCK_MONOTONIC or SO_TIMESTAMPNS stamps; libc only, so this path
exists on every Linux host (it is the last fallback). udp_rx.c is compiled as the module's
single translation unit: its interface block is mirrored by CDEF below. setup.py names
`csrc/udp_build.py:ffibuilder` in `cffi_modules`; running this file builds in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

CDEF = """
#define TX_UDP_STAMP_MONOTONIC ...
#define TX_UDP_STAMP_KERNEL ...
#define TX_UDP_MAX_BATCH ...

typedef struct tx_udp_stats {
    uint64_t rx_packets;
    uint64_t rx_bytes;
    uint64_t rx_batches;
    uint64_t empty_polls;
    uint64_t truncated;
    uint64_t no_stamp;
} tx_udp_stats_t;

typedef struct tx_udp tx_udp_t;

int tx_udp_open(tx_udp_t **out, int fd, uint32_t max_batch, uint32_t max_datagram,
                uint32_t stamp);
void tx_udp_close(tx_udp_t *u);
int tx_udp_stats(const tx_udp_t *u, tx_udp_stats_t *out);
int64_t tx_udp_rx_batch(tx_udp_t *u, uint32_t max, uint8_t *payload, uint64_t cap,
                        uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                        int64_t timeout_ns);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._udp",
        CDEF,
        source="udp_rx.c",
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
