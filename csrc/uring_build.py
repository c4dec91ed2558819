"""cffi API-mode builder for the io_uring receive shim: csrc/uring_rx.c -> tectra._uring.

Links liburing (>= 2.3 for multishot recvmsg and provided-buffer rings; the kernel decides at
run time which of the two receive modes is used). uring_rx.c is compiled as the module's single
translation unit: its interface block is mirrored by CDEF below. setup.py names
`csrc/uring_build.py:ffibuilder` in `cffi_modules`; running this file builds in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

CDEF = """
#define TX_URING_AUTO ...
#define TX_URING_MULTISHOT ...
#define TX_URING_SINGLE ...

typedef struct tx_uring_info {
    uint32_t mode;
    uint32_t nbufs;
    uint32_t buf_size;
    int32_t ring_fd;
} tx_uring_info_t;

typedef struct tx_uring_stats {
    uint64_t rx_packets;
    uint64_t rx_bytes;
    uint64_t rx_batches;
    uint64_t empty_polls;
    uint64_t truncated;
    uint64_t no_buffers;
    uint64_t rearms;
    uint64_t errors;
    uint64_t fallbacks;
} tx_uring_stats_t;

typedef struct tx_uring tx_uring_t;

int tx_uring_open(tx_uring_t **out, int fd, uint32_t nbufs, uint32_t buf_size, uint32_t mode);
void tx_uring_close(tx_uring_t *u);
int tx_uring_info(const tx_uring_t *u, tx_uring_info_t *out);
int tx_uring_stats(const tx_uring_t *u, tx_uring_stats_t *out);
int64_t tx_uring_rx_batch(tx_uring_t *u, uint32_t max, uint8_t *payload, uint64_t cap,
                          uint32_t *offsets, uint32_t *lengths, int64_t *recv_ns,
                          int64_t timeout_ns);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._uring",
        CDEF,
        source="uring_rx.c",
        libraries=["uring"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
