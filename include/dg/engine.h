/*
 * engine.h -- the exact hierarchical rebalancing engine (pure C: no HTTP,
 * Redis or DuckDB in here, so the manager, replicas, tests and benchmarks all
 * use it as is).
 *
 * One dg_etable_t holds one user table in memory: a forest of rows keyed by
 * a 64-bit id, children kept in id order, `nnum` number columns stored as
 * scaled int64_t (DECIMAL(18,scale), scale 0..6) and `ntext` text columns.
 * For every row with children and every number column
 *
 *         value(row) = SUM value(child)            exactly, always.
 *
 * Every operation either succeeds completely or fails with a negative DG_E*
 * code and changes nothing: neither the table nor the part of the caller's
 * change buffer it would have appended (every failure is found while the
 * operation is planned, before the first write). The design essay -- the
 * rounding rule, holds, recovery -- is at the top of src/engine/engine.c and
 * in docs/engine.md. The short version:
 *
 * ROUNDING (largest remainder, ties to the lower id). A spread gives child i
 * the exact rational quota q_i (sum q_i = the integer target T, in units of
 * the column's last digit). If T >= 0: every child gets floor(q_i), then the
 * k = T - sum floor(q_i) children with the largest fractional parts
 * q_i - floor(q_i) get one more unit; equal fractions go to the lower id. If
 * T < 0 the rule is mirrored: round -q_i for target -T as above and negate,
 * so a spread of -10.00 is exactly the negation of a spread of 10.00
 * (-3.34, -3.33, -3.33). Every child ends within one unit of its quota and
 * the children sum to the parent to the last digit.
 *
 * HOLDS. A held cell keeps its value. A held cell cannot be written directly
 * (DG_ECONFLICT). Spreading skips held children and children whose whole
 * subtree is pinned by holds ("rigid"); the others absorb the change, at
 * every level. A write below a held ancestor H keeps H's value: the delta is
 * offset, proportionally, among the unheld siblings of every row on the path
 * from the written row up to (not including) H. When nothing can absorb a
 * change: DG_ECONFLICT. Structural operations (insert, delete, move) are
 * not bound by holds: they re-aggregate the ancestors, held or not.
 *
 * Threading: a table is not thread-safe; one thread (the manager) owns it.
 * Different tables are independent.
 */
#ifndef DG_ENGINE_H
#define DG_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dg/common.h"
#include "dg/decimal.h"

/* ---- limits and constants ---------------------------------------------- */

/* "No row": the parent id of a root, the `after` cursor that starts at the
 * beginning. It is therefore not a valid row id (DG_EINVAL). */
#define DG_ROW_NONE INT64_MIN

/* Number and text columns per table. 4096 is far beyond any planning grid,
 * and bounds the per-row size (8 bytes a column) and the column index
 * carried in change records. */
#define DG_ENGINE_MAX_COLUMNS 4096

/* Rows per table: slots are uint32_t and two are reserved (the sentinel
 * super-root and the "none" marker). */
#define DG_ENGINE_MAX_ROWS (UINT32_MAX - 2u)

/* Longest text cell in bytes. Request bodies are capped at 1 MiB by the API
 * already; 16 MiB leaves room for bulk loads without letting one cell take
 * the process down. */
/* Held cells in one table: rows count the holds of their subtree in 28
 * bits (to keep a row's header at 32 bytes). A quarter billion holds would
 * take 4 GB of hold set, far beyond any planning grid. */
#define DG_ENGINE_MAX_HOLDS ((1u << 28) - 1u)
#define DG_ENGINE_MAX_TEXT (16u * 1024u * 1024u)

/* DG_SPREAD_PERCENT values are percentages scaled by 10^6: 5 % is 5000000,
 * -12.5 % is -12500000 (dg_decimal_parse(s, len, 6, &p) converts the
 * client's decimal string). A factor is then (10^8 + p) / 10^8. */
#define DG_PERCENT_SCALE INT64_C(1000000)

/* ---- change records ---------------------------------------------------- */

/** What a change record describes. */
typedef enum dg_change_kind_e {
  DG_CHANGE_NUMBER = 1,     /* a number cell: old_value -> new_value (scaled) */
  DG_CHANGE_TEXT = 2,       /* a text cell: read both sides with dg_changes_text() */
  DG_CHANGE_ROW_INSERT = 3, /* row inserted; new_value = parent id (DG_ROW_NONE: root) */
  DG_CHANGE_ROW_DELETE = 4, /* row deleted; old_value = its parent id */
  DG_CHANGE_ROW_MOVE = 5,   /* row moved; old_value -> new_value are parent ids */
  DG_CHANGE_HOLD = 6,       /* number cell hold: old_value -> new_value are 0/1 */
} dg_change_kind_t;

/** One change. 40 bytes; the buffer holds them contiguously. */
typedef struct dg_change_s {
  int64_t row_id;     /* the row the change is about */
  int64_t old_value;  /* see dg_change_kind_t; TEXT: opaque handle */
  int64_t new_value;  /* see dg_change_kind_t; TEXT: opaque handle */
  uint32_t col;       /* NUMBER, HOLD: number column; TEXT: text column; else 0 */
  uint32_t table_tag; /* dg_etable_opts_t.tag of the table that made it */
  uint8_t kind;       /* a dg_change_kind_t */
  uint8_t _reserved[3];
  uint32_t _slot;     /* private: the engine's row slot */
} dg_change_t;

/**
 * A caller-owned, reusable buffer of change records (and the text bytes they
 * refer to). Operations append to it; nothing is allocated per operation once
 * it has grown to the working size. Not thread-safe.
 */
typedef struct dg_changes_s dg_changes_t;

/** Creates an empty buffer; free it with dg_changes_destroy(). */
dg_changes_t *dg_changes_create(void);

/** Frees the buffer (NULL is fine). */
void dg_changes_destroy(dg_changes_t *c);

/** Empties the buffer, keeping its memory for reuse. */
void dg_changes_clear(dg_changes_t *c);

/** Number of records in the buffer. */
size_t dg_changes_count(const dg_changes_t *c);

/** The records, contiguous, count dg_changes_count(). Valid until the next
 *  append, truncate or clear. */
const dg_change_t *dg_changes_items(const dg_changes_t *c);

/** Drops the records from index n on (no-op when n >= count). Lets the
 *  manager discard what a rolled-back request appended. */
void dg_changes_truncate(dg_changes_t *c, size_t n);

/**
 * The old (new_side false) or new (new_side true) text of a DG_CHANGE_TEXT
 * record of this buffer. *s is NULL for a null cell, else it points at *len
 * bytes (not NUL-terminated) valid until the buffer is cleared or destroyed.
 * Failure: DG_EINVAL if the record is not a TEXT record.
 */
int dg_changes_text(const dg_changes_t *c, const dg_change_t *ch, bool new_side,
                    const char **s, size_t *len);

/* ---- tables ------------------------------------------------------------- */

/** A text cell: ptr == NULL is null; otherwise len bytes (any bytes). */
typedef struct dg_etext_s {
  const char *ptr;
  size_t len;
} dg_etext_t;

typedef struct dg_etable_s dg_etable_t;

/* dg_etable_opts_t.flags: run dg_etable_verify() after every operation and
 * abort (DG_ASSERT) if it fails. The same happens for every table when the
 * engine is compiled without NDEBUG or with -DDG_ENGINE_CHECK. */
#define DG_ETABLE_CHECK 1u

/** How to create a table. */
typedef struct dg_etable_opts_s {
  const uint8_t *scales; /* nnum scales, each 0..6 */
  uint32_t nnum;         /* number columns, 0..DG_ENGINE_MAX_COLUMNS */
  uint32_t ntext;        /* text columns, 0..DG_ENGINE_MAX_COLUMNS */
  uint32_t tag;          /* copied into every change record (e.g. a table index) */
  uint32_t flags;        /* DG_ETABLE_CHECK */
} dg_etable_opts_t;

/**
 * Creates an empty table; free it with dg_etable_destroy().
 * Failure: DG_EINVAL (NULL opts or out, a scale outside 0..6, too many
 * columns, nnum > 0 with NULL scales).
 */
int dg_etable_create(const dg_etable_opts_t *opts, dg_etable_t **out);

/** Frees the table and everything in it (NULL is fine). */
void dg_etable_destroy(dg_etable_t *t);

/** Number of number columns. */
uint32_t dg_etable_num_columns(const dg_etable_t *t);
/** Number of text columns. */
uint32_t dg_etable_text_columns(const dg_etable_t *t);
/** Scale of number column col, or -1 when col is out of range. */
int dg_etable_scale(const dg_etable_t *t, uint32_t col);
/** Number of rows. */
size_t dg_etable_row_count(const dg_etable_t *t);

/** Bytes the table holds on the heap (rows, index, children arrays, text,
 *  holds, journal, scratch). O(rows) -- for benchmarks and /metrics. */
size_t dg_etable_memory(const dg_etable_t *t);

/* ---- bulk load ----------------------------------------------------------- */
/*
 * Loading 10M cells from DuckDB: dg_etable_load_begin on an empty table,
 * dg_etable_load_row for every row in any order (parents may come after
 * their children), then dg_etable_load_finish, which indexes, links, sorts,
 * checks for cycles and computes (or checks) every parent's values in O(n)
 * plus one sort per unsorted child list. No other operation is allowed while
 * loading (DG_EINVAL).
 */

/** Starts a bulk load, reserving room for expected_rows (a hint, 0 is fine).
 *  Failure: DG_EINVAL (table not empty, already loading, or a savepoint is
 *  open); DG_ENOMEM (the reservation could not be allocated). */
int dg_etable_load_begin(dg_etable_t *t, size_t expected_rows);

/**
 * Appends one row. nums: nnum scaled values (NULL: all 0); texts: ntext
 * cells (NULL: all null). Nothing is checked against other rows until
 * dg_etable_load_finish.
 * Failure: DG_EINVAL (not loading, id == DG_ROW_NONE, text too long,
 * DG_ENGINE_MAX_ROWS reached); DG_EOVERFLOW (|value| >= DG_DECIMAL_LIMIT).
 */
int dg_etable_load_row(dg_etable_t *t, int64_t id, int64_t parent_id,
                       const int64_t *nums, const dg_etext_t *texts);

/* dg_etable_load_finish flags: parents' number cells are recomputed from
 * their leaves (the loaded parent values are ignored). Without it they are
 * checked, and a mismatch fails the load with DG_EINTERNAL. */
#define DG_ELOAD_RECOMPUTE 1u

/**
 * Ends the bulk load: builds the id index, links children (sorted by id),
 * rejects cycles, then recomputes or checks every parent. On failure every
 * loaded row is dropped and the table is empty again (ready for another
 * load_begin or destroy).
 * Failure: DG_EINVAL (not loading); DG_EEXIST (duplicate id);
 * DG_ENOTFOUND (a parent id that is no row); DG_ECONFLICT (a cycle);
 * DG_EOVERFLOW (a recomputed parent out of range); DG_EINTERNAL (without
 * DG_ELOAD_RECOMPUTE: a parent that is not the sum of its children).
 */
int dg_etable_load_finish(dg_etable_t *t, unsigned flags);

/* ---- operations ---------------------------------------------------------- */
/*
 * Every operation takes `out`, the change buffer to append to (NULL: don't
 * report; an internal buffer is used). On success it appends the changes in
 * the order documented per operation; within one operation every cell
 * appears at most once (its first old and last new value). On failure it
 * appends nothing and the table is exactly as before.
 *
 * Common failures: DG_EINVAL (a column index out of range, a bad argument,
 * the table is loading); DG_ENOTFOUND (no row with that id).
 */

/**
 * Inserts row id under parent_id (DG_ROW_NONE: a root). nums: nnum scaled
 * values (NULL: all 0, as an omitted number cell is 0); texts: ntext cells
 * (NULL: all null). Ancestors roll up; a parent that was a leaf takes the
 * sum of its children, i.e. the new row's values (its own values give way).
 * Holds do not stop this.
 * Changes: ROW_INSERT(id, new = parent id); NUMBER (0 -> v) for each nonzero
 * value and TEXT for each non-null text of the new row; then NUMBER for each
 * changed ancestor cell, bottom-up (per row, columns in index order).
 * Failure: DG_EINVAL (id == DG_ROW_NONE, text too long, table full);
 * DG_EEXIST (id exists); DG_ENOTFOUND (no such parent); DG_EOVERFLOW (a
 * value or an ancestor out of range).
 */
int dg_etable_insert(dg_etable_t *t, int64_t id, int64_t parent_id, const int64_t *nums,
                     const dg_etext_t *texts, dg_changes_t *out);

/**
 * Deletes row id, and with cascade its whole subtree. Ancestors roll down by
 * the removed amounts (a parent losing its last child keeps what remains,
 * which is then 0). Holds inside the subtree go with it; held ancestors
 * change (holds do not bind structure).
 * Changes: ROW_DELETE (old = parent id) per deleted row, every row after all
 * of its descendants; then NUMBER for each changed ancestor cell, bottom-up.
 * Failure: DG_ECONFLICT (the row has children and cascade is false);
 * DG_EOVERFLOW (an ancestor out of range -- possible only with mixed signs).
 */
int dg_etable_delete(dg_etable_t *t, int64_t id, bool cascade, dg_changes_t *out);

/**
 * Moves row id (with its subtree) under new_parent_id (DG_ROW_NONE: make it
 * a root). The old ancestors lose its values, the new ones gain them; a new
 * parent that was a leaf takes the moved row's values. Same parent: no-op.
 * Changes: ROW_MOVE (old -> new parent id); then NUMBER for each changed
 * cell of the old ancestors bottom-up, then of the new ancestors bottom-up
 * (a common ancestor appears once, in the first list, with its net change).
 * Failure: DG_ENOTFOUND (row or new parent); DG_ECONFLICT (the new parent
 * is the row or one of its descendants: a cycle); DG_EOVERFLOW.
 */
int dg_etable_move(dg_etable_t *t, int64_t id, int64_t new_parent_id, dg_changes_t *out);

/** How a number cell write spreads (see the essay in src/engine/engine.c). */
typedef enum dg_spread_mode_e {
  DG_SPREAD_PROPORTIONAL = 0, /* child_i = new * child_i / SUM; SUM = 0: delta equally */
  DG_SPREAD_EQUAL = 1,        /* every (unheld) child the same share, at every level */
  DG_SPREAD_ADD = 2,          /* value is a delta: new = old + value, then proportional */
  DG_SPREAD_PERCENT = 3,      /* value = percentage * DG_PERCENT_SCALE; new = old * (1 + p/100) */
  DG_SPREAD_REPEAT_LEAVES = 4,/* every (unheld) leaf below takes value */
  DG_SPREAD_BY = 5,           /* proportional to column by_col of the same rows; SUM 0: equal */
} dg_spread_mode_t;

/** Options of dg_etable_set (NULL means proportional, no compare). */
typedef struct dg_eset_s {
  dg_spread_mode_t mode;
  uint32_t by_col;   /* DG_SPREAD_BY: the reference number column */
  bool has_expected; /* compare-and-set: fail unless the cell is `expected` */
  int64_t expected;  /* scaled */
} dg_eset_t;

/**
 * Writes number cell (id, col). On a leaf the cell takes the new value; on a
 * parent the new value is spread down to the leaves by `how->mode`; then the
 * ancestors roll up (or, below a held ancestor, the unheld siblings on the
 * path absorb the delta). `value` is scaled like the column (DG_SPREAD_ADD:
 * a delta; DG_SPREAD_PERCENT: a percentage * DG_PERCENT_SCALE).
 * Changes (NUMBER only): the written cell, then the cells below it in
 * pre-order (each row before its children, children in id order), then the
 * siblings that absorbed an offset below a held ancestor (in id order, each
 * followed by its own subtree in pre-order), then the ancestors bottom-up.
 * Unchanged cells are not listed; a write of the current value (or an ADD
 * of 0) appends nothing, except that EQUAL, BY, PERCENT and REPEAT_LEAVES
 * redistribute below even when the total stays.
 * Failure: DG_EINVAL (bad mode, by_col out of range); DG_ECONFLICT (the
 * cell is held; `expected` differs; the change has nowhere to go because
 * every candidate is held; REPEAT_LEAVES with no unheld leaf);
 * DG_EOVERFLOW (any resulting cell, or an exact intermediate, out of range).
 */
int dg_etable_set(dg_etable_t *t, int64_t id, uint32_t col, int64_t value, const dg_eset_t *how,
                  dg_changes_t *out);

/**
 * Sets number cell (ids[i], col) of n leaves to values[i] at once, then
 * moves each ancestor once by the sum of its leaves' deltas (a revert of a
 * spread: one roll-up per ancestor instead of one per leaf). Same result as
 * dg_etable_set on each leaf in turn when nothing in the column is held.
 * Changes (NUMBER only): the leaves whose value changes, in the order given,
 * then each ancestor whose value changes, in the order first reached.
 * All or nothing. Failure: DG_EINVAL (col out of range, a listed row has
 * children, a row listed twice); DG_ENOTFOUND (ids[i] is no row; *bad = i);
 * DG_ECONFLICT (a cell of the column is held anywhere in the table: use
 * dg_etable_set one leaf at a time); DG_EOVERFLOW (a value, or a sum on the
 * way, out of range). *bad (may be NULL) is the index of the failing row.
 */
int dg_etable_set_leaves(dg_etable_t *t, uint32_t col, const int64_t *ids, const int64_t *values, size_t n,
                         dg_changes_t *out, size_t *bad);

/**
 * Sets text cell (id, col) to s[0..len) (s NULL: null). Same text: no-op.
 * Changes: one TEXT record.
 * Failure: DG_EINVAL (col out of range, len > DG_ENGINE_MAX_TEXT).
 */
int dg_etable_text_set(dg_etable_t *t, int64_t id, uint32_t col, const char *s, size_t len,
                       dg_changes_t *out);

/**
 * Holds (held true) or releases number cell (id, col). Already in that
 * state: no-op. Changes: one HOLD record (0 -> 1 or 1 -> 0).
 * Failure: DG_EINVAL (col out of range, or DG_ENGINE_MAX_HOLDS cells are
 * held already); DG_ENOTFOUND.
 */
int dg_etable_hold(dg_etable_t *t, int64_t id, uint32_t col, bool held, dg_changes_t *out);

/* ---- reading --------------------------------------------------------------- */

/** A row's place in the forest. */
typedef struct dg_erow_s {
  int64_t id;
  int64_t parent_id;  /* DG_ROW_NONE for a root */
  uint32_t nchildren; /* direct children */
} dg_erow_t;

/** Fills *out. Failure: DG_ENOTFOUND. */
int dg_etable_row_get(const dg_etable_t *t, int64_t id, dg_erow_t *out);
/** dg_etable_row_get and dg_etable_numbers_get in one look-up (nums may be
 *  NULL). Failure: DG_ENOTFOUND. */
int dg_etable_row_read(const dg_etable_t *t, int64_t id, dg_erow_t *out, int64_t *nums);

/**
 * A performance hint, for a caller that knows the rows its next operations
 * will touch (the manager walking a batch of requests). A random row costs
 * two dependent cache misses (its index entry, then the row); calling
 * dg_etable_prefetch(t, id, 0) about 16 operations ahead and
 * dg_etable_prefetch(t, id, 1) about 8 ahead overlaps them with useful work
 * (about 2x for random leaf writes on 1M rows). Stage 0 starts loading the
 * index entry, stage 1 the row (it reads the entry, cheap once stage 0 has
 * run). Changes nothing, cannot fail; any id is fine.
 */
void dg_etable_prefetch(const dg_etable_t *t, int64_t id, int stage);

/** Reads one number cell. Failure: DG_ENOTFOUND, DG_EINVAL (col). */
int dg_etable_number_get(const dg_etable_t *t, int64_t id, uint32_t col, int64_t *out);

/** Reads all nnum number cells of a row into out[0..nnum). Failure: DG_ENOTFOUND. */
int dg_etable_numbers_get(const dg_etable_t *t, int64_t id, int64_t *out);

/** Reads one text cell: *s NULL for null, else *len bytes valid until the
 *  cell is next written or the row deleted. Failure: DG_ENOTFOUND, DG_EINVAL. */
int dg_etable_text_get(const dg_etable_t *t, int64_t id, uint32_t col, const char **s,
                       size_t *len);

/**
 * Lists children of parent_id (DG_ROW_NONE: the roots) in id order, starting
 * after id `after` (DG_ROW_NONE: from the first), at most cap ids into ids[];
 * *n is the number written. Page with after = the last id returned.
 * Failure: DG_ENOTFOUND (no such parent).
 */
int dg_etable_children_get(const dg_etable_t *t, int64_t parent_id, int64_t after, int64_t *ids,
                           size_t cap, size_t *n);

/** *out = whether cell (id, col) is held. Failure: DG_ENOTFOUND, DG_EINVAL. */
int dg_etable_is_held(const dg_etable_t *t, int64_t id, uint32_t col, bool *out);

/**
 * Checks every invariant: Σ children = parent for every number column,
 * every value in range, parent/child links, id order, the id index, hold
 * bookkeeping. O(rows * columns). Returns 0, or DG_EINTERNAL (and logs the
 * first violation to stderr).
 */
int dg_etable_verify(const dg_etable_t *t);

/* ---- savepoints --------------------------------------------------------------- */
/*
 * Savepoints nest like SQL's SAVEPOINT / ROLLBACK TO / RELEASE. While at least
 * one is open, every change is journaled (old values, old text, unlinked
 * rows kept aside), so rollback restores exactly the state at the mark:
 * values, text, holds, rows and their order. The manager opens one per
 * batch and one per request inside it.
 */

/** Identifies an open savepoint (its nesting level, 1-based). */
typedef uint32_t dg_emark_t;

/** Opens a savepoint and returns its mark. Failure: none (aborts on OOM);
 *  returns 0 only while loading, which no rollback/release accepts. */
dg_emark_t dg_etable_savepoint(dg_etable_t *t);

/** Undoes everything since savepoint m and closes it and every savepoint
 *  opened after it. Failure: DG_EINVAL (m is not open). */
int dg_etable_rollback(dg_etable_t *t, dg_emark_t m);

/** Closes savepoint m and every savepoint opened after it, keeping the
 *  changes (they still belong to an enclosing savepoint, if any; closing the
 *  outermost frees the journal). Failure: DG_EINVAL (m is not open). */
int dg_etable_release(dg_etable_t *t, dg_emark_t m);

#endif
