/*
 * Tectra pre-trade risk engine: every rule of the order path evaluated in one C call per batch
 * of ORDER_REQUEST records, writing one RISK_VERDICT per order; execution reports applied in
 * one call per batch of EXECUTION_REPORT records.
 *
 * This code owns no memory. Two kinds of arrays, all numpy buffers owned by Python
 * (tectra/risk/engine.py, tectra/risk/limits.py), are passed in by address:
 *
 *   - limits (rk_limits_t): an immutable compiled snapshot of one limits version. Read only.
 *     Python swaps the snapshot between calls, so one batch sees exactly one version.
 *   - state (rk_state_t): per-account exposure, per (account, strategy, instrument) positions,
 *     the open-order table with its hash index, token buckets, halt flags, counters and meta
 *     words. Mutated here only, snapshot-able as plain arrays.
 *
 * Nothing here reads a clock or allocates: time is the `now_ns` argument, so the same state,
 * limits, references and orders give bit-identical verdicts and state. Decision latency is
 * measured by the Python wrapper around the call and stamped with rk_stamp_decision().
 * Functions return >= 0 on success and -errno on failure. docs/risk.md describes the rules.
 *
 * Record structs mirror tectra/schema.py (ORDER_REQUEST, RISK_VERDICT, EXECUTION_REPORT);
 * sizes and offsets are checked with _Static_assert in risk.c and in Python against the
 * numpy dtypes at import, so a schema change cannot silently desynchronise them.
 */
#ifndef TECTRA_RISK_H
#define TECTRA_RISK_H

#include <stdint.h>

#define RK_LAYOUT_VERSION 1u

/* Rules in priority order; the value is RISK_VERDICT.rule_id (0: no rule decided). The first
 * enforced rule that fails gives the verdict's reason. VALIDATE, INSTRUMENT, HALT and
 * CAPACITY are structural and always enforced; the others take a mode. */
#define RK_RULE_NONE 0u
#define RK_RULE_VALIDATE 1u
#define RK_RULE_INSTRUMENT 2u
#define RK_RULE_HALT 3u
#define RK_RULE_RESTRICTED 4u
#define RK_RULE_PRICE_BAND 5u
#define RK_RULE_MAX_QTY 6u
#define RK_RULE_MAX_NOTIONAL 7u
#define RK_RULE_CREDIT 8u
#define RK_RULE_POSITION 9u
#define RK_RULE_SELF_MATCH 10u
#define RK_RULE_THROTTLE_SESSION 11u
#define RK_RULE_THROTTLE_VENUE 12u
#define RK_RULE_CAPACITY 13u
#define RK_NUM_RULES 14u /* rows of the per-rule arrays (row 0 unused) */

/* Rule modes as stored in the mode tables. INHERIT only appears in override tables. */
#define RK_MODE_INHERIT 0u
#define RK_MODE_ENFORCE 1u
#define RK_MODE_DRY_RUN 2u
#define RK_MODE_DISABLED 3u

/* Per-rule counter columns (counters is RK_NUM_RULES x RK_CTR_COLS int64). */
#define RK_CTR_EVALUATED 0u /* rule ran (mode not DISABLED, order reached it) */
#define RK_CTR_HITS 1u      /* its condition fired (denies + dry-run hits) */
#define RK_CTR_DENIES 2u    /* it rejected the order */
#define RK_CTR_DRY_RUN 3u   /* it fired in dry-run mode; the order was not rejected by it */
#define RK_CTR_COLS 4u

/* Meta words (int64[RK_META_WORDS]): layout, cursors and engine-wide counters. */
#define RK_M_LAYOUT 0u           /* RK_LAYOUT_VERSION */
#define RK_M_VERDICT_SEQ 1u      /* header seq of the last verdict written */
#define RK_M_FREE_HEAD 2u        /* first free order slot, -1 when the table is full */
#define RK_M_LIVE_ORDERS 3u      /* order table entries in use */
#define RK_M_POSITIONS 4u        /* position table keys in use */
#define RK_M_ORDERS 5u           /* requests judged */
#define RK_M_PASSED 6u           /* verdict PASS (including dry-run passes) */
#define RK_M_REJECTED 7u         /* verdict REJECT */
#define RK_M_DRY_RUN_PASSED 8u   /* PASS with dry_run = 1 */
#define RK_M_REPORTS 9u          /* execution reports seen */
#define RK_M_REPORTS_APPLIED 10u /* reports that changed state */
#define RK_M_REPORTS_UNKNOWN 11u /* reports for an order not in the table */
#define RK_M_REPORTS_DUP 12u     /* fills already counted (cum_qty not beyond the entry's) */
#define RK_M_STATE_ERRORS 13u    /* a report could not be applied (position table full) */
#define RK_M_BATCHES 14u         /* rk_check_batch calls */
#define RK_META_WORDS 16u

/* Codes shared with tectra.schema (Side, OrdType, OrderAction, ExecType, RejectReason,
 * Verdict, RecordFlag). */
#define RK_SIDE_BUY 66u               /* 'B' */
#define RK_SIDE_SELL 83u              /* 'S' */
#define RK_SIDE_SELL_SHORT 84u        /* 'T' */
#define RK_SIDE_SELL_SHORT_EXEMPT 69u /* 'E' */
#define RK_ORD_MARKET 49u             /* '1' */
#define RK_ORD_LIMIT 50u              /* '2' */
#define RK_ORD_STOP 51u               /* '3' */
#define RK_ORD_STOP_LIMIT 52u         /* '4' */
#define RK_ACTION_NEW 1u
#define RK_ACTION_CANCEL 2u
#define RK_ACTION_REPLACE 3u
#define RK_EXEC_DONE_FOR_DAY 51u /* '3' */
#define RK_EXEC_CANCELED 52u     /* '4' */
#define RK_EXEC_REPLACED 53u     /* '5' */
#define RK_EXEC_STOPPED 55u      /* '7' */
#define RK_EXEC_REJECTED 56u     /* '8' */
#define RK_EXEC_EXPIRED 67u      /* 'C' */
#define RK_EXEC_TRADE 70u        /* 'F' */
#define RK_EXEC_TRADE_CANCEL 72u /* 'H' */
#define RK_REASON_NONE 0u
#define RK_REASON_INVALID_SYMBOL 1u
#define RK_REASON_PRICE_BANDS 2u
#define RK_REASON_MAX_SIZE 3u
#define RK_REASON_MAX_NOTIONAL 4u
#define RK_REASON_CREDIT 5u
#define RK_REASON_POSITION 6u
#define RK_REASON_RATE_LIMIT 7u
#define RK_REASON_SELF_MATCH 8u
#define RK_REASON_RESTRICTED 9u
#define RK_REASON_STALE_REFERENCE 10u
#define RK_REASON_HALTED 11u
#define RK_REASON_QUEUE_FULL 12u
#define RK_REASON_UNKNOWN_ORDER 15u
#define RK_REASON_INVALID_ORDER 16u
#define RK_VERDICT_PASS 1u
#define RK_VERDICT_REJECT 2u
#define RK_FLAGS_PROPAGATED 3u /* SYNTHETIC | REPLAY: carried from request to verdict */

#define RK_TYPE_ORDER_REQUEST 0x0020u
#define RK_TYPE_RISK_VERDICT 0x0021u
#define RK_TYPE_EXECUTION_REPORT 0x0022u
#define RK_VERSION_ORDER_REQUEST 1u
#define RK_VERSION_RISK_VERDICT 1u
#define RK_VERSION_EXECUTION_REPORT 1u

/* kill_flags bits passed to rk_check_batch (read by the caller from the kill control block). */
#define RK_KILL_HALTED 1u

/* references: rows of 4 int64 (bid_px, ask_px, last_px, updated_ns); a row whose updated_ns
 * is RK_REF_MISSING has no reference. ref_mode says how rows are found. */
#define RK_REF_COLS 4u
#define RK_REF_MISSING INT64_MIN
#define RK_REF_PER_ORDER 0u     /* row i belongs to order i (n_refs == n) */
#define RK_REF_BY_INSTRUMENT 1u /* row k belongs to instrument id k (k < n_refs) */

#define RK_ALL_STRATEGIES (-1) /* position key strategy of the per (account, instrument) row */
#define RK_NO_SLOT (-1)
#define RK_MAX_STRATEGY_ID 0xFFFFFFFEu /* 0xFFFFFFFF is reserved */
#define RK_TOKEN_SCALE 1000000000ll    /* token buckets count nano-tokens */
#define RK_MAX_RATE 1000000000ll       /* rate_per_s and burst upper bound (no overflow) */

/* Order table entry status. */
#define RK_ORD_FREE 0
#define RK_ORD_LIVE 1
#define RK_ORD_PENDING 2 /* the new half of a replace the venue has not confirmed yet */

/* ---- records (mirrors of tectra.schema layouts) ---------------------------------------- */

typedef struct rk_order_request {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ns;
    uint64_t order_id;
    uint64_t orig_order_id;
    int64_t price;
    int64_t qty;
    uint32_t instrument_id;
    uint32_t account_id;
    uint32_t strategy_id;
    uint32_t session_id;
    uint32_t venue_id;
    uint8_t action;
    uint8_t side;
    uint8_t ord_type;
    uint8_t time_in_force;
    char symbol[8];
    char cl_ord_id[20];
    char orig_cl_ord_id[20];
    char account[16];
    int64_t transact_ns;
    uint8_t _pad152[40];
} rk_order_request_t;

typedef struct rk_risk_verdict {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ns;
    uint64_t order_id;
    uint64_t request_seq;
    int64_t decision_ns;
    uint32_t account_id;
    uint32_t instrument_id;
    uint8_t verdict;
    uint8_t dry_run;
    uint16_t reason_code;
    uint16_t rule_id;
    uint8_t _pad62[2];
} rk_risk_verdict_t;

typedef struct rk_execution_report {
    uint16_t type_id;
    uint16_t version;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ns;
    uint64_t order_id;
    uint64_t venue_order_id;
    uint64_t exec_id;
    int64_t price;
    int64_t order_qty;
    int64_t last_px;
    int64_t last_qty;
    int64_t cum_qty;
    int64_t leaves_qty;
    int64_t avg_px;
    uint32_t instrument_id;
    uint32_t account_id;
    uint32_t strategy_id;
    uint32_t session_id;
    uint32_t venue_id;
    uint8_t exec_type;
    uint8_t ord_status;
    uint8_t side;
    uint8_t _pad127[1];
    uint16_t reject_reason;
    uint8_t _pad130[6];
    char symbol[8];
    char order_token[14];
    uint8_t _pad158[2];
    char cl_ord_id[20];
    char orig_cl_ord_id[20];
    int64_t transact_ns;
    uint8_t _pad208[48];
} rk_execution_report_t;

/* ---- limits (one compiled version; rows are int64 so Python sees 2-D arrays) ------------- */

typedef struct rk_instrument_limits {
    int64_t known;          /* 1: configured; 0: unknown id -> INVALID_SYMBOL */
    int64_t symbol;         /* the 8 space-padded symbol bytes, as stored in records */
    int64_t tick_size;      /* price units per tick (band_ticks) */
    int64_t max_qty;        /* MAX_QTY */
    int64_t max_notional;   /* MAX_NOTIONAL: price x qty, 1e-4 currency units */
    int64_t band_bps;       /* PRICE_BAND: allowed distance from the reference, basis points */
    int64_t band_ticks;     /* PRICE_BAND: allowed distance in ticks (the wider band wins) */
    int64_t max_ref_age_ns; /* PRICE_BAND: older references are stale */
    int64_t restricted;     /* RESTRICTED: 1 when on the restricted list */
} rk_instrument_limits_t;

typedef struct rk_account_limits {
    int64_t credit_limit;          /* CREDIT: open + executed notional cap */
    int64_t max_position;          /* POSITION: per (account, instrument), worst case */
    int64_t max_strategy_position; /* POSITION: per (account, strategy, instrument) */
    int64_t max_qty;               /* account cap on MAX_QTY, 0: none */
    int64_t max_notional;          /* account cap on MAX_NOTIONAL, 0: none */
} rk_account_limits_t;

typedef struct rk_throttle_limits {
    int64_t rate_per_s; /* tokens added per second */
    int64_t burst;      /* bucket capacity, tokens */
} rk_throttle_limits_t;

typedef struct rk_limits {
    int64_t version;
    const rk_instrument_limits_t *instruments; /* indexed by instrument id */
    uint64_t n_instruments;
    const rk_account_limits_t *accounts; /* indexed by account id; beyond: account_default */
    uint64_t n_accounts;
    const rk_account_limits_t *account_default;
    const rk_throttle_limits_t *sessions; /* indexed by session id; beyond: session_default */
    uint64_t n_sessions;
    const rk_throttle_limits_t *session_default;
    const rk_throttle_limits_t *venues; /* indexed by venue id; beyond: venue_default */
    uint64_t n_venues;
    const rk_throttle_limits_t *venue_default;
    const uint8_t *modes_default;    /* [RK_NUM_RULES] */
    const uint8_t *modes_venue;      /* [n_venues][RK_NUM_RULES], RK_MODE_INHERIT = no override */
    const uint8_t *modes_instrument; /* [n_instruments][RK_NUM_RULES] */
} rk_limits_t;

/* ---- state ------------------------------------------------------------------------------ */

typedef struct rk_account_state {
    int64_t open_notional;     /* sum of open_notional of this account's order entries */
    int64_t executed_notional; /* gross traded value, sum of last_px x last_qty */
    int64_t open_orders;       /* order entries of this account */
    int64_t fills;             /* fills applied */
} rk_account_state_t;

/* One key of the position table: (account, strategy, instrument), or the aggregate row
 * (account, RK_ALL_STRATEGIES, instrument) that also holds the self-match index. */
typedef struct rk_position {
    int64_t used; /* 1: key set (keys are never removed: positions last the day) */
    int64_t account;
    int64_t strategy;
    int64_t instrument;
    int64_t position;  /* signed filled quantity: buys +, sells - */
    int64_t open_buy;  /* open buy quantity counted against the limit */
    int64_t open_sell; /* open sell quantity counted against the limit */
    int64_t n_buy;     /* aggregate rows: resting buy entries in the list */
    int64_t n_sell;
    int64_t best_buy;  /* highest self-match price among resting buys */
    int64_t best_sell; /* lowest self-match price among resting sells */
    int64_t head_buy;  /* first order slot of the buy list, RK_NO_SLOT when empty */
    int64_t head_sell;
    int64_t reserved[3];
} rk_position_t;

/* One open order. open_notional and open_qty are exactly what this entry adds to its
 * account's open notional and to its positions' open buy/sell: releasing an entry subtracts
 * them, so exposure can never leak or be released twice. */
typedef struct rk_order {
    int64_t order_id; /* 0: free slot */
    int64_t status;   /* RK_ORD_FREE / RK_ORD_LIVE / RK_ORD_PENDING */
    int64_t account;
    int64_t strategy;
    int64_t instrument;
    int64_t side;          /* RK_SIDE_BUY or RK_SIDE_SELL (short sells normalised to sell) */
    int64_t val_px;        /* valuation price: the limit, or the reference for market orders */
    int64_t sm_px;         /* self-match price: the limit; market buy INT64_MAX, sell INT64_MIN */
    int64_t order_qty;     /* total quantity asked for */
    int64_t leaves;        /* quantity still open at the venue (intended, for PENDING) */
    int64_t cum;           /* filled quantity */
    int64_t open_notional; /* counted in the account's open notional */
    int64_t open_qty;      /* counted in the positions' open buy/sell */
    int64_t link;  /* LIVE: slot of its pending replacement; PENDING: slot of the original */
    int64_t prev;  /* self-match list of (account, instrument, side) */
    int64_t next;  /* self-match list; free list when FREE */
    int64_t agg_slot;   /* position slot of (account, all strategies, instrument) */
    int64_t strat_slot; /* position slot of (account, strategy, instrument) */
    int64_t reserved[2];
} rk_order_t;

typedef struct rk_bucket {
    int64_t tokens; /* nano-tokens (RK_TOKEN_SCALE per order) */
    int64_t last_ns;
    int64_t primed; /* 0 until first use: a new bucket starts full */
    int64_t reserved;
} rk_bucket_t;

typedef struct rk_state {
    rk_account_state_t *accounts; /* indexed by account id */
    uint64_t n_accounts;
    rk_position_t *positions; /* open addressing, linear probing, power of two */
    uint64_t position_capacity;
    rk_order_t *orders; /* slab; slots never move */
    uint64_t max_orders;
    int64_t *order_index; /* order_id hash -> slot, RK_NO_SLOT empty; power of two */
    uint64_t index_capacity;
    rk_bucket_t *session_buckets; /* indexed by session id */
    uint64_t n_sessions;
    rk_bucket_t *venue_buckets; /* indexed by venue id */
    uint64_t n_venues;
    uint8_t *halt_instruments; /* [n_instruments] 1: halted */
    uint64_t n_instruments;
    uint8_t *halt_venues;   /* [n_venues] */
    uint8_t *halt_accounts; /* [n_accounts] */
    int64_t *counters;      /* [RK_NUM_RULES][RK_CTR_COLS] */
    int64_t *meta;          /* [RK_META_WORDS] */
} rk_state_t;

/* Format fresh state arrays (zeroed by the caller): empty index and positions, free list,
 * meta words. -EINVAL on bad sizes (capacities not powers of two, index < 2 x orders). */
int rk_state_init(rk_state_t *st);

/* Check every invariant of a state (after a load or in tests): 0, or -EINVAL with a code in
 * *where saying which check failed (see risk.c). O(size of the tables). */
int rk_state_check(const rk_state_t *st, int64_t *where);

/* Judge n orders in order (each sees the state left by the previous ones); write n
 * verdicts. Returns n, or -EINVAL on bad arguments (nothing written). */
int64_t rk_check_batch(rk_state_t *st, const rk_limits_t *lim, const rk_order_request_t *orders,
                       uint64_t n, const int64_t *refs, uint64_t n_refs, uint32_t ref_mode,
                       int64_t now_ns, uint32_t kill_flags, rk_risk_verdict_t *out);

/* Apply n execution reports (fills, cancels, rejects, expiries, replaces, busts). Returns the
 * number that changed state, or -EINVAL. */
int64_t rk_apply_reports(rk_state_t *st, const rk_execution_report_t *reports, uint64_t n);

/* Write decision_ns into n verdicts (the wrapper measures it around rk_check_batch). */
void rk_stamp_decision(rk_risk_verdict_t *out, uint64_t n, int64_t decision_ns);

/* The reference price a row gives: mid when both sides are set, else last; 0 if none. */
int64_t rk_reference_price(int64_t bid_px, int64_t ask_px, int64_t last_px);

#endif /* TECTRA_RISK_H */
