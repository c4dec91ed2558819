"""cffi API-mode (out-of-line) builder for the pre-trade risk engine: csrc/risk.c -> tectra._risk.

setup.py compiles every `csrc/*_build.py:ffibuilder`, so any install of the package builds it.
Running this file builds `tectra/_risk*.so` in place for development.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cffi_shim import build_in_place, shim_builder  # sibling module, not a package

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# The Python-visible part of csrc/risk.h. Record structs end in `...;` so cffi takes their real
# layout (padding included) from the compiler; tectra/risk/engine.py checks every offset against
# tectra.schema and its own state dtypes at import.
CDEF = """
#define RK_LAYOUT_VERSION ...
#define RK_RULE_NONE ...
#define RK_RULE_VALIDATE ...
#define RK_RULE_INSTRUMENT ...
#define RK_RULE_HALT ...
#define RK_RULE_RESTRICTED ...
#define RK_RULE_PRICE_BAND ...
#define RK_RULE_MAX_QTY ...
#define RK_RULE_MAX_NOTIONAL ...
#define RK_RULE_CREDIT ...
#define RK_RULE_POSITION ...
#define RK_RULE_SELF_MATCH ...
#define RK_RULE_THROTTLE_SESSION ...
#define RK_RULE_THROTTLE_VENUE ...
#define RK_RULE_CAPACITY ...
#define RK_NUM_RULES ...
#define RK_MODE_INHERIT ...
#define RK_MODE_ENFORCE ...
#define RK_MODE_DRY_RUN ...
#define RK_MODE_DISABLED ...
#define RK_CTR_EVALUATED ...
#define RK_CTR_HITS ...
#define RK_CTR_DENIES ...
#define RK_CTR_DRY_RUN ...
#define RK_CTR_COLS ...
#define RK_M_LAYOUT ...
#define RK_M_VERDICT_SEQ ...
#define RK_M_FREE_HEAD ...
#define RK_M_LIVE_ORDERS ...
#define RK_M_POSITIONS ...
#define RK_M_ORDERS ...
#define RK_M_PASSED ...
#define RK_M_REJECTED ...
#define RK_M_DRY_RUN_PASSED ...
#define RK_M_REPORTS ...
#define RK_M_REPORTS_APPLIED ...
#define RK_M_REPORTS_UNKNOWN ...
#define RK_M_REPORTS_DUP ...
#define RK_M_STATE_ERRORS ...
#define RK_M_BATCHES ...
#define RK_META_WORDS ...
#define RK_KILL_HALTED ...
#define RK_REF_COLS ...
#define RK_REF_MISSING ...
#define RK_REF_PER_ORDER ...
#define RK_REF_BY_INSTRUMENT ...
#define RK_ALL_STRATEGIES ...
#define RK_NO_SLOT ...
#define RK_MAX_STRATEGY_ID ...
#define RK_TOKEN_SCALE ...
#define RK_MAX_RATE ...
#define RK_ORD_FREE ...
#define RK_ORD_LIVE ...
#define RK_ORD_PENDING ...

typedef struct rk_order_request {
    uint16_t type_id; uint16_t version; uint32_t flags; uint64_t seq; int64_t ts_ns;
    uint64_t order_id; uint64_t orig_order_id; int64_t price; int64_t qty;
    uint32_t instrument_id; uint32_t account_id; uint32_t strategy_id; uint32_t session_id;
    uint32_t venue_id; uint8_t action; uint8_t side; uint8_t ord_type; uint8_t time_in_force;
    char symbol[8]; char cl_ord_id[20]; char orig_cl_ord_id[20]; char account[16];
    int64_t transact_ns;
    ...;
} rk_order_request_t;
typedef struct rk_risk_verdict {
    uint16_t type_id; uint16_t version; uint32_t flags; uint64_t seq; int64_t ts_ns;
    uint64_t order_id; uint64_t request_seq; int64_t decision_ns; uint32_t account_id;
    uint32_t instrument_id; uint8_t verdict; uint8_t dry_run; uint16_t reason_code;
    uint16_t rule_id;
    ...;
} rk_risk_verdict_t;
typedef struct rk_execution_report {
    uint16_t type_id; uint16_t version; uint32_t flags; uint64_t seq; int64_t ts_ns;
    uint64_t order_id; uint64_t venue_order_id; uint64_t exec_id; int64_t price;
    int64_t order_qty; int64_t last_px; int64_t last_qty; int64_t cum_qty; int64_t leaves_qty;
    int64_t avg_px; uint32_t instrument_id; uint32_t account_id; uint32_t strategy_id;
    uint32_t session_id; uint32_t venue_id; uint8_t exec_type; uint8_t ord_status; uint8_t side;
    uint16_t reject_reason; char symbol[8]; char order_token[14]; char cl_ord_id[20];
    char orig_cl_ord_id[20]; int64_t transact_ns;
    ...;
} rk_execution_report_t;

typedef struct rk_instrument_limits {
    int64_t known; int64_t symbol; int64_t tick_size; int64_t max_qty; int64_t max_notional;
    int64_t band_bps; int64_t band_ticks; int64_t max_ref_age_ns; int64_t restricted;
} rk_instrument_limits_t;
typedef struct rk_account_limits {
    int64_t credit_limit; int64_t max_position; int64_t max_strategy_position;
    int64_t max_qty; int64_t max_notional;
} rk_account_limits_t;
typedef struct rk_throttle_limits { int64_t rate_per_s; int64_t burst; } rk_throttle_limits_t;

typedef struct rk_limits {
    int64_t version;
    const rk_instrument_limits_t *instruments;
    uint64_t n_instruments;
    const rk_account_limits_t *accounts;
    uint64_t n_accounts;
    const rk_account_limits_t *account_default;
    const rk_throttle_limits_t *sessions;
    uint64_t n_sessions;
    const rk_throttle_limits_t *session_default;
    const rk_throttle_limits_t *venues;
    uint64_t n_venues;
    const rk_throttle_limits_t *venue_default;
    const uint8_t *modes_default;
    const uint8_t *modes_venue;
    const uint8_t *modes_instrument;
} rk_limits_t;

typedef struct rk_account_state {
    int64_t open_notional; int64_t executed_notional; int64_t open_orders; int64_t fills;
} rk_account_state_t;
typedef struct rk_position {
    int64_t used; int64_t account; int64_t strategy; int64_t instrument; int64_t position;
    int64_t open_buy; int64_t open_sell; int64_t n_buy; int64_t n_sell; int64_t best_buy;
    int64_t best_sell; int64_t head_buy; int64_t head_sell; int64_t reserved[3];
} rk_position_t;
typedef struct rk_order {
    int64_t order_id; int64_t status; int64_t account; int64_t strategy; int64_t instrument;
    int64_t side; int64_t val_px; int64_t sm_px; int64_t order_qty; int64_t leaves; int64_t cum;
    int64_t open_notional; int64_t open_qty; int64_t link; int64_t prev; int64_t next;
    int64_t agg_slot; int64_t strat_slot; int64_t reserved[2];
} rk_order_t;
typedef struct rk_bucket {
    int64_t tokens; int64_t last_ns; int64_t primed; int64_t reserved;
} rk_bucket_t;

typedef struct rk_state {
    rk_account_state_t *accounts;
    uint64_t n_accounts;
    rk_position_t *positions;
    uint64_t position_capacity;
    rk_order_t *orders;
    uint64_t max_orders;
    int64_t *order_index;
    uint64_t index_capacity;
    rk_bucket_t *session_buckets;
    uint64_t n_sessions;
    rk_bucket_t *venue_buckets;
    uint64_t n_venues;
    uint8_t *halt_instruments;
    uint64_t n_instruments;
    uint8_t *halt_venues;
    uint8_t *halt_accounts;
    int64_t *counters;
    int64_t *meta;
} rk_state_t;

int rk_state_init(rk_state_t *st);
int rk_state_check(const rk_state_t *st, int64_t *where);
int64_t rk_check_batch(rk_state_t *st, const rk_limits_t *lim, const rk_order_request_t *orders,
                       uint64_t n, const int64_t *refs, uint64_t n_refs, uint32_t ref_mode,
                       int64_t now_ns, uint32_t kill_flags, rk_risk_verdict_t *out);
int64_t rk_apply_reports(rk_state_t *st, const rk_execution_report_t *reports, uint64_t n);
void rk_stamp_decision(rk_risk_verdict_t *out, uint64_t n, int64_t decision_ns);
int64_t rk_reference_price(int64_t bid_px, int64_t ask_px, int64_t last_px);
"""


def make_builder(*, paths_relative_to_repo: bool) -> cffi.FFI:
    return shim_builder(
        "tectra._risk",
        CDEF,
        source="risk.c",
        header="risk.h",
        relative=paths_relative_to_repo,
    )


ffibuilder = make_builder(paths_relative_to_repo=True)

if __name__ == "__main__":
    print(build_in_place(make_builder))
