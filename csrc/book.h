/*
 * Tectra order book: order-level books for many instruments, aggregated to sorted L2 levels,
 * driven by decoded ITCH 5.0 events (ITCH_EVENT records) in batches, writing the normalised
 * BOOK_UPDATE / TICK / TRADE records; plus the seqlocked top-of-book reference table rows.
 *
 * This code owns no memory: every array (order table, level arena, instrument table, meta
 * words, inputs, outputs) is a numpy buffer allocated by Python (tectra/feed/book.py) and
 * passed in by address, so the whole state can be snapshotted as plain arrays. Nothing here
 * reads a clock or allocates: the same inputs give bit-identical outputs. Functions return
 * >= 0 on success and -errno on failure. docs/books.md describes the structures.
 *
 * Record structs below mirror tectra/schema.py (ITCH_EVENT, BOOK_UPDATE, TICK, TRADE);
 * sizes and offsets are checked here with _Static_assert and in Python against the numpy
 * dtypes at import, so a schema change cannot silently desynchronise them.
 */
#ifndef TECTRA_BOOK_H
#define TECTRA_BOOK_H

#include <stdint.h>

#define BK_LAYOUT_VERSION 1u
#define BK_NONE 0xFFFFFFFFu /* "no block" / "empty free list" */
#define BK_FREE_MARK 0xFFFFFFFFu /* orders field of a free arena block's first slot */
#define BK_MIN_CLASS 3u     /* smallest level block: 8 levels */
#define BK_MAX_CLASS 15u    /* largest level block: 32768 levels (BOOK_UPDATE.level is u16) */
#define BK_NUM_CLASSES 16u
#define BK_MAX_INSTRUMENTS 65536u /* ITCH stock locate is a u16 */
#define BK_BID 0u
#define BK_ASK 1u

/* Schema codes the C side writes (tectra.schema: Side, BookAction, TradeKind, RecordFlag). */
#define BK_SIDE_BUY 66u  /* 'B' */
#define BK_SIDE_SELL 83u /* 'S' */
#define BK_ACTION_ADD 1u
#define BK_ACTION_CHANGE 2u
#define BK_ACTION_DELETE 3u
#define BK_FLAGS_PROPAGATED 3u /* SYNTHETIC | REPLAY: inputs' flags carried to their outputs */

/* Header type ids / versions of the records read and written (tectra.schema LAYOUTS). */
#define BK_TYPE_TICK 0x0010u
#define BK_TYPE_BOOK_UPDATE 0x0011u
#define BK_TYPE_TRADE 0x0012u
#define BK_TYPE_ITCH_EVENT 0x0013u
#define BK_VERSION_TICK 1u
#define BK_VERSION_BOOK_UPDATE 1u
#define BK_VERSION_TRADE 1u
#define BK_VERSION_ITCH_EVENT 1u

/* Worst case outputs of one event (U: old level changed/deleted + new level added/changed).
 * bk_apply stops before an event unless this much room is left in every output array. */
#define BK_MAX_UPDATES_PER_EVENT 2u
#define BK_MAX_TICKS_PER_EVENT 1u
#define BK_MAX_TRADES_PER_EVENT 1u

/* Meta words (a u64 array of BK_META_WORDS owned by Python): configuration, cursors and
 * counters, so one small array carries everything that is not a table. */
#define BK_M_LAYOUT 0u         /* BK_LAYOUT_VERSION */
#define BK_M_TABLE_SIZE 1u     /* order table slots (power of two) */
#define BK_M_MAX_ORDERS 2u     /* live order limit (< table size: bounds the load factor) */
#define BK_M_ARENA_SIZE 3u     /* level arena slots (a multiple of max_levels) */
#define BK_M_MAX_INSTR 4u      /* instrument table rows */
#define BK_M_MAX_LEVELS 5u     /* levels per side (power of two) */
#define BK_M_OUT_SEQ 8u        /* last output sequence number written (0: none yet) */
#define BK_M_LIVE_ORDERS 9u    /* orders in the table */
#define BK_M_ARENA_USED 10u    /* arena slots handed out as top (max_levels) blocks */
#define BK_M_LAST_SEQ 11u      /* header seq of the last applied input event */
#define BK_M_LAST_TS 12u       /* header ts_ns of the last applied input event */
#define BK_M_LAST_EXCH_TS 13u  /* exch_ts_ns of the last applied input event */
#define BK_M_FREE_HEAD 16u     /* BK_NUM_CLASSES words: free list head per block class */
#define BK_M_COUNTERS 32u      /* BK_C_COUNT words, indexed by the BK_C_* causes below */
#define BK_META_WORDS 96u

/* Counters, one per cause. Informational ones count what was applied; the rest count an
 * event that was skipped (book untouched) or an add that could not be stored. */
#define BK_C_EVENTS 0u            /* input records consumed */
#define BK_C_ADDS 1u              /* A/F applied */
#define BK_C_EXECUTES 2u          /* E/C applied */
#define BK_C_CANCELS 3u           /* X applied */
#define BK_C_DELETES 4u           /* D applied */
#define BK_C_REPLACES 5u          /* U applied */
#define BK_C_TRADES 6u            /* P applied */
#define BK_C_CROSSES 7u           /* Q applied */
#define BK_C_BROKEN 8u            /* B seen */
#define BK_C_TRADING_ACTIONS 9u   /* H applied */
#define BK_C_DIRECTORY 10u        /* R applied */
#define BK_C_IGNORED 11u          /* known ITCH types the book does not use (S, Y, L, I, ...) */
#define BK_C_NONPRINTABLE 12u     /* C with printable = 'N': book changed, no TRADE */
#define BK_C_ZERO_QTY_TRADE 13u   /* P/Q with 0 shares: no TRADE */
#define BK_C_BAD_RECORD 14u       /* header type_id/version is not ITCH_EVENT v1 */
#define BK_C_UNKNOWN_TYPE 15u     /* msg_type not in ITCH 5.0 */
#define BK_C_BAD_INSTRUMENT 16u   /* stock_locate >= max_instruments */
#define BK_C_BAD_SIDE 17u         /* A/F side not 'B'/'S' */
#define BK_C_BAD_PRICE 18u        /* A/F/U price <= 0 */
#define BK_C_BAD_SHARES 19u       /* 0 shares, or more than a u32 */
#define BK_C_BAD_REF 20u          /* order reference 0 */
#define BK_C_DUPLICATE_REF 21u    /* A/F/U new ref already live */
#define BK_C_UNKNOWN_REF 22u      /* E/C/X/D/U ref not live */
#define BK_C_INSTR_MISMATCH 23u   /* E/C/X/D/U stock_locate differs from the order's */
#define BK_C_EXEC_EXCEEDS 24u     /* E/C shares > remaining (would go negative) */
#define BK_C_CANCEL_EXCEEDS 25u   /* X shares > remaining (would go negative) */
#define BK_C_ORDER_TABLE_FULL 26u /* add refused: max_orders live */
#define BK_C_LEVEL_POOL_FULL 27u  /* add refused: no arena block for a new level */
#define BK_C_DEPTH_FULL 28u       /* add refused: side already has max_levels levels */
#define BK_C_INTERNAL 29u         /* an order's level was missing (never expected) */
#define BK_C_COUNT 30u

/* One order table slot (open addressing, linear probing, backward-shift deletion). */
typedef struct bk_order {
    uint64_t ref;   /* ITCH order reference; 0 = empty slot */
    int64_t price;  /* 1e-4 units */
    uint32_t shares; /* remaining */
    uint16_t instrument;
    uint8_t side; /* BK_BID / BK_ASK */
    uint8_t _reserved;
} bk_order_t;

/* One L2 level. The first slot of a free arena block is a free-list node instead:
 * price = previous, qty = next free block of its class, orders = BK_FREE_MARK,
 * _reserved = class. */
typedef struct bk_level {
    int64_t price;
    int64_t qty;
    uint32_t orders;
    uint32_t _reserved;
} bk_level_t;

/* One side of one instrument: a block of the level arena, sorted worst..best so the best
 * level is last and the busy top of the book moves the fewest bytes on insert/delete. */
typedef struct bk_side {
    uint32_t off; /* first arena slot, BK_NONE if no block yet */
    uint32_t cap; /* block size (power of two), 0 if none */
    uint32_t n;   /* levels in use */
    uint32_t _reserved;
} bk_side_t;

typedef struct bk_instrument {
    bk_side_t side[2];
    char symbol[8]; /* from R; zero until registered */
    int64_t last_px;
    int64_t last_qty;
    int64_t top_ts_ns;      /* receive time of the last top-of-book change */
    int64_t top_exch_ts_ns; /* venue time of that change */
    uint64_t live_orders;
    uint8_t trading_state; /* tectra.schema.TradingState code */
    uint8_t _reserved[7];
} bk_instrument_t; /* 88 bytes */

/* tectra.schema ITCH_EVENT v1 */
typedef struct bk_itch_event {
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
    char raw[56];
} bk_itch_event_t;

/* tectra.schema BOOK_UPDATE v1 */
typedef struct bk_book_update {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ns;
    uint32_t instrument_id;
    uint8_t side;
    uint8_t action;
    uint16_t level;
    char symbol[8];
    int64_t price;
    int64_t qty;
    uint32_t order_count;
    uint32_t _pad60;
    int64_t exch_ts_ns;
    uint8_t _pad72[56];
} bk_book_update_t;

/* tectra.schema TICK v1 */
typedef struct bk_tick {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ns;
    uint32_t instrument_id;
    uint8_t trading_state;
    uint8_t _pad29[3];
    char symbol[8];
    int64_t bid_px;
    int64_t bid_qty;
    int64_t ask_px;
    int64_t ask_qty;
    uint32_t bid_orders;
    uint32_t ask_orders;
    int64_t last_px;
    int64_t last_qty;
    int64_t last_update_ns;
    int64_t exch_ts_ns;
    uint8_t _pad112[16];
} bk_tick_t;

/* tectra.schema TRADE v1 */
typedef struct bk_trade {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ns;
    uint32_t instrument_id;
    uint8_t aggressor_side;
    uint8_t trade_kind;
    uint16_t _pad30;
    char symbol[8];
    int64_t price;
    int64_t qty;
    uint64_t match_number;
    uint64_t buy_order_ref;
    uint64_t sell_order_ref;
    int64_t exch_ts_ns;
    uint8_t _pad88[40];
} bk_trade_t;

/* A bound book: addresses of the Python-owned arrays (filled by bk_bind). */
typedef struct bk_book {
    bk_order_t *orders;
    bk_level_t *levels;
    bk_instrument_t *instruments;
    uint64_t *meta;
    uint64_t table_mask;
    uint64_t max_orders;
    uint32_t arena_size;
    uint32_t max_instruments;
    uint32_t max_levels;
    uint32_t _reserved;
} bk_book_t;

/* Output arrays of one bk_apply call; n_* are counts written so far (in/out). */
typedef struct bk_out {
    bk_book_update_t *updates;
    uint64_t updates_cap;
    uint64_t n_updates;
    bk_tick_t *ticks;
    uint64_t ticks_cap;
    uint64_t n_ticks;
    bk_trade_t *trades;
    uint64_t trades_cap;
    uint64_t n_trades;
} bk_out_t;

/* Fill fresh meta words for these capacities (tables must be zeroed by the caller;
 * instruments need bk_init_instruments). -EINVAL if a capacity is out of range. */
int bk_init_meta(uint64_t *meta, uint64_t table_size, uint64_t max_orders, uint64_t arena_size,
                 uint64_t max_instruments, uint64_t max_levels);
void bk_init_instruments(bk_instrument_t *instruments, uint64_t n);

/* Bind arrays whose sizes must agree with the meta words; -EINVAL / -EBADMSG otherwise. */
int bk_bind(bk_book_t *b, void *orders, uint64_t table_size, void *levels, uint64_t arena_size,
            void *instruments, uint64_t n_instruments, uint64_t *meta, uint64_t meta_words);

/* Apply up to n events. Returns how many were consumed: fewer than n only when an output
 * array lacks room for one more event's worst case (call again with the rest). */
int64_t bk_apply(bk_book_t *b, const bk_itch_event_t *events, uint64_t n, bk_out_t *out);

/* Slot of a live order, or -ENOENT. */
int64_t bk_find_order(const bk_book_t *b, uint64_t ref);

/* Top `depth` levels (best first) of both sides of n instruments into px/qty/orders arrays
 * shaped [n][2][depth] (bid then ask; zero beyond a side's depth). Returns n, or -EINVAL if
 * an instrument id is out of range. */
int64_t bk_top_levels(const bk_book_t *b, const uint32_t *instruments, uint64_t n,
                      uint32_t depth, int64_t *px, int64_t *qty, uint32_t *orders);

/* Reference table rows (tectra/feed/refs.py): TICK rows indexed by instrument id, each
 * guarded by a seqlock word (odd while a write is in progress). One writer per table; any
 * number of readers in any process. Ticks with an id >= n_rows are skipped; returns rows
 * written. */
#define BK_REF_ROW_WORDS 16u /* a TICK row is 128 bytes */
int64_t bk_ref_write(uint64_t *gens, uint64_t *rows, uint64_t n_rows, const void *ticks,
                     uint64_t n);
/* 1 = copied a consistent row, 0 = never written, -EAGAIN = still torn after max_spins
 * (a writer died mid-write), -EINVAL = index out of range. */
int bk_ref_read(const uint64_t *gens, const uint64_t *rows, uint64_t n_rows, uint64_t index,
                void *out, uint32_t max_spins);

#endif /* TECTRA_BOOK_H */
