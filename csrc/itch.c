/*
 * Tectra ITCH 5.0 batch decoder (see itch.h for the contract, docs/itch.md for the mapping
 * and the error taxonomy). The hot loop is: read the 2-byte prefix, look the type's spec
 * length up in a 256-entry table, validate, and fill one 128-byte record with constant-size
 * copies (each switch case knows its message length, so memcpy/memset inline to a few moves).
 */
#include "itch.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "itch.c stores ITCH_EVENT's little-endian fields in host byte order"
#endif

_Static_assert(sizeof(itch_event_t) == ITCH_EVENT_SIZE, "ITCH_EVENT is 128 bytes");
#define CHECK_OFF(field, off) _Static_assert(offsetof(itch_event_t, field) == (off), #field)
CHECK_OFF(type_id, 0);
CHECK_OFF(version, 2);
CHECK_OFF(flags, 4);
CHECK_OFF(seq, 8);
CHECK_OFF(ts_ns, 16);
CHECK_OFF(msg_type, 24);
CHECK_OFF(side, 25);
CHECK_OFF(aux, 26);
CHECK_OFF(raw_len, 27);
CHECK_OFF(stock_locate, 28);
CHECK_OFF(tracking, 30);
CHECK_OFF(exch_ts_ns, 32);
CHECK_OFF(order_ref, 40);
CHECK_OFF(ref2, 48);
CHECK_OFF(shares, 56);
CHECK_OFF(price, 64);
CHECK_OFF(raw, 72);

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Spec length per type byte; 0 = not an ITCH 5.0 type. Mirrors adapters/itch.py MESSAGES
 * (a test compares the two for all 256 bytes). */
static const uint8_t SPEC_LEN[256] = {
    ['S'] = 12, ['R'] = 39, ['H'] = 25, ['Y'] = 20, ['L'] = 26, ['V'] = 35,
    ['W'] = 12, ['K'] = 28, ['J'] = 35, ['h'] = 21, ['A'] = 36, ['F'] = 40,
    ['E'] = 31, ['C'] = 36, ['X'] = 23, ['D'] = 19, ['U'] = 35, ['P'] = 44,
    ['Q'] = 40, ['B'] = 19, ['I'] = 50, ['N'] = 20, ['O'] = 48,
};

uint32_t itch_message_length(uint8_t type)
{
    return SPEC_LEN[type];
}

/* Unaligned big-endian loads: memcpy compiles to one mov, then a bswap. */
static ALWAYS_INLINE uint16_t be16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap16(v);
}

static ALWAYS_INLINE uint32_t be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap32(v);
}

static ALWAYS_INLINE uint64_t be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return __builtin_bswap64(v);
}

static ALWAYS_INLINE uint64_t be48(const uint8_t *p)
{
    return ((uint64_t)be16(p) << 32) | be32(p + 2);
}

/* `n` is a constant at every call site, so both calls inline. */
static ALWAYS_INLINE void put_raw(uint8_t *raw, const uint8_t *m, size_t n)
{
    memcpy(raw, m, n);
    memset(raw + n, 0, ITCH_RAW_CAP - n);
}

/* One validated message (m[0] is a known type, the message is SPEC_LEN[m[0]] bytes). */
static ALWAYS_INLINE void decode_one(const itch_header_t *h, const uint8_t *m, uint64_t seq,
                                     int64_t recv_ns, itch_event_t *e)
{
    const uint8_t t = m[0];
    e->type_id = h->type_id;
    e->version = h->version;
    e->flags = h->flags;
    e->seq = seq;
    e->ts_ns = recv_ns;
    e->msg_type = t;
    e->side = 0;
    e->aux = 0;
    e->raw_len = SPEC_LEN[t];
    e->stock_locate = be16(m + 1);
    e->tracking = be16(m + 3);
    e->exch_ts_ns = (int64_t)be48(m + 5);
    e->order_ref = 0;
    e->ref2 = 0;
    e->shares = 0;
    e->price = 0;
    switch (t) {
    case 'A':
        e->order_ref = be64(m + 11);
        e->side = m[19];
        e->shares = be32(m + 20);
        e->price = be32(m + 32);
        put_raw(e->raw, m, 36);
        break;
    case 'F':
        e->order_ref = be64(m + 11);
        e->side = m[19];
        e->shares = be32(m + 20);
        e->price = be32(m + 32);
        put_raw(e->raw, m, 40);
        break;
    case 'E':
        e->order_ref = be64(m + 11);
        e->shares = be32(m + 19);
        e->ref2 = be64(m + 23);
        put_raw(e->raw, m, 31);
        break;
    case 'C':
        e->order_ref = be64(m + 11);
        e->shares = be32(m + 19);
        e->ref2 = be64(m + 23);
        e->aux = m[31];
        e->price = be32(m + 32);
        put_raw(e->raw, m, 36);
        break;
    case 'X':
        e->order_ref = be64(m + 11);
        e->shares = be32(m + 19);
        put_raw(e->raw, m, 23);
        break;
    case 'D':
        e->order_ref = be64(m + 11);
        put_raw(e->raw, m, 19);
        break;
    case 'U':
        e->order_ref = be64(m + 11);
        e->ref2 = be64(m + 19);
        e->shares = be32(m + 27);
        e->price = be32(m + 31);
        put_raw(e->raw, m, 35);
        break;
    case 'P':
        e->order_ref = be64(m + 11);
        e->side = m[19];
        e->shares = be32(m + 20);
        e->price = be32(m + 32);
        e->ref2 = be64(m + 36);
        put_raw(e->raw, m, 44);
        break;
    case 'Q':
        e->shares = be64(m + 11);
        e->price = be32(m + 27);
        e->ref2 = be64(m + 31);
        e->aux = m[39];
        put_raw(e->raw, m, 40);
        break;
    case 'B':
        e->ref2 = be64(m + 11);
        put_raw(e->raw, m, 19);
        break;
    case 'S':
        e->aux = m[11];
        put_raw(e->raw, m, 12);
        break;
    case 'H':
        e->aux = m[19];
        put_raw(e->raw, m, 25);
        break;
    case 'R':
        put_raw(e->raw, m, 39);
        break;
    case 'Y':
        put_raw(e->raw, m, 20);
        break;
    case 'L':
        put_raw(e->raw, m, 26);
        break;
    case 'V':
        put_raw(e->raw, m, 35);
        break;
    case 'W':
        put_raw(e->raw, m, 12);
        break;
    case 'K':
        put_raw(e->raw, m, 28);
        break;
    case 'J':
        put_raw(e->raw, m, 35);
        break;
    case 'h':
        put_raw(e->raw, m, 21);
        break;
    case 'I':
        put_raw(e->raw, m, 50);
        break;
    case 'N':
        put_raw(e->raw, m, 20);
        break;
    case 'O':
        put_raw(e->raw, m, 48);
        break;
    default: /* unreachable: the caller checked SPEC_LEN[t] != 0 */
        break;
    }
}

enum walk_end {
    WALK_END,     /* the block was walked to its end (possibly after dropping a bad tail) */
    WALK_FULL,    /* out_cap records written and a further valid message is waiting */
    WALK_PARTIAL, /* ITCH_F_PARTIAL_TAIL: stopped before a message cut by the block's end */
};

/* Walk blk[*pos .. len): the loop shared by both entry points. Counters are kept in locals
 * and added once, so the compiler need not assume stores to `out` alias them. */
static enum walk_end walk(const itch_header_t *h, const uint8_t *blk, uint64_t len,
                          uint64_t *pos_io, uint64_t *seq_io, int64_t recv_ns, uint32_t flags,
                          itch_event_t *out, uint64_t cap, uint64_t *n_io, itch_stats_t *st)
{
    uint64_t pos = *pos_io, seq = *seq_io, n = *n_io;
    const uint64_t n0 = n;
    uint64_t bytes = 0, unknown = 0, skipped = 0;
    enum walk_end end = WALK_END;

    while (pos < len) {
        const uint64_t rem = len - pos;
        if (rem < 2)
            goto cut;
        const uint32_t mlen = be16(blk + pos);
        if (mlen == 0)
            goto bad; /* no type byte: the framing itself is broken */
        if (mlen > rem - 2)
            goto cut;
        const uint8_t *m = blk + pos + 2;
        const uint32_t want = SPEC_LEN[m[0]];
        if (want == 0) { /* a type we do not know is still framed: step over it */
            unknown++;
            skipped += 2 + (uint64_t)mlen;
            pos += 2 + (uint64_t)mlen;
            seq++;
            continue;
        }
        if (mlen != want)
            goto bad; /* framing disagrees with the spec: nothing after it can be trusted */
        if (n == cap) {
            end = WALK_FULL;
            st->out_full++;
            goto done;
        }
        decode_one(h, m, seq, recv_ns, out + n);
        st->by_type[m[0]]++;
        n++;
        seq++;
        bytes += 2 + (uint64_t)mlen;
        pos += 2 + (uint64_t)mlen;
    }
    goto done;

cut:
    if (flags & ITCH_F_PARTIAL_TAIL) {
        end = WALK_PARTIAL;
        goto done;
    }
    st->truncated++;
    st->bytes_dropped += len - pos;
    pos = len;
    goto done;

bad:
    st->bad_length++;
    st->bytes_dropped += len - pos;
    pos = len;

done:
    st->messages += n - n0;
    st->bytes += bytes;
    st->unknown_type += unknown;
    st->bytes_skipped += skipped;
    *pos_io = pos;
    *seq_io = seq;
    *n_io = n;
    return end;
}

int64_t itch_decode(const itch_header_t *hdr, const uint8_t *buf, uint64_t len,
                    uint64_t first_seq, int64_t recv_ns, uint32_t flags, itch_event_t *out,
                    uint64_t out_cap, itch_stats_t *stats, uint64_t *consumed,
                    uint64_t *next_seq)
{
    if (!hdr || (!buf && len) || (!out && out_cap) || !stats || !consumed || !next_seq)
        return -EINVAL;
    uint64_t pos = 0, seq = first_seq, n = 0;
    if (walk(hdr, buf, len, &pos, &seq, recv_ns, flags, out, out_cap, &n, stats) == WALK_END)
        stats->blocks++;
    *consumed = pos;
    *next_seq = seq;
    return (int64_t)n;
}

int64_t itch_decode_blocks(const itch_header_t *hdr, const uint8_t *buf, uint64_t len,
                           const uint64_t *offsets, const uint64_t *lengths,
                           const uint64_t *first_seqs, const int64_t *recv_ns, uint64_t nblocks,
                           itch_event_t *out, uint64_t out_cap, itch_stats_t *stats,
                           itch_cursor_t *cursor)
{
    if (!hdr || (!buf && len) || (!out && out_cap) || !stats || !cursor)
        return -EINVAL;
    if (nblocks && (!offsets || !lengths || !first_seqs || !recv_ns))
        return -EINVAL;
    if (cursor->block > nblocks)
        return -EINVAL;
    /* Validate every block first so a bad batch is refused whole, not half-decoded. */
    for (uint64_t k = 0; k < nblocks; k++)
        if (offsets[k] > len || lengths[k] > len - offsets[k])
            return -ERANGE;
    if (cursor->block < nblocks && cursor->offset > lengths[cursor->block])
        return -EINVAL;

    uint64_t n = 0;
    for (uint64_t k = cursor->block; k < nblocks; k++) {
        uint64_t pos = cursor->offset;
        uint64_t seq = pos ? cursor->seq : first_seqs[k];
        const enum walk_end end = walk(hdr, buf + offsets[k], lengths[k], &pos, &seq,
                                       recv_ns[k], 0, out, out_cap, &n, stats);
        if (end == WALK_FULL) {
            cursor->block = k;
            cursor->offset = pos;
            cursor->seq = seq;
            return (int64_t)n;
        }
        stats->blocks++;
        cursor->offset = 0;
        cursor->seq = seq;
    }
    cursor->block = nblocks;
    cursor->offset = 0;
    return (int64_t)n;
}
