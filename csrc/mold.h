/* MoldUDP64 message-block walk over a batch of packets (see adapters/moldudp64.py).
 *
 * The per-block loop is the one part of MoldUDP64 parsing numpy cannot express without a
 * Python iteration per block index; here it is one pass over the batch's bytes. The session's
 * in-order fast path (a whole receive batch checked and delivered in one call) and the
 * feed-quality tick fold are the other per-record loops of the feed's hot path.
 */
#ifndef TECTRA_MOLD_H
#define TECTRA_MOLD_H

#include <stdint.h>

#define MOLD_HEADER_LEN 20
#define MOLD_SESSION_LEN 10
#define MOLD_END_OF_SESSION 0xFFFF
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

/* The in-order fast path of the receiving session (adapters/moldudp64.py
 * MoldUdp64Session.step): for a batch of npackets packets (offs/lens into buf), expected to
 * be every one a well-formed data packet or heartbeat of `session` (10 bytes) carrying
 * exactly the next sequence numbers from next_seq on, with no end of session.
 *
 * If they all are, copies the message blocks of the data packets back to back into `data`
 * (length prefixes included) and writes, per delivered message i (msg is 4 rows of msg_cap):
 * msg[0][i] its block offset in data, msg[1][i] its length, msg[2][i] its sequence number,
 * msg[3][i] its receive time (recv[p], or now_ns when recv is NULL). Runs of messages with one
 * receive time (the decoder's blocks; blk is 4 rows of blk_cap >= npackets) go to blk[0][r]
 * offset in data, blk[1][r] byte length, blk[2][r] first sequence number, blk[3][r] receive
 * time. result[] gets: [0] next sequence number after the batch, [1] data packets,
 * [2] heartbeats, [3] messages, [4] runs, [5] bytes of data.
 * Returns MOLD_FAST_OK; MOLD_FAST_NO when any packet is not of that kind (nothing may be
 * taken from the outputs: the caller runs the general path); MOLD_FAST_ROOM when data or msg
 * is too small (result[5] / result[3] then hold at least the sizes needed; call again). */
#define MOLD_FAST_OK 0
#define MOLD_FAST_NO 1
#define MOLD_FAST_ROOM 2
int mold_fast_batch(const uint8_t *buf, uint64_t buflen, const int64_t *offs, const int64_t *lens,
                    uint64_t npackets, const char *session, uint64_t next_seq,
                    const int64_t *recv, int64_t now_ns, uint8_t *data, uint64_t data_cap,
                    int64_t *msg, uint64_t msg_cap, int64_t *blk, uint64_t blk_cap,
                    uint64_t *result);

/* Feed quality (tectra/feed/quality.py FeedQuality.observe_ticks) over n TICK records of
 * `stride` bytes at `ticks`, in order. f[] holds the byte offsets of the fields instrument_id
 * (u32), bid_qty, ask_qty, bid_px, ask_px, ts_ns (i64) and trading_state (u8). Ticks of
 * instruments >= max_instruments are skipped. Entering crossed (bid > ask, both sides quoted)
 * or locked (bid == ask) counts one episode in crossed_cnt / locked_cnt and in entered[0] /
 * entered[1]; the *_now flags follow the last tick, last_update keeps the latest ts_ns,
 * state the last trading state, and stale_now is cleared. */
void mold_observe_ticks(const uint8_t *ticks, uint64_t n, uint64_t stride, const int64_t *f,
                        uint64_t max_instruments, uint64_t *crossed_cnt, uint64_t *locked_cnt,
                        uint8_t *crossed_now, uint8_t *locked_now, uint8_t *stale_now,
                        int64_t *last_update, uint8_t *state, uint64_t *entered);

#endif
