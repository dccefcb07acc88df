/*
 * engine.c -- the exact hierarchical rebalancing engine: writes that spread
 * down and roll up, holds, and the structural operations. Storage is in
 * table.c, the savepoint journal in journal.c, rounding in lr.c.
 *
 * ======================================================================
 *  DESIGN
 * ======================================================================
 *
 * 1. The invariant
 * ----------------
 * Number cells are scaled integers ("units": 1 unit = 10^-scale), |v| <
 * 10^18. For every row with children and every number column:
 *
 *        value(row) == Σ value(child)          (exactly, in units)
 *
 * dg_etable_verify() checks it with the structural invariants; tables
 * created with DG_ETABLE_CHECK (and every table in builds without NDEBUG or
 * with -DDG_ENGINE_CHECK) run it after every operation and abort on failure.
 * A leaf's value is free; a parent's value is always derived.
 *
 * 2. No partial change, ever
 * ---------------------------
 * Every operation appends its change records to the caller's buffer while
 * it computes them, with exact __int128 arithmetic, checking every new
 * value (range, holds, CAS). Two disciplines make failure leave nothing:
 *
 *   structure (insert, delete, move, text, hold): plan, then apply. All
 *          checks run before the first write; the records are then applied
 *          (dg__et_apply) and the structure edited. Nothing in apply can
 *          fail (allocation failure aborts, like every small internal
 *          allocation).
 *   values (dg_etable_set): write through. Each cell is written the moment
 *          its record is appended -- a spread over a million leaves touches
 *          each row once instead of twice. The planner never reads a cell it
 *          has already written (children are read before they are recorded,
 *          absorbing siblings are disjoint subtrees, the path rows come
 *          last), so the result equals plan-then-apply. If a later check
 *          fails, the records appended so far hold every old value: they are
 *          written back, newest first, and the buffer is rewound.
 *
 * With a savepoint open, the old values are journaled too (journal.c).
 * Because every cell is computed exactly once per operation, a cell appears
 * at most once in an operation's records (its first old, last new value).
 *
 * 3. Spreading a value over children
 * ----------------------------------
 * Writing parent P to V spreads V over P's children, each child's new value
 * over its own children, and so on to the leaves (pre-order, one explicit
 * stack: no recursion, so any depth works). At one node with target T:
 *
 *        P  (T)
 *        |
 *   +----+-----+-----+-----+
 *   c1   c2(H)  c3    c4    c5           H = held, R = rigid (every path
 *        keeps        (R)                 below it ends in a held cell)
 *
 *   - rigid children (held, or everything below them pinned by holds) keep
 *     their value: T_free = T - Σ rigid;
 *   - the free children share T_free by the mode's quotas q_i (exact
 *     rationals with Σ q_i = T_free):
 *        proportional / add:  q_i = T_free * w_i / W     (w = current values,
 *                             W = Σ free w; W = 0: q_i = w_i + T_free / n,
 *                             i.e. the *delta* spread equally)
 *        equal:               q_i = T_free / n
 *        by:<col>:            q_i = T_free * r_i / R     (r = reference column;
 *                             R = 0: equal)
 *        percent p:           V = round_half_away(old * (1 + p/100)); then as
 *                             proportional, except W = 0 where q_i =
 *                             w_i * (1 + p/100) + T_free / n, so cancelling
 *                             children (+5, -5) scale too instead of staying
 *        repeat_leaves v:     not a quota rule: every free leaf takes v and
 *                             every row on the way is the sum of its children
 *   - the quotas are rounded by largest remainder (lr.c): floors, then one
 *     unit each to the largest remainders, ties to the lower id; mirrored
 *     for T_free < 0 so that spreading -x is the negation of spreading x.
 *     Hence Σ children == parent to the last unit, and every child lies
 *     within one unit of its exact quota. 10.00 over 0, 0, 0 -> 3.34, 3.33,
 *     3.33; 1.00 over 1, 1, 1 -> 0.34, 0.33, 0.33.
 *   Then each free child recurses with the same mode (add continues as
 *   proportional). Proportional/add skip a child whose value did not change
 *   (its subtree would not change either); equal, by, percent descend
 *   anyway, since they redistribute even at an unchanged total.
 *   If no child is free and T_free != 0 the write has nowhere to go:
 *   DG_ECONFLICT.
 *
 * 4. Rolling up, and writes below a held ancestor
 * -----------------------------------------------
 * After the written row X changed by d, its ancestors change by d -- unless
 * one of them is held. Then the nearest held ancestor H keeps its value, and
 * -d is absorbed by the free siblings of every row on the path from X up to
 * H (TM1's consolidation hold, Anaplan's hold):
 *
 *                    H (held: stays)
 *                  /   \
 *                 A     s3  <- candidate
 *               / | \
 *      cand -> s1 X  s2 <- candidate           X += d
 *                                               s1, s2, s3 absorb -d
 *                                               A = old + d + (s1, s2 offsets)
 *
 * All candidates share -d in one proportional round (by their current
 * values; all zero: equally), largest remainder, ties to the lower id; each
 * candidate's new value is then spread proportionally into its own subtree
 * (respecting the holds there). The rows between X and H are recomputed,
 * H and everything above it are unchanged. No free candidate and d != 0:
 * DG_ECONFLICT. Since sibling subtree sums are leaf sums, this equals
 * offsetting -d over all free leaves under H outside X's subtree,
 * proportionally.
 *
 * 5. What holds do not do
 * -----------------------
 * A held cell cannot be written directly (DG_ECONFLICT): release it first.
 * Holds bind value writes only. Insert, delete and move re-aggregate the
 * ancestors even when they are held: structure is the user's explicit
 * choice, and refusing it, or silently rescaling siblings, would surprise
 * more than a held total that follows its rows.
 *
 * 6. Structure
 * ------------
 * A new row adds its values to every ancestor; a parent that was a leaf
 * instead takes the child's values (its own give way). Deleting a row (or a
 * subtree) subtracts its values from every ancestor; a parent losing its
 * last child keeps what remains (0). A move does both, and a common
 * ancestor gets the net change once. A move under the row itself or one of
 * its descendants is a cycle: DG_ECONFLICT.
 *
 * 7. Recovery
 * -----------
 * Savepoints (journal.c) make any sequence of operations undoable exactly:
 * the manager opens one per batch; if DuckDB refuses the batch, rollback
 * restores values, texts, holds, rows and child order as they were, and it
 * retries the requests one by one. update_cells opens an inner one so that
 * several writes are all-or-none.
 */
#include <string.h>

#include "engine/internal.h"

#define PCT_ONE ((__int128)100 * DG_PERCENT_SCALE) /* 100 % = 10^8 */

/* ======================================================================
 * Records
 * ====================================================================== */

/* Appends one record (every field written: no memset needed). */
static inline dg_change_t *rec(dg_etable_t *t, dg_changes_t *c, uint8_t kind, uint32_t slot,
                               uint32_t col, int64_t old, int64_t nv) {
  if (c->n == c->cap) c->v = dg__et_grow(c->v, &c->cap, c->n + 1, sizeof(dg_change_t));
  dg_change_t *ch = &c->v[c->n++];
  *ch = (dg_change_t){.row_id = ROW(t, slot)->id, .old_value = old, .new_value = nv, .col = col,
                      .table_tag = t->tag, .kind = kind, ._slot = slot};
  return ch;
}

static inline void rec_num(dg_etable_t *t, dg_changes_t *c, uint32_t slot, uint32_t col,
                           int64_t old, int64_t nv) {
  rec(t, c, DG_CHANGE_NUMBER, slot, col, old, nv);
}

/* The set path writes through: record and write at once (undone from the
 * records if the operation fails later, see dg_etable_set). */
static inline void rec_set(dg_etable_t *t, dg_changes_t *c, uint32_t slot, uint32_t col,
                           int64_t old, int64_t nv) {
  rec(t, c, DG_CHANGE_NUMBER, slot, col, old, nv);
  NUMS(t, slot)[col] = nv;
}

static inline dg_change_t *rec_other(dg_etable_t *t, dg_changes_t *c, uint8_t kind, uint32_t slot,
                                     uint32_t col, int64_t old, int64_t nv) {
  return rec(t, c, kind, slot, col, old, nv);
}

static inline int64_t parent_id_of(const dg_etable_t *t, uint32_t p) {
  return p == SENTINEL ? DG_ROW_NONE : ROW(t, p)->id;
}

/* The buffer an operation appends to: the caller's, or the table's own. */
static dg_changes_t *out_buf(dg_etable_t *t, dg_changes_t *out) {
  if (out) return out;
  dg_changes_clear(t->tmp);
  return t->tmp;
}

/* ======================================================================
 * Holds: rigid subtrees
 * ====================================================================== */

/* True when nothing in k's subtree can move in column col: k is held, or
 * every path down from k meets a held cell before a free leaf. Iterative
 * DFS that stops at the first free leaf (or hold-free subtree). */
static bool is_rigid(dg_etable_t *t, uint32_t k, uint32_t col) {
  if (dg__et_is_held(t, k, col)) return true;
  const erow_t *r = ROW(t, k);
  const kview_t kv = KVIEW(r);
  if (kv.n == 0 || r->holds_below == 0) return false;
  size_t n = 0;
  t->stack = dg__et_grow(t->stack, &t->capstack, kv.n, sizeof(uint32_t));
  for (uint32_t i = 0; i < kv.n; i++) t->stack[n++] = KAT(kv, i);
  while (n > 0) {
    uint32_t s = t->stack[--n];
    if (dg__et_is_held(t, s, col)) continue;
    const erow_t *q = ROW(t, s);
    const kview_t qv = KVIEW(q);
    if (qv.n == 0 || q->holds_below == 0) return false;
    t->stack = dg__et_grow(t->stack, &t->capstack, n + qv.n, sizeof(uint32_t));
    for (uint32_t i = 0; i < qv.n; i++) t->stack[n++] = KAT(qv, i);
  }
  return true;
}

/* ======================================================================
 * Spreading down
 * ====================================================================== */

typedef struct spread_s {
  dg_spread_mode_t mode; /* never ADD here: ADD spreads as PROPORTIONAL */
  uint32_t col;
  uint32_t by_col;
  int64_t pct; /* PERCENT: percentage * DG_PERCENT_SCALE */
} spread_t;

static inline bool mul_ok(__int128 a, __int128 b, __int128 *r) {
  return !__builtin_mul_overflow(a, b, r);
}

static inline void work_push(dg_etable_t *t, uint32_t slot, int64_t value) {
  if (t->nwork == t->capwork) t->work = dg__et_grow(t->work, &t->capwork, t->nwork + 1, sizeof(work_t));
  t->work[t->nwork].slot = slot;
  t->work[t->nwork].value = value;
  t->nwork++;
}

/* How the free children's quotas are formed at one node. */
enum quota_kind {
  Q_WEIGHTED,    /* T * w_j / S (proportional, percent with S != 0, by) */
  Q_EQUAL,       /* T / nf */
  Q_DELTA_EQUAL, /* w_j + T / nf (proportional with S = 0: the delta equally) */
  Q_PERCENT0,    /* w_j * (1 + p) + T / nf (percent with S = 0) */
};

/* Shares the new value v of row s (which has children) among its children.
 * Children that are leaves only: recorded at once, in id order. Otherwise
 * the children to visit go on the work stack, highest id first so that
 * they pop in id order (pre-order overall). */
static int expand(dg_etable_t *t, dg_changes_t *c, uint32_t s, int64_t v, const spread_t *m) {
  const erow_t *r = ROW(t, s);
  const kview_t kids = KVIEW(r);
  const uint32_t n = kids.n, col = m->col;
  dg__lr_reserve(t, n);
  uint32_t *fp = t->lr_pos;
  const bool holds = t->nheld[col] > 0 && r->holds_below > 0;
  __int128 rigid = 0, W = 0;
  uint32_t nf = 0;
  bool inner = false; /* a free child has children of its own */
  for (uint32_t i = 0; i < n; i++) {
    const uint32_t k = KAT(kids, i);
    const int64_t w = NUMS(t, k)[col];
    if (holds && is_rigid(t, k, col)) {
      rigid += w;
    } else {
      fp[nf++] = i;
      W += w;
      inner |= HAS_KIDS(ROW(t, k));
    }
  }
  const __int128 T = (__int128)v - rigid;
  if (nf == 0) return T == 0 ? 0 : DG_ECONFLICT;

  /* The quota rule and its weights. */
  enum quota_kind kind;
  uint32_t wcol = col;
  __int128 S = W;
  switch (m->mode) {
    case DG_SPREAD_EQUAL: kind = Q_EQUAL; break;
    case DG_SPREAD_BY:
      S = 0;
      for (uint32_t j = 0; j < nf; j++) S += NUMS(t, KAT(kids, fp[j]))[m->by_col];
      wcol = m->by_col;
      kind = S != 0 ? Q_WEIGHTED : Q_EQUAL;
      break;
    case DG_SPREAD_PERCENT: kind = W != 0 ? Q_WEIGHTED : Q_PERCENT0; break;
    default: kind = W != 0 ? Q_WEIGHTED : Q_DELTA_EQUAL; break;
  }

  /* 64-bit path when every quota numerator fits (nearly always). */
  int64_t *out = t->lr_out64;
  bool fast = kind != Q_PERCENT0 && T >= -INT64_MAX && T <= INT64_MAX && S >= -INT64_MAX &&
              S <= INT64_MAX;
  if (fast) {
    const int64_t T64 = (int64_t)T;
    int64_t *num = t->lr_num64, den = (int64_t)nf;
    for (uint32_t j = 0; j < nf && fast; j++) {
      const int64_t w = NUMS(t, KAT(kids, fp[j]))[wcol];
      int64_t x;
      switch (kind) {
        case Q_WEIGHTED:
          fast = !__builtin_mul_overflow(T64, w, &x) && x != INT64_MIN;
          num[j] = S < 0 ? -x : x;
          break;
        case Q_EQUAL: num[j] = T64; break;
        default: /* Q_DELTA_EQUAL */
          fast = !__builtin_mul_overflow(w, (int64_t)nf, &x) && !__builtin_add_overflow(x, T64, &num[j]) &&
                 num[j] != INT64_MIN;
          break;
      }
    }
    if (fast) {
      if (kind == Q_WEIGHTED) den = (int64_t)(S < 0 ? -S : S);
      dg__lr_round64(t, num, den, T64, nf, out);
    }
  }
  if (!fast) {
    __int128 *num = t->lr_num, *o128 = t->lr_out, den = nf;
    __int128 tail = 0;
    if (kind == Q_PERCENT0) {
      den = PCT_ONE * nf;
      if (!mul_ok(T, PCT_ONE, &tail)) return DG_EOVERFLOW;
    } else if (kind == Q_WEIGHTED) {
      den = S < 0 ? -S : S;
    }
    for (uint32_t j = 0; j < nf; j++) {
      const int64_t w = NUMS(t, KAT(kids, fp[j]))[wcol];
      switch (kind) {
        case Q_WEIGHTED:
          if (!mul_ok(T, w, &num[j])) return DG_EOVERFLOW;
          if (S < 0) num[j] = -num[j];
          break;
        case Q_EQUAL: num[j] = T; break;
        case Q_DELTA_EQUAL: num[j] = (__int128)w * nf + T; break;
        case Q_PERCENT0: {
          __int128 a; /* |w * (10^8 + p)| < 10^18 * 9.3 * 10^18 fits */
          if (!mul_ok((__int128)w * (PCT_ONE + m->pct), nf, &a) || __builtin_add_overflow(a, tail, &num[j]))
            return DG_EOVERFLOW;
          break;
        }
      }
    }
    dg__lr_round(t, num, den, T, nf, o128);
    for (uint32_t j = 0; j < nf; j++) {
      if (!in_range(o128[j])) return DG_EOVERFLOW;
      out[j] = (int64_t)o128[j];
    }
  }
  for (uint32_t j = 0; j < nf; j++)
    if (!in_range(out[j])) return DG_EOVERFLOW;

  if (!inner) { /* only leaves: record them now, in id order (still pre-order) */
    if (c->cap - c->n < nf) c->v = dg__et_grow(c->v, &c->cap, c->n + nf, sizeof(dg_change_t));
    for (uint32_t j = 0; j < nf; j++) {
      const uint32_t k = KAT(kids, fp[j]);
      const int64_t old = NUMS(t, k)[col];
      if (out[j] != old) rec_set(t, c, k, col, old, out[j]);
    }
    return 0;
  }
  const bool skip_same = m->mode == DG_SPREAD_PROPORTIONAL;
  for (uint32_t j = nf; j-- > 0;) {
    const uint32_t k = KAT(kids, fp[j]);
    if (out[j] == NUMS(t, k)[col] && (skip_same || !HAS_KIDS(ROW(t, k)))) continue;
    work_push(t, k, out[j]);
  }
  return 0;
}

/* Plans row x taking value v (in range) and the spread below it: records
 * x, then its subtree in pre-order. */
static int plan_spread(dg_etable_t *t, dg_changes_t *c, uint32_t x, int64_t v, const spread_t *m) {
  t->nwork = 0;
  work_push(t, x, v);
  while (t->nwork > 0) {
    work_t w = t->work[--t->nwork];
    int64_t old = NUMS(t, w.slot)[m->col];
    if (w.value != old) rec_set(t, c, w.slot, m->col, old, w.value);
    if (HAS_KIDS(ROW(t, w.slot))) {
      int rc = expand(t, c, w.slot, w.value, m);
      if (rc) return rc;
    }
  }
  return 0;
}

/* REPEAT_LEAVES below x (which has children): every free leaf takes v.
 * Visits free rows in pre-order, sums the leaf deltas up, then records in
 * pre-order. *newx receives x's new value. */
static int plan_repeat(dg_etable_t *t, dg_changes_t *c, uint32_t x, uint32_t col, int64_t v,
                       int64_t *newx) {
  size_t nrep = 0, n = 0, nleaves = 0;
  /* the DFS stack holds (slot, parent entry) pairs, two uint32_t each */
  t->stack = dg__et_grow(t->stack, &t->capstack, 2, sizeof(uint32_t));
  t->stack[n++] = x;
  t->stack[n++] = NIL;
  while (n > 0) {
    uint32_t up = t->stack[--n];
    uint32_t s = t->stack[--n];
    if (nrep == t->caprep) t->rep = dg__et_grow(t->rep, &t->caprep, nrep + 1, sizeof(rep_t));
    uint32_t e = (uint32_t)nrep++;
    t->rep[e].slot = s;
    t->rep[e].up = up;
    t->rep[e].delta = 0;
    const erow_t *r = ROW(t, s);
    const kview_t kids = KVIEW(r);
    const uint32_t nk = kids.n;
    if (nk == 0) {
      t->rep[e].delta = (__int128)v - NUMS(t, s)[col];
      nleaves++;
      continue;
    }
    t->stack = dg__et_grow(t->stack, &t->capstack, n + 2 * (size_t)nk, sizeof(uint32_t));
    for (uint32_t i = nk; i-- > 0;) {
      uint32_t k = KAT(kids, i);
      if (t->nheld[col] > 0 && dg__et_is_held(t, k, col)) continue;
      t->stack[n++] = k;
      t->stack[n++] = e;
    }
  }
  if (nleaves == 0) return DG_ECONFLICT;
  for (size_t e = nrep; e-- > 1;) t->rep[t->rep[e].up].delta += t->rep[e].delta;
  const int64_t oldx = NUMS(t, x)[col];
  for (size_t e = 0; e < nrep; e++) {
    if (t->rep[e].delta == 0) continue;
    uint32_t s = t->rep[e].slot;
    int64_t old = NUMS(t, s)[col];
    __int128 nv = old + t->rep[e].delta;
    if (!in_range(nv)) return DG_EOVERFLOW;
    rec_set(t, c, s, col, old, (int64_t)nv);
  }
  *newx = (int64_t)(oldx + t->rep[0].delta);
  return 0;
}

/* ======================================================================
 * Rolling up (and offsetting below a held ancestor)
 * ====================================================================== */

static int cmp_cand_by_id(const void *a, const void *b, void *arg) {
  const dg_etable_t *t = arg;
  int64_t x = ROW(t, ((const cand_t *)a)->slot)->id, y = ROW(t, ((const cand_t *)b)->slot)->id;
  return x < y ? -1 : x > y;
}

/* Row x changed by d (already planned). Plans the ancestors. */
static int plan_up(dg_etable_t *t, dg_changes_t *c, uint32_t x, uint32_t col, __int128 d) {
  if (d == 0) return 0;
  uint32_t h = NIL;
  if (t->nheld[col] > 0)
    for (uint32_t a = ROW(t, x)->parent; a != SENTINEL; a = ROW(t, a)->parent)
      if (dg__et_is_held(t, a, col)) {
        h = a;
        break;
      }
  if (h == NIL) {
    for (uint32_t a = ROW(t, x)->parent; a != SENTINEL; a = ROW(t, a)->parent) {
      int64_t old = NUMS(t, a)[col];
      __int128 nv = old + d;
      if (!in_range(nv)) return DG_EOVERFLOW;
      rec_set(t, c, a, col, old, (int64_t)nv);
    }
    return 0;
  }

  /* The free siblings of every row on the path x .. (child of h). */
  size_t nc = 0;
  uint32_t levels = 0;
  for (uint32_t node = x; node != h; node = ROW(t, node)->parent, levels++) {
    const erow_t *p = ROW(t, ROW(t, node)->parent);
    const kview_t pk = KVIEW(p);
    for (uint32_t i = 0; i < pk.n; i++) {
      uint32_t k = KAT(pk, i);
      if (k == node || is_rigid(t, k, col)) continue;
      if (nc == t->capcand) t->cand = dg__et_grow(t->cand, &t->capcand, nc + 1, sizeof(cand_t));
      t->cand[nc].slot = k;
      t->cand[nc].level = levels;
      t->cand[nc].value = 0;
      nc++;
    }
  }
  if (nc == 0) return DG_ECONFLICT;
  qsort_r(t->cand, nc, sizeof(cand_t), cmp_cand_by_id, t);

  /* One proportional round over all candidates: Σ new = Σ old - d. */
  dg__lr_reserve(t, nc);
  __int128 W = 0;
  for (size_t j = 0; j < nc; j++) W += NUMS(t, t->cand[j].slot)[col];
  const __int128 T = W - d;
  __int128 den;
  if (W != 0) {
    den = W < 0 ? -W : W;
    for (size_t j = 0; j < nc; j++) {
      if (!mul_ok(T, NUMS(t, t->cand[j].slot)[col], &t->lr_num[j])) return DG_EOVERFLOW;
      if (W < 0) t->lr_num[j] = -t->lr_num[j];
    }
  } else {
    den = (__int128)nc;
    for (size_t j = 0; j < nc; j++) t->lr_num[j] = (__int128)NUMS(t, t->cand[j].slot)[col] * (__int128)nc + T;
  }
  dg__lr_round(t, t->lr_num, den, T, (uint32_t)nc, t->lr_out);
  for (size_t j = 0; j < nc; j++) {
    if (!in_range(t->lr_out[j])) return DG_EOVERFLOW;
    t->cand[j].value = (int64_t)t->lr_out[j];
  }
  if (levels > t->caplvl) t->lvl = dg__et_grow(t->lvl, &t->caplvl, levels, sizeof(__int128));
  memset(t->lvl, 0, (size_t)levels * sizeof(__int128));
  spread_t prop = {.mode = DG_SPREAD_PROPORTIONAL, .col = col};
  for (size_t j = 0; j < nc; j++) {
    uint32_t k = t->cand[j].slot;
    int64_t old = NUMS(t, k)[col], nv = t->cand[j].value;
    if (nv == old) continue;
    t->lvl[t->cand[j].level] += (__int128)nv - old;
    int rc = plan_spread(t, c, k, nv, &prop);
    if (rc) return rc;
  }
  /* The rows between x and h; h itself must come out unchanged. */
  __int128 cum = d;
  uint32_t a = ROW(t, x)->parent;
  for (uint32_t lv = 0; lv < levels; lv++, a = ROW(t, a)->parent) {
    cum += t->lvl[lv];
    if (a == h) break;
    int64_t old = NUMS(t, a)[col];
    __int128 nv = old + cum;
    if (!in_range(nv)) return DG_EOVERFLOW;
    if (nv != old) rec_set(t, c, a, col, old, (int64_t)nv);
  }
  DG_ASSERT(a == h && cum == 0);
  return 0;
}

/* Ends a write-through operation that recorded from c->n == base: on
 * failure the cells written are put back (newest first) and the records
 * dropped; on success they are journaled for a savepoint. Returns rc. */
static int finish_written(dg_etable_t *t, dg_changes_t *c, size_t base, size_t abase, int rc) {
  if (rc) {
    for (size_t i = c->n; i-- > base;) NUMS(t, c->v[i]._slot)[c->v[i].col] = c->v[i].old_value;
    dg__ch_rewind(c, base, abase);
  } else if (journaling(t)) {
    for (size_t i = base; i < c->n; i++) dg__j_push(t, J_NUM, c->v[i]._slot, c->v[i].col, c->v[i].old_value);
  }
  dg__et_after_op(t);
  return rc;
}

/* ======================================================================
 * dg_etable_set
 * ====================================================================== */

static __int128 percent_of(int64_t old, int64_t pct) {
  __int128 x = (__int128)old * (PCT_ONE + pct); /* |x| < 10^18 * 9.3 * 10^18: fits */
  __int128 a = x < 0 ? -x : x, q = a / PCT_ONE, r = a % PCT_ONE;
  if (r * 2 >= PCT_ONE) q++; /* half away from zero */
  return x < 0 ? -q : q;
}

int dg_etable_set(dg_etable_t *t, int64_t id, uint32_t col, int64_t value, const dg_eset_t *how,
                  dg_changes_t *out) {
  dg_eset_t def = {.mode = DG_SPREAD_PROPORTIONAL};
  if (how == NULL) how = &def;
  if (t->loading || col >= t->nnum || (unsigned)how->mode > DG_SPREAD_BY) return DG_EINVAL;
  if (how->mode == DG_SPREAD_BY && how->by_col >= t->nnum) return DG_EINVAL;
  uint32_t s = dg__et_lookup(t, id);
  if (s == 0) return DG_ENOTFOUND;
  const int64_t old = NUMS(t, s)[col];
  if (how->has_expected && how->expected != old) return DG_ECONFLICT;
  if (dg__et_is_held(t, s, col)) return DG_ECONFLICT;

  __int128 target;
  switch (how->mode) {
    case DG_SPREAD_ADD: target = (__int128)old + value; break;
    case DG_SPREAD_PERCENT: target = percent_of(old, value); break;
    default: target = value; break;
  }
  if (!in_range(target)) return DG_EOVERFLOW;
  const int64_t v = (int64_t)target;
  const bool leaf = !HAS_KIDS(ROW(t, s));
  if (v == old && (leaf || how->mode == DG_SPREAD_PROPORTIONAL || how->mode == DG_SPREAD_ADD)) {
    dg__et_after_op(t);
    return 0; /* nothing moves */
  }

  dg_changes_t *c = out_buf(t, out);
  const size_t base = c->n, abase = c->alen;
  int64_t newx = v;
  int rc = 0;
  if (leaf) {
    rec_set(t, c, s, col, old, v);
  } else if (how->mode == DG_SPREAD_REPEAT_LEAVES) {
    rc = plan_repeat(t, c, s, col, v, &newx);
  } else {
    spread_t m = {.mode = how->mode == DG_SPREAD_ADD ? DG_SPREAD_PROPORTIONAL : how->mode,
                  .col = col,
                  .by_col = how->by_col,
                  .pct = how->mode == DG_SPREAD_PERCENT ? value : 0};
    rc = plan_spread(t, c, s, v, &m);
  }
  if (rc == 0) rc = plan_up(t, c, s, col, (__int128)newx - old);
  return finish_written(t, c, base, abase, rc);
}

/* ======================================================================
 * dg_etable_set_leaves
 * ====================================================================== */

int dg_etable_set_leaves(dg_etable_t *t, uint32_t col, const int64_t *ids, const int64_t *values, size_t n,
                         dg_changes_t *out, size_t *bad) {
  size_t ignored;
  if (bad == NULL) bad = &ignored;
  *bad = 0;
  if (t->loading || col >= t->nnum) return DG_EINVAL;
  if (t->nheld[col] > 0) return DG_ECONFLICT;
  dg_changes_t *c = out_buf(t, out);
  const size_t base = c->n, abase = c->alen;
  int rc = 0;
  size_t i = 0;
  t->nwork = 0;
  /* Leaves: look up, check, mark (a second listing finds the mark), write
   * through and record. */
  for (; i < n; i++) {
    uint32_t s = dg__et_lookup(t, ids[i]);
    if (s == 0) {
      rc = DG_ENOTFOUND;
      break;
    }
    erow_t *r = ROW(t, s);
    if (HAS_KIDS(r) || (r->flags & ROW_MARK)) {
      rc = DG_EINVAL;
      break;
    }
    if (!in_range(values[i])) {
      rc = DG_EOVERFLOW;
      break;
    }
    r->flags |= ROW_MARK;
    int64_t old = NUMS(t, s)[col];
    if (values[i] != old) rec_set(t, c, s, col, old, values[i]);
    else work_push(t, s, 0); /* unchanged, but marked: unmarked below */
  }
  const size_t nleaves = c->n;
  /* Unmark the leaves (recorded ones and the unchanged ones on work). */
  for (size_t k = base; k < nleaves; k++) ROW(t, c->v[k]._slot)->flags &= ~ROW_MARK;
  for (size_t k = 0; k < t->nwork; k++) ROW(t, t->work[k].slot)->flags &= ~ROW_MARK;
  t->nwork = 0;
  if (rc) {
    *bad = i;
    return finish_written(t, c, base, abase, rc);
  }
  /* Ancestors: a run of leaves under one parent moves it once; each
   * ancestor reached is marked and remembered (work: slot, old value) and
   * written through. */
  for (size_t k = base; k < nleaves && rc == 0;) {
    uint32_t p = ROW(t, c->v[k]._slot)->parent;
    __int128 d = 0;
    size_t j = k;
    for (; j < nleaves && ROW(t, c->v[j]._slot)->parent == p; j++)
      d += (__int128)c->v[j].new_value - c->v[j].old_value;
    k = j;
    if (d == 0) continue;
    for (uint32_t a = p; a != SENTINEL; a = ROW(t, a)->parent) {
      erow_t *r = ROW(t, a);
      if (!(r->flags & ROW_MARK)) {
        r->flags |= ROW_MARK;
        work_push(t, a, NUMS(t, a)[col]);
      }
      /* In int64 on the way (runs may go up and down), in range at the end. */
      __int128 nv = (__int128)NUMS(t, a)[col] + d;
      if (nv > INT64_MAX || nv < INT64_MIN) {
        rc = DG_EOVERFLOW;
        break;
      }
      NUMS(t, a)[col] = (int64_t)nv;
    }
  }
  for (size_t k = 0; k < t->nwork && rc == 0; k++)
    if (!in_range(NUMS(t, t->work[k].slot)[col])) rc = DG_EOVERFLOW;
  for (size_t k = 0; k < t->nwork; k++) {
    uint32_t a = t->work[k].slot;
    ROW(t, a)->flags &= ~ROW_MARK;
    if (rc) NUMS(t, a)[col] = t->work[k].value;
    else if (NUMS(t, a)[col] != t->work[k].value) rec(t, c, DG_CHANGE_NUMBER, a, col, t->work[k].value, NUMS(t, a)[col]);
  }
  t->nwork = 0;
  return finish_written(t, c, base, abase, rc);
}

/* ======================================================================
 * Insert, delete, move
 * ====================================================================== */

int dg_etable_insert(dg_etable_t *t, int64_t id, int64_t parent_id, const int64_t *nums,
                     const dg_etext_t *texts, dg_changes_t *out) {
  if (t->loading || id == DG_ROW_NONE || t->nlive >= DG_ENGINE_MAX_ROWS) return DG_EINVAL;
  if (texts)
    for (uint32_t k = 0; k < t->ntext; k++)
      if (texts[k].ptr && texts[k].len > DG_ENGINE_MAX_TEXT) return DG_EINVAL;
  if (dg__et_lookup(t, id) != 0) return DG_EEXIST;
  uint32_t p = SENTINEL;
  if (parent_id != DG_ROW_NONE && (p = dg__et_lookup(t, parent_id)) == 0) return DG_ENOTFOUND;
  if (nums)
    for (uint32_t k = 0; k < t->nnum; k++)
      if (!in_range(nums[k])) return DG_EOVERFLOW;

  /* Plan: what every ancestor becomes (a leaf parent gives way). */
  dg__lr_reserve(t, t->nnum);
  __int128 *delta = t->lr_num;
  const bool gives_way = p != SENTINEL && !HAS_KIDS(ROW(t, p));
  for (uint32_t k = 0; k < t->nnum; k++) {
    int64_t v = nums ? nums[k] : 0;
    delta[k] = gives_way ? (__int128)v - NUMS(t, p)[k] : v;
  }
  for (uint32_t a = p; a != SENTINEL; a = ROW(t, a)->parent)
    for (uint32_t k = 0; k < t->nnum; k++)
      if (!in_range(NUMS(t, a)[k] + delta[k])) return DG_EOVERFLOW;

  /* Apply: nothing below can fail. */
  dg_changes_t *c = out_buf(t, out);
  const size_t base = c->n;
  uint32_t s = dg__et_slot_alloc(t); /* may move the rows */
  erow_t *r = ROW(t, s);
  r->id = id;
  r->flags = ROW_LIVE;
  dg__et_index_put(t, s);
  dg__et_kid_link(t, p, s);
  t->nlive++;
  if (journaling(t)) dg__j_push(t, J_INSERT, s, 0, 0);
  rec_other(t, c, DG_CHANGE_ROW_INSERT, s, 0, 0, parent_id_of(t, p));
  for (uint32_t k = 0; nums && k < t->nnum; k++)
    if (nums[k] != 0) rec_num(t, c, s, k, 0, nums[k]);
  for (uint32_t k = 0; texts && k < t->ntext; k++) {
    if (texts[k].ptr == NULL) continue;
    dg_change_t *ch = rec_other(t, c, DG_CHANGE_TEXT, s, k, -1, 0);
    ch->new_value = dg__ch_text(c, texts[k].ptr, texts[k].len);
  }
  for (uint32_t a = p; a != SENTINEL; a = ROW(t, a)->parent)
    for (uint32_t k = 0; k < t->nnum; k++)
      if (delta[k] != 0) rec_num(t, c, a, k, NUMS(t, a)[k], (int64_t)(NUMS(t, a)[k] + delta[k]));
  dg__et_apply(t, c, base);
  dg__et_after_op(t);
  return 0;
}

int dg_etable_delete(dg_etable_t *t, int64_t id, bool cascade, dg_changes_t *out) {
  if (t->loading) return DG_EINVAL;
  uint32_t s = dg__et_lookup(t, id);
  if (s == 0) return DG_ENOTFOUND;
  if (HAS_KIDS(ROW(t, s)) && !cascade) return DG_ECONFLICT;
  const uint32_t p = ROW(t, s)->parent;
  const int64_t *v = NUMS(t, s);
  for (uint32_t a = p; a != SENTINEL; a = ROW(t, a)->parent)
    for (uint32_t k = 0; k < t->nnum; k++)
      if (!in_range((__int128)NUMS(t, a)[k] - v[k])) return DG_EOVERFLOW;

  /* The subtree in pre-order (children in id order) into t->work. */
  t->nwork = 0;
  size_t n = 0;
  t->stack = dg__et_grow(t->stack, &t->capstack, 1, sizeof(uint32_t));
  t->stack[n++] = s;
  while (n > 0) {
    uint32_t q = t->stack[--n];
    work_push(t, q, 0);
    const erow_t *r = ROW(t, q);
    const kview_t kv = KVIEW(r);
    t->stack = dg__et_grow(t->stack, &t->capstack, n + kv.n, sizeof(uint32_t));
    for (uint32_t i = kv.n; i-- > 0;) t->stack[n++] = KAT(kv, i);
  }
  dg_changes_t *c = out_buf(t, out);
  const size_t base = c->n;
  for (size_t i = t->nwork; i-- > 0;) {
    uint32_t q = t->work[i].slot;
    rec_other(t, c, DG_CHANGE_ROW_DELETE, q, 0, parent_id_of(t, ROW(t, q)->parent), 0);
  }
  for (uint32_t a = p; a != SENTINEL; a = ROW(t, a)->parent)
    for (uint32_t k = 0; k < t->nnum; k++)
      if (v[k] != 0) rec_num(t, c, a, k, NUMS(t, a)[k], NUMS(t, a)[k] - v[k]);

  /* Apply: release the subtree's holds (journaled), unlink, unindex. */
  const bool j = journaling(t);
  for (size_t i = 0; i < t->nwork && ROW(t, s)->holds_below > 0; i++) {
    uint32_t q = t->work[i].slot;
    if (!(ROW(t, q)->flags & ROW_HELD)) continue;
    for (uint32_t k = 0; k < t->nnum; k++) {
      if (!dg__et_is_held(t, q, k)) continue;
      if (j) dg__j_push(t, J_HOLD, q, k, 1);
      dg__et_hold_set(t, q, k, false);
    }
  }
  dg__et_kid_unlink(t, p, s);
  for (size_t i = 0; i < t->nwork; i++) {
    uint32_t q = t->work[i].slot;
    dg__et_index_del(t, ROW(t, q)->id);
    ROW(t, q)->flags &= ~ROW_LIVE;
  }
  t->nlive -= (uint32_t)t->nwork;
  if (j)
    dg__j_push(t, J_DELETE, s, p, 0); /* the rows stay intact until release */
  else
    dg__et_free_subtree(t, s);
  dg__et_apply(t, c, base);
  dg__et_after_op(t);
  return 0;
}

int dg_etable_move(dg_etable_t *t, int64_t id, int64_t new_parent_id, dg_changes_t *out) {
  if (t->loading) return DG_EINVAL;
  uint32_t s = dg__et_lookup(t, id);
  if (s == 0) return DG_ENOTFOUND;
  uint32_t np = SENTINEL;
  if (new_parent_id != DG_ROW_NONE && (np = dg__et_lookup(t, new_parent_id)) == 0)
    return DG_ENOTFOUND;
  const uint32_t op = ROW(t, s)->parent;
  if (np == op) {
    dg__et_after_op(t);
    return 0;
  }
  for (uint32_t a = np; a != SENTINEL; a = ROW(t, a)->parent)
    if (a == s) return DG_ECONFLICT;

  const int64_t *v = NUMS(t, s);
  dg__lr_reserve(t, t->nnum);
  __int128 *dnew = t->lr_num; /* what the new chain gains */
  const bool gives_way = np != SENTINEL && !HAS_KIDS(ROW(t, np));
  for (uint32_t k = 0; k < t->nnum; k++) dnew[k] = gives_way ? (__int128)v[k] - NUMS(t, np)[k] : v[k];

  /* Mark the old chain; the new chain's first marked row is the lowest
   * common ancestor, from which both chains coincide. */
  for (uint32_t a = op; a != SENTINEL; a = ROW(t, a)->parent) ROW(t, a)->flags |= ROW_MARK;
  uint32_t lca = SENTINEL;
  for (uint32_t a = np; a != SENTINEL; a = ROW(t, a)->parent)
    if (ROW(t, a)->flags & ROW_MARK) {
      lca = a;
      break;
    }
  for (uint32_t a = op; a != SENTINEL; a = ROW(t, a)->parent) ROW(t, a)->flags &= ~ROW_MARK;

  dg_changes_t *c = out_buf(t, out);
  const size_t base = c->n, abase = c->alen;
  rec_other(t, c, DG_CHANGE_ROW_MOVE, s, 0, parent_id_of(t, op), parent_id_of(t, np));
  bool common = false;
  for (uint32_t a = op; a != SENTINEL; a = ROW(t, a)->parent) {
    if (a == lca) common = true;
    for (uint32_t k = 0; k < t->nnum; k++) {
      __int128 d = -(__int128)v[k] + (common ? dnew[k] : 0);
      __int128 nv = NUMS(t, a)[k] + d;
      if (!in_range(nv)) goto overflow;
      if (d != 0) rec_num(t, c, a, k, NUMS(t, a)[k], (int64_t)nv);
    }
  }
  for (uint32_t a = np; a != lca; a = ROW(t, a)->parent) {
    for (uint32_t k = 0; k < t->nnum; k++) {
      __int128 nv = NUMS(t, a)[k] + dnew[k];
      if (!in_range(nv)) goto overflow;
      if (dnew[k] != 0) rec_num(t, c, a, k, NUMS(t, a)[k], (int64_t)nv);
    }
  }

  {
    int64_t hb = ROW(t, s)->holds_below;
    dg__et_holds_below_add(t, op, -hb);
    dg__et_kid_unlink(t, op, s);
    dg__et_kid_link(t, np, s);
    dg__et_holds_below_add(t, np, hb);
    if (journaling(t)) dg__j_push(t, J_MOVE, s, op, 0);
  }
  dg__et_apply(t, c, base);
  dg__et_after_op(t);
  return 0;
overflow:
  dg__ch_rewind(c, base, abase);
  dg__et_after_op(t);
  return DG_EOVERFLOW;
}

/* ======================================================================
 * Text cells and holds
 * ====================================================================== */

int dg_etable_text_set(dg_etable_t *t, int64_t id, uint32_t col, const char *s, size_t len,
                       dg_changes_t *out) {
  if (t->loading || col >= t->ntext || (s && len > DG_ENGINE_MAX_TEXT)) return DG_EINVAL;
  uint32_t slot = dg__et_lookup(t, id);
  if (slot == 0) return DG_ENOTFOUND;
  const etext_t *cur = TEXTS(t, slot)[col];
  bool same = (cur == NULL && s == NULL) ||
              (cur && s && cur->len == len && (len == 0 || memcmp(cur->data, s, len) == 0));
  if (!same) {
    dg_changes_t *c = out_buf(t, out);
    const size_t base = c->n;
    dg_change_t *ch = rec_other(t, c, DG_CHANGE_TEXT, slot, col, 0, 0);
    int64_t oh = cur ? dg__ch_text(c, cur->data, cur->len) : -1;
    int64_t nh = dg__ch_text(c, s, len);
    ch = &c->v[base]; /* (the arena grew, the records did not move; be explicit) */
    ch->old_value = oh;
    ch->new_value = nh;
    dg__et_apply(t, c, base);
  }
  dg__et_after_op(t);
  return 0;
}

int dg_etable_hold(dg_etable_t *t, int64_t id, uint32_t col, bool held, dg_changes_t *out) {
  if (t->loading || col >= t->nnum) return DG_EINVAL;
  uint32_t s = dg__et_lookup(t, id);
  if (s == 0) return DG_ENOTFOUND;
  bool cur = dg__et_is_held(t, s, col);
  if (held && !cur && t->held_count >= DG_ENGINE_MAX_HOLDS) return DG_EINVAL;
  if (cur != held) {
    dg_changes_t *c = out_buf(t, out);
    const size_t base = c->n;
    rec_other(t, c, DG_CHANGE_HOLD, s, col, cur, held);
    dg__et_apply(t, c, base);
  }
  dg__et_after_op(t);
  return 0;
}
