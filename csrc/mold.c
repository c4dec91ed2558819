/* MoldUDP64 message-block walk, the in-order fast path and the feed-quality tick fold; the
 * contracts are in mold.h. */
#include "mold.h"

#include <errno.h>
#include <string.h>

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

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

int mold_fast_batch(const uint8_t *buf, uint64_t buflen, const int64_t *offs, const int64_t *lens,
                    uint64_t npackets, const char *session, uint64_t next_seq,
                    const int64_t *recv, int64_t now_ns, uint8_t *data, uint64_t data_cap,
                    int64_t *msg, uint64_t msg_cap, int64_t *blk, uint64_t blk_cap,
                    uint64_t *result)
{
    uint64_t expect = next_seq, n_data = 0, n_hb = 0, nmsg = 0, nblk = 0, dpos = 0;
    uint64_t need_data = 0, need_msg = 0;
    int room = 1;
    int64_t run_recv = 0;
    if (blk_cap < npackets)
        return MOLD_FAST_NO;
    for (uint64_t p = 0; p < npackets; p++) {
        const int64_t off = offs[p], len = lens[p];
        if (off < 0 || len < MOLD_HEADER_LEN || (uint64_t)off > buflen ||
            (uint64_t)len > buflen - (uint64_t)off)
            return MOLD_FAST_NO;
        const uint8_t *pkt = buf + off;
        if (memcmp(pkt, session, MOLD_SESSION_LEN) != 0)
            return MOLD_FAST_NO;
        const uint64_t seq = be64(pkt + MOLD_SESSION_LEN);
        const uint64_t count = ((uint64_t)pkt[18] << 8) | pkt[19];
        if (seq == 0 || seq != expect || count == MOLD_END_OF_SESSION)
            return MOLD_FAST_NO;
        if (count == 0) {
            if (len != MOLD_HEADER_LEN)
                return MOLD_FAST_NO;
            n_hb++;
            continue;
        }
        if (count > UINT64_MAX - seq || (int64_t)count * MOLD_BLOCK_PREFIX_LEN > len - MOLD_HEADER_LEN)
            return MOLD_FAST_NO;
        const int64_t payload = len - MOLD_HEADER_LEN;
        need_data += (uint64_t)payload;
        need_msg += count;
        if (need_data > data_cap || need_msg > msg_cap)
            room = 0;
        const int64_t t = recv ? recv[p] : now_ns;
        int64_t pos = MOLD_HEADER_LEN;
        for (uint64_t k = 0; k < count; k++) {
            if (pos + MOLD_BLOCK_PREFIX_LEN > len)
                return MOLD_FAST_NO;
            const int64_t size = ((int64_t)pkt[pos] << 8) | pkt[pos + 1];
            if (pos + MOLD_BLOCK_PREFIX_LEN + size > len)
                return MOLD_FAST_NO;
            if (room) {
                const int64_t at = (int64_t)dpos + (pos - MOLD_HEADER_LEN);
                msg[nmsg] = at;
                msg[msg_cap + nmsg] = size;
                msg[2 * msg_cap + nmsg] = (int64_t)(seq + k);
                msg[3 * msg_cap + nmsg] = t;
                nmsg++;
            }
            pos += MOLD_BLOCK_PREFIX_LEN + size;
        }
        if (pos != len)
            return MOLD_FAST_NO;
        if (room) {
            memcpy(data + dpos, pkt + MOLD_HEADER_LEN, (size_t)payload);
            if (nblk == 0 || t != run_recv) {
                blk[nblk] = (int64_t)dpos;
                blk[blk_cap + nblk] = payload;
                blk[2 * blk_cap + nblk] = (int64_t)seq;
                blk[3 * blk_cap + nblk] = t;
                run_recv = t;
                nblk++;
            } else {
                blk[blk_cap + nblk - 1] += payload;
            }
            dpos += (uint64_t)payload;
        }
        n_data++;
        expect = seq + count;
    }
    result[0] = expect;
    result[1] = n_data;
    result[2] = n_hb;
    result[3] = room ? nmsg : need_msg;
    result[4] = nblk;
    result[5] = room ? dpos : need_data;
    return room ? MOLD_FAST_OK : MOLD_FAST_ROOM;
}

static int64_t rd_i64(const uint8_t *p)
{
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

void mold_observe_ticks(const uint8_t *ticks, uint64_t n, uint64_t stride, const int64_t *f,
                        uint64_t max_instruments, uint64_t *crossed_cnt, uint64_t *locked_cnt,
                        uint8_t *crossed_now, uint8_t *locked_now, uint8_t *stale_now,
                        int64_t *last_update, uint8_t *state, uint64_t *entered)
{
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *r = ticks + i * stride;
        uint32_t id;
        memcpy(&id, r + f[0], sizeof id);
        if (id >= max_instruments)
            continue;
        const int64_t bid_qty = rd_i64(r + f[1]), ask_qty = rd_i64(r + f[2]);
        const int64_t bid_px = rd_i64(r + f[3]), ask_px = rd_i64(r + f[4]);
        const int two = bid_qty > 0 && ask_qty > 0;
        const uint8_t crossed = (uint8_t)(two && bid_px > ask_px);
        const uint8_t locked = (uint8_t)(two && bid_px == ask_px);
        if (crossed && !crossed_now[id]) {
            crossed_cnt[id]++;
            entered[0]++;
        }
        if (locked && !locked_now[id]) {
            locked_cnt[id]++;
            entered[1]++;
        }
        crossed_now[id] = crossed;
        locked_now[id] = locked;
        const int64_t ts = rd_i64(r + f[5]);
        if (ts > last_update[id])
            last_update[id] = ts;
        state[id] = r[f[6]];
        stale_now[id] = 0;
    }
}
