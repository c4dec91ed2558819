/* MoldUDP64 message-block walk; the contract is in mold.h. */
#include "mold.h"

#include <errno.h>

int64_t mold_walk_blocks(const uint8_t *buf, uint64_t buflen, const int64_t *offs,
                         const int64_t *lens, const int64_t *count, const uint8_t *walk,
                         const int64_t *base, uint64_t npackets, uint8_t *status, int64_t *boff,
                         int64_t *blen)
{
    int64_t bad = 0;
    for (uint64_t p = 0; p < npackets; p++) {
        if (!walk[p])
            continue;
        if (offs[p] < 0 || lens[p] < MOLD_HEADER_LEN || (uint64_t)(offs[p] + lens[p]) > buflen)
            return -EINVAL; /* the caller clips packets to the buffer first */
        int64_t pos = offs[p] + MOLD_HEADER_LEN;
        const int64_t end = offs[p] + lens[p];
        int64_t row = base[p];
        int overrun = 0;
        for (int64_t k = 0; k < count[p]; k++) {
            if (pos + MOLD_BLOCK_PREFIX_LEN > end) {
                overrun = 1;
                break;
            }
            const int64_t size = ((int64_t)buf[pos] << 8) | buf[pos + 1];
            if (pos + MOLD_BLOCK_PREFIX_LEN + size > end) {
                overrun = 1;
                break;
            }
            boff[row] = pos;
            blen[row] = size;
            row++;
            pos += MOLD_BLOCK_PREFIX_LEN + size;
        }
        if (overrun) {
            status[p] = MOLD_STATUS_BLOCK_OVERRUN;
            bad++;
        } else if (pos != end) {
            status[p] = MOLD_STATUS_COUNT_MISMATCH;
            bad++;
        }
    }
    return bad;
}
