/* MoldUDP64 message-block walk over a batch of packets (see adapters/moldudp64.py).
 *
 * The per-block loop is the one part of MoldUDP64 parsing numpy cannot express without a
 * Python iteration per block index; here it is one pass over the batch's bytes.
 */
#ifndef TECTRA_MOLD_H
#define TECTRA_MOLD_H

#include <stdint.h>

#define MOLD_HEADER_LEN 20
#define MOLD_BLOCK_PREFIX_LEN 2
#define MOLD_STATUS_OK 0
#define MOLD_STATUS_BLOCK_OVERRUN 3
#define MOLD_STATUS_COUNT_MISMATCH 4

/* For every packet p with walk[p] != 0 (a valid data packet whose offs/lens lie inside buf):
 * read count[p] blocks from offs[p] + 20, writing block k's prefix offset and message length
 * to boff[base[p] + k], blen[base[p] + k]. A prefix or body crossing the packet's end sets
 * status[p] = BLOCK_OVERRUN; bytes left after count[p] blocks set COUNT_MISMATCH.
 * Returns the number of packets marked bad, or -EINVAL on an argument outside buf. */
int64_t mold_walk_blocks(const uint8_t *buf, uint64_t buflen, const int64_t *offs,
                         const int64_t *lens, const int64_t *count, const uint8_t *walk,
                         const int64_t *base, uint64_t npackets, uint8_t *status, int64_t *boff,
                         int64_t *blen);

#endif
