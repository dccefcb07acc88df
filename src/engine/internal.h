/*
 * internal.h -- the engine's private layout, shared by the .c files of src/engine only.
 *
 * Rows live in one byte array with a fixed stride (row-major), so a row's
 * links and its number cells usually share a cache line:
 *
 *   t->rows:  | erow_t (24 B) | int64 nums[nnum] | etext_t *texts[ntext] | next row ...
 *
 *   slot 0    the sentinel "super-root": its children are the roots; it has
 *             no id in the index and its number cells are never used.
 *   slot k>0  a live row, a free slot (on t->free_slots), or -- while a
 *             savepoint is open -- a deleted row kept intact for rollback.
 *
 * The id index has two parts, and an id is in exactly one of them:
 *
 *   direct   ids in [dbase, dbase + dlen):  dmap[id - dbase] = slot (0 = none)
 *   hash     every other id
 *
 * Row ids are nearly always dense (bulk loads number 1..n, the manager
 * hands out max + 1), and for them the direct map costs 4 bytes per id and
 * one cache miss per lookup. The range is chosen at load (when the ids fill
 * at least half of [min, max]) and then grows only by the id right after
 * its end, the one a new row usually gets, so growing never covers an id
 * that sits in the hash. Everything else -- sparse tables, client-chosen
 * ids far away -- goes to the hash: open addressing over 64-bit entries,
 * the slot in the low 32 bits, 32 more bits of the id's hash in the high
 * ones (0 = empty; slot 0 is never indexed). The tag rejects almost every
 * wrong probe without touching its row, so a lookup costs about two cache
 * misses (the entry and the row it finds). Children are a per-parent array
 * of slots sorted by id (ekids_t); a leaf has none.
 */
#ifndef DG_ENGINE_INTERNAL_H
#define DG_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "dg/engine.h"

#define NIL UINT32_MAX /* "no slot" */
#define SENTINEL 0u    /* slot of the super-root */

#define ROW_LIVE 1u     /* in the index and linked */
#define ROW_HELD 2u     /* at least one own number cell is held */
#define ROW_MARK 4u     /* scratch mark inside one operation (always clear between ops) */
#define ROW_LOADING 8u  /* loaded, not yet linked (load_parent is valid) */

typedef struct etext_s {
  uint32_t len; /* bytes in data */
  char data[];  /* not NUL-terminated */
} etext_t;

/* A parent's children: the count and capacity live in the array's own
 * allocation, in front of the slots, so a leaf -- most rows of a large
 * table -- pays only the NULL pointer in its header (8 bytes a row, 80 MB on
 * a 10M-row table, against 8 bytes once per parent). */
typedef struct ekids_s {
  uint32_t n;    /* children */
  uint32_t cap;  /* capacity of s, in slots */
  uint32_t s[];  /* child slots, sorted by id */
} ekids_t;

typedef struct erow_s {
  int64_t id;            /* the client's id; DG_ROW_NONE for the sentinel */
  union {
    ekids_t *kids;       /* children; NULL when none (never an empty array) */
    uint64_t kids_range; /* or, bit 0 set: children are the slots first ..
                          * first + n - 1, in id order (first << 32 | n << 1 | 1) */
    int64_t load_parent; /* while loading: the parent id */
    uint64_t load_count; /* load_finish: last child slot << 32 | children counted */
  } u;
  uint32_t parent;       /* parent slot (SENTINEL for a root); NIL when free */
  /* Packed so the header is 24 bytes, not 32: 8 bytes a row on 10M-row
   * tables. 28 bits bound the held cells of a table (DG_ENGINE_MAX_HOLDS). */
  uint32_t holds_below : 28; /* held cells (any column) in this subtree, own included */
  uint32_t flags : 4;        /* ROW_* */
} erow_t;
_Static_assert(sizeof(erow_t) == 24, "erow_t is meant to be 24 bytes");

/* Children as a slot range: a bulk load feeds a parent's children one after
 * another, so they usually sit in consecutive slots, and first + count
 * replaces the 4 bytes a child of the array (40 MB on a 10M-row table). The
 * first structural change under the parent turns it into an array
 * (kids_materialise, table.c). malloc's pointers are at least 8-aligned, so
 * bit 0 tells the two apart. Ranges hold fewer than 2^31 children. */
#define KIDS_RANGE_MAX ((1u << 31) - 1u)
static inline bool KIDS_IS_RANGE(const erow_t *r) { return (r->u.kids_range & 1u) != 0; }

/* The children of a linked row (not ROW_LOADING), array or range alike:
 * read them with KAT(v, i) for i < v.n. */
typedef struct kview_s {
  const uint32_t *s; /* the array; NULL for a range (or no children) */
  uint32_t first;    /* a range's first slot */
  uint32_t n;        /* children */
} kview_t;
static inline kview_t KVIEW(const erow_t *r) {
  if (r->u.kids == NULL) return (kview_t){NULL, 0, 0};
  if (KIDS_IS_RANGE(r))
    return (kview_t){NULL, (uint32_t)(r->u.kids_range >> 32), (uint32_t)(r->u.kids_range >> 1) & KIDS_RANGE_MAX};
  return (kview_t){r->u.kids->s, 0, r->u.kids->n};
}
static inline uint32_t KAT(kview_t v, uint32_t i) { return v.s ? v.s[i] : v.first + i; }
static inline uint32_t NKIDS(const erow_t *r) { return KVIEW(r).n; }
/* The cheap leaf test: one load, relying on "never an empty array" (verify
 * checks it). */
static inline bool HAS_KIDS(const erow_t *r) { return r->u.kids != NULL; }
/* Frees a children array (not a range, which owns nothing). */
void dg__et_kids_free(erow_t *r);

/* Journal entry kinds (see journal.c). */
enum { J_NUM = 1, J_TEXT, J_HOLD, J_INSERT, J_DELETE, J_MOVE };

typedef struct jentry_s {
  uint8_t kind;  /* J_* */
  uint32_t slot; /* the row */
  uint32_t aux;  /* J_NUM/J_TEXT/J_HOLD: column; J_DELETE/J_MOVE: old parent slot */
  union {
    int64_t num;   /* J_NUM: old value; J_HOLD: old state */
    etext_t *text; /* J_TEXT: old text, owned by the journal */
  } old;
} jentry_t;

/* A pending spread: row `slot` takes `value` (pre-order work stack). */
typedef struct work_s {
  uint32_t slot;
  int64_t value;
} work_t;

/* A candidate that absorbs an offset below a held ancestor. */
typedef struct cand_s {
  uint32_t slot;  /* the sibling row */
  uint32_t level; /* index of its parent on the path (0 = the written row's parent) */
  int64_t value;  /* its new value once rounded */
} cand_t;

/* A row visited by REPEAT_LEAVES, in pre-order. */
typedef struct rep_s {
  uint32_t slot;
  uint32_t up;    /* index of the parent's entry; NIL for the top */
  __int128 delta; /* change of this row (sum over its leaves) */
} rep_t;

/* A largest-remainder item: remainder numerator and position. */
typedef struct lr_item_s {
  unsigned __int128 rem;
  uint32_t pos;
} lr_item_t;

struct dg_changes_s {
  dg_change_t *v; /* records */
  size_t n, cap;  /* records used / allocated */
  char *arena;    /* text bytes the TEXT records point into */
  size_t alen, acap;
};

struct dg_etable_s {
  /* rows */
  uint8_t *rows;       /* nslots * stride bytes */
  size_t stride;       /* bytes per row: 24 + 8 * nnum + 8 * ntext */
  uint32_t nslots;     /* slots in use or freed (incl. the sentinel) */
  uint32_t capslots;   /* slots allocated */
  uint32_t nlive;      /* live rows (the sentinel not counted) */
  uint32_t *free_slots;
  uint32_t nfree, capfree;
  /* id index: the direct part, then the hash (see the top of this file) */
  uint32_t *dmap;      /* slot of id dbase + i, 0 = none; dlen used of dcap */
  int64_t dbase;       /* first id of the direct range */
  uint32_t dlen, dcap; /* ids covered / entries allocated */
  uint64_t *index;     /* tag << 32 | slot, 0 = empty; index_mask + 1 entries (a power of two) */
  uint32_t index_mask;
  uint32_t hash_count;  /* ids in the hashed part */
  uint32_t index_count; /* ids indexed, direct and hashed */
  /* columns */
  uint32_t nnum, ntext;
  uint8_t *scales;     /* nnum */
  uint32_t tag, flags;
  bool loading;
  bool check;          /* verify after every operation */
  /* holds: set of (slot << 32 | col), open addressing, ~0 = empty */
  uint64_t *held;
  uint32_t held_mask;  /* capacity - 1; 0 with held == NULL */
  uint32_t held_count;
  uint32_t *nheld;     /* per column: held cells */
  /* savepoint journal */
  jentry_t *journal;
  size_t njournal, capjournal;
  size_t *marks;       /* journal length at each open savepoint */
  uint32_t nmarks, capmarks;
  /* per-operation scratch (grown, never shrunk) */
  work_t *work;
  size_t nwork, capwork;
  uint32_t *stack;     /* DFS stack of slots */
  size_t capstack;
  __int128 *lr_num, *lr_out;
  lr_item_t *lr_items;
  uint32_t *lr_pos;    /* positions of free children */
  uint64_t *lr_rem, *lr_sel; /* 64-bit remainders and a copy to select in */
  int64_t *lr_num64, *lr_out64; /* the 64-bit path's quotas and results */
  uint32_t lr_hist[4096]; /* remainder histogram (lr.c) */
  size_t caplr;
  cand_t *cand;
  size_t capcand;
  rep_t *rep;
  size_t caprep;
  __int128 *lvl;       /* per-level offset sums */
  size_t caplvl;
  dg_changes_t *tmp;   /* used when the caller passes out == NULL */
};

/* ---- row access ------------------------------------------------------- */

static inline erow_t *ROW(const dg_etable_t *t, uint32_t slot) {
  return (erow_t *)(t->rows + (size_t)slot * t->stride);
}
static inline int64_t *NUMS(const dg_etable_t *t, uint32_t slot) {
  return (int64_t *)(t->rows + (size_t)slot * t->stride + sizeof(erow_t));
}
static inline etext_t **TEXTS(const dg_etable_t *t, uint32_t slot) {
  return (etext_t **)(t->rows + (size_t)slot * t->stride + sizeof(erow_t) +
                      (size_t)t->nnum * sizeof(int64_t));
}
static inline bool in_range(__int128 v) { return v > -DG_DECIMAL_LIMIT && v < DG_DECIMAL_LIMIT; }

/* ---- table.c ----------------------------------------------------------- */
uint32_t dg__et_lookup(const dg_etable_t *t, int64_t id);          /* slot or 0 */
void dg__et_index_put(dg_etable_t *t, uint32_t slot);
void dg__et_index_del(dg_etable_t *t, int64_t id);
uint32_t dg__et_slot_alloc(dg_etable_t *t);                      /* may move t->rows */
void dg__et_slot_free(dg_etable_t *t, uint32_t slot);            /* frees kids, texts */
void dg__et_kid_link(dg_etable_t *t, uint32_t parent, uint32_t kid);
void dg__et_kid_unlink(dg_etable_t *t, uint32_t parent, uint32_t kid);
bool dg__et_is_held(const dg_etable_t *t, uint32_t slot, uint32_t col);
void dg__et_hold_set(dg_etable_t *t, uint32_t slot, uint32_t col, bool on);
void dg__et_holds_below_add(dg_etable_t *t, uint32_t from, int64_t d);
etext_t *dg__et_text_new(const char *s, size_t len);
void dg__et_after_op(dg_etable_t *t);
void *dg__et_grow(void *p, size_t *cap, size_t need, size_t elem);

/* ---- changes.c ---------------------------------------------------------- */
dg_change_t *dg__ch_push(dg_changes_t *c);
int64_t dg__ch_text(dg_changes_t *c, const char *s, size_t len); /* handle; -1 for NULL */
void dg__ch_rewind(dg_changes_t *c, size_t n, size_t alen);

/* ---- journal.c ---------------------------------------------------------- */
static inline bool journaling(const dg_etable_t *t) { return t->nmarks > 0; }
void dg__j_push(dg_etable_t *t, uint8_t kind, uint32_t slot, uint32_t aux, int64_t old);
void dg__j_push_text(dg_etable_t *t, uint32_t slot, uint32_t col, etext_t *old);
void dg__et_apply(dg_etable_t *t, const dg_changes_t *c, size_t from);
void dg__et_free_subtree(dg_etable_t *t, uint32_t root);

/* ---- lr.c --------------------------------------------------------------- */
/* Rounds quotas num[i]/den (den > 0, Σ num = total * den) to integers out[i]
 * summing to total by largest remainder, ties to the lower i, mirrored for
 * total < 0. */
void dg__lr_round(dg_etable_t *t, const __int128 *num, __int128 den, __int128 total, uint32_t n,
                  __int128 *out);
void dg__lr_reserve(dg_etable_t *t, size_t n);
/* The same with 64-bit operands: |num[i]| <= INT64_MAX, 0 < den <= INT64_MAX,
 * |total| <= INT64_MAX. Divides by multiplying with den's reciprocal. */
void dg__lr_round64(dg_etable_t *t, const int64_t *num, int64_t den, int64_t total, uint32_t n,
                    int64_t *out);

#endif
