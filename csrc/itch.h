/*
 * Tectra ITCH 5.0 batch decoder: 2-byte-length-prefixed ITCH messages (MoldUDP64 message
 * blocks, NASDAQ binary files) -> ITCH_EVENT records (tectra/schema.py), one call per buffer
 * or per receive batch of blocks. No allocation, no global state; never reads outside the
 * input nor writes past out_cap. See docs/itch.md.
 */
#ifndef TECTRA_ITCH_H
#define TECTRA_ITCH_H

#include <stdint.h>

#define ITCH_MAX_MESSAGE 50  /* NOII, the longest ITCH 5.0 message */
#define ITCH_RAW_CAP 56      /* ITCH_EVENT.raw */
#define ITCH_MIN_FRAMED 14   /* 2-byte prefix + a 12-byte S or W: the densest valid stream */
#define ITCH_EVENT_SIZE 128

/* Flags of itch_decode(). */
#define ITCH_F_PARTIAL_TAIL 1u /* a message cut by the end of the buffer stays unconsumed and
                                  uncounted (streaming input: the caller brings it back) */

/* ITCH_EVENT, field for field (offsets are asserted in itch.c and checked from Python at load
 * against the numpy dtype). Multi-byte fields are little-endian, the host order. */
typedef struct itch_event {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ns;
    uint8_t msg_type;
    uint8_t side;
    uint8_t aux;
    uint8_t raw_len;
    uint16_t stock_locate;
    uint16_t tracking;
    int64_t exch_ts_ns;
    uint64_t order_ref;
    uint64_t ref2;
    uint64_t shares;
    int64_t price;
    uint8_t raw[ITCH_RAW_CAP];
} itch_event_t;

/* What goes into every record's common header (the schema's type id and version are passed
 * in by the caller, so this file never hard-codes a schema version). */
typedef struct itch_header {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
} itch_header_t;

/* Counters, accumulated across calls (the caller zeroes them). For every call,
 * consumed == d(bytes) + d(bytes_skipped) + d(bytes_dropped). */
typedef struct itch_stats {
    uint64_t messages;      /* records written */
    uint64_t blocks;        /* blocks (or whole itch_decode buffers) walked to their end */
    uint64_t bytes;         /* bytes of decoded messages, prefixes included */
    uint64_t unknown_type;  /* framed messages of an unknown type: skipped by their length */
    uint64_t bad_length;    /* prefix 0 or != the type's spec length: rest of block dropped */
    uint64_t truncated;     /* block ends inside a prefix or a message: rest dropped */
    uint64_t bytes_skipped; /* bytes of unknown-type messages, prefixes included */
    uint64_t bytes_dropped; /* bytes from a bad_length/truncated point to the block's end */
    uint64_t out_full;      /* calls that stopped because out_cap records were written */
    uint64_t by_type[256];  /* decoded messages per type byte */
} itch_stats_t;

/* Where itch_decode_blocks() stopped: block index (== nblocks when all are done), byte offset
 * inside that block and the seq of its next message. Zero it to start; pass it back to
 * resume after an out_full stop. */
typedef struct itch_cursor {
    uint64_t block;
    uint64_t offset;
    uint64_t seq;
} itch_cursor_t;

/* Spec length of ITCH 5.0 message type `type`, 0 if ITCH 5.0 has no such type. */
uint32_t itch_message_length(uint8_t type);

/* Decode buf[0..len) into out[0..out_cap). Message i (valid or unknown type) gets seq
 * first_seq + i, every record ts_ns = recv_ns. Returns the number of records written, or
 * -EINVAL (NULL pointer). *consumed = bytes walked (len unless out_cap ran out or
 * ITCH_F_PARTIAL_TAIL held a cut message back); *next_seq = seq of the next message. */
int64_t itch_decode(const itch_header_t *hdr, const uint8_t *buf, uint64_t len,
                    uint64_t first_seq, int64_t recv_ns, uint32_t flags, itch_event_t *out,
                    uint64_t out_cap, itch_stats_t *stats, uint64_t *consumed,
                    uint64_t *next_seq);

/* Decode nblocks message blocks buf[offsets[k] .. offsets[k] + lengths[k]) in one call: seq
 * first_seqs[k] + i, ts_ns recv_ns[k]. Starts and ends at *cursor. Returns records written,
 * -EINVAL (NULL pointer, cursor past the blocks) or -ERANGE (a block outside buf; checked
 * for every block before anything is decoded). */
int64_t itch_decode_blocks(const itch_header_t *hdr, const uint8_t *buf, uint64_t len,
                           const uint64_t *offsets, const uint64_t *lengths,
                           const uint64_t *first_seqs, const int64_t *recv_ns, uint64_t nblocks,
                           itch_event_t *out, uint64_t out_cap, itch_stats_t *stats,
                           itch_cursor_t *cursor);

#endif /* TECTRA_ITCH_H */
