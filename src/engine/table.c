/*
 * table.c -- the engine's storage: rows in one strided array, the id index,
 * children arrays, the hold set, text cells; the read API; the invariant
 * checker; and the bulk loader. The operations that change values live in
 * engine.c, the savepoint journal in journal.c.
 *
 * Memory per row (see internal.h): a 24-byte header, 8 bytes per number and
 * text column, 4 bytes in its parent's children array (plus 8 bytes of
 * count and capacity once per parent, and the allocator's), and 4 bytes of
 * direct id map when the ids are dense, else 10.7 to 21.3 bytes of hashed
 * id index (8-byte entries kept at most 3/4 full, rounded to a power of
 * two).
 */
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"

/* ======================================================================
 * Small helpers
 * ====================================================================== */

void *dg__et_grow(void *p, size_t *cap, size_t need, size_t elem) {
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  if (c == *cap) return p;
  p = dg_realloc(p, c * elem);
  *cap = c;
  return p;
}

static inline uint64_t mix64(uint64_t x) {
  /* splitmix64's finalizer: sequential ids spread over the whole table. */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

etext_t *dg__et_text_new(const char *s, size_t len) {
  if (s == NULL) return NULL;
  etext_t *x = dg_malloc(sizeof(etext_t) + len);
  x->len = (uint32_t)len;
  if (len) memcpy(x->data, s, len);
  return x;
}

/* ======================================================================
 * Id index, direct part: ids in [dbase, dbase + dlen) map to dmap[id - dbase].
 * ====================================================================== */

/* *off = id - dbase when id lies in the direct range. */
static inline bool direct_off(const dg_etable_t *t, int64_t id, uint32_t *off) {
  uint64_t o = (uint64_t)id - (uint64_t)t->dbase;
  if (o >= t->dlen) return false;
  *off = (uint32_t)o;
  return true;
}

/* Grows the direct range by one to cover id when id is the first id after
 * it (or starts the range when there is none). Only that id is newly
 * covered and it is not indexed yet, so nothing has to move out of the
 * hash. Returns false when id is elsewhere. */
static bool direct_extend(dg_etable_t *t, int64_t id) {
  if (t->dlen == 0) {
    t->dbase = id;
  } else if ((uint64_t)id - (uint64_t)t->dbase != t->dlen || t->dlen == UINT32_MAX) {
    return false;
  }
  if (t->dlen == t->dcap) {
    /* x1.25: the map of a 10M-row table is 40 MB, and its growth is one
     * new row at a time. */
    size_t cap = (size_t)t->dcap + t->dcap / 4 + 16;
    if (cap > UINT32_MAX) cap = UINT32_MAX;
    t->dmap = dg_realloc(t->dmap, cap * sizeof(uint32_t));
    memset(t->dmap + t->dcap, 0, (cap - t->dcap) * sizeof(uint32_t));
    t->dcap = (uint32_t)cap;
  }
  t->dlen++;
  return true;
}

/* ======================================================================
 * Id index, hashed part: linear probing over (tag << 32 | slot) entries,
 * 0 = empty, at most 3/4 full. The home position comes from the hash's low
 * bits, the tag from its high 32 bits.
 * ====================================================================== */

#define ENTRY_SLOT(e) ((uint32_t)(e))
#define ENTRY_TAG(e) ((uint32_t)((e) >> 32))

uint32_t dg__et_lookup(const dg_etable_t *t, int64_t id) {
  uint32_t off;
  if (direct_off(t, id, &off)) return t->dmap[off];
  if (t->index == NULL) return 0;
  uint64_t h = mix64((uint64_t)id);
  uint32_t i = (uint32_t)h & t->index_mask, tag = (uint32_t)(h >> 32);
  for (;;) {
    uint64_t e = t->index[i];
    if (e == 0) return 0;
    if (ENTRY_TAG(e) == tag && ROW(t, ENTRY_SLOT(e))->id == id) return ENTRY_SLOT(e);
    i = (i + 1) & t->index_mask;
  }
}

static inline void index_insert_entry(dg_etable_t *t, uint64_t h, uint32_t slot) {
  uint32_t i = (uint32_t)h & t->index_mask;
  while (t->index[i] != 0) i = (i + 1) & t->index_mask;
  t->index[i] = (h & 0xffffffff00000000ull) | slot;
}

/* Inserts slot unless its id is indexed already (then returns false): one
 * probe sequence instead of a lookup plus an insert. No resize. */
static bool index_insert_new(dg_etable_t *t, uint32_t slot) {
  const int64_t id = ROW(t, slot)->id;
  const uint64_t h = mix64((uint64_t)id);
  const uint32_t tag = (uint32_t)(h >> 32);
  uint32_t i = (uint32_t)h & t->index_mask;
  for (;;) {
    uint64_t e = t->index[i];
    if (e == 0) break;
    if (ENTRY_TAG(e) == tag && ROW(t, ENTRY_SLOT(e))->id == id) return false;
    i = (i + 1) & t->index_mask;
  }
  t->index[i] = (h & 0xffffffff00000000ull) | slot;
  t->hash_count++;
  t->index_count++;
  return true;
}

static inline void index_prefetch(const dg_etable_t *t, int64_t id) {
  __builtin_prefetch(&t->index[(uint32_t)mix64((uint64_t)id) & t->index_mask]);
}

/* Rehashes the hashed part for want_entries of its own (direct ids never
 * live there). */
static void index_resize(dg_etable_t *t, size_t want_entries) {
  size_t cap = 16;
  while (cap * 3 < want_entries * 4 + 4) cap *= 2;
  DG_ASSERT(cap <= ((size_t)1 << 32));
  uint64_t *old = t->index;
  size_t oldcap = old ? (size_t)t->index_mask + 1 : 0;
  t->index = dg_calloc(cap, sizeof(uint64_t));
  t->index_mask = (uint32_t)(cap - 1);
  for (size_t k = 0; k < oldcap; k++) {
    uint64_t e = old[k];
    if (e == 0) continue;
    index_insert_entry(t, mix64((uint64_t)ROW(t, ENTRY_SLOT(e))->id), ENTRY_SLOT(e));
  }
  dg_free(old);
}

void dg__et_index_put(dg_etable_t *t, uint32_t slot) {
  const int64_t id = ROW(t, slot)->id;
  uint32_t off;
  if (direct_off(t, id, &off) || (direct_extend(t, id) && direct_off(t, id, &off))) {
    DG_ASSERT(t->dmap[off] == 0);
    t->dmap[off] = slot;
    t->index_count++;
    return;
  }
  if (t->index == NULL || ((size_t)t->hash_count + 1) * 4 > ((size_t)t->index_mask + 1) * 3)
    index_resize(t, (size_t)t->hash_count * 2 + 16);
  index_insert_entry(t, mix64((uint64_t)id), slot);
  t->hash_count++;
  t->index_count++;
}

void dg__et_index_del(dg_etable_t *t, int64_t id) {
  uint32_t off;
  if (direct_off(t, id, &off)) {
    DG_ASSERT(t->dmap[off] != 0);
    t->dmap[off] = 0;
    t->index_count--;
    return;
  }
  uint32_t m = t->index_mask;
  uint64_t h = mix64((uint64_t)id);
  uint32_t i = (uint32_t)h & m, tag = (uint32_t)(h >> 32);
  for (;; i = (i + 1) & m) {
    uint64_t e = t->index[i];
    DG_ASSERT(e != 0);
    if (ENTRY_TAG(e) == tag && ROW(t, ENTRY_SLOT(e))->id == id) break;
  }
  /* Backward-shift deletion: pull later entries of the run into the hole
   * unless their home position lies cyclically in (hole, j]. */
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & m;
    uint64_t e = t->index[j];
    if (e == 0) break;
    uint32_t k = (uint32_t)mix64((uint64_t)ROW(t, ENTRY_SLOT(e))->id) & m;
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    t->index[i] = e;
    i = j;
  }
  t->index[i] = 0;
  t->hash_count--;
  t->index_count--;
}

/* ======================================================================
 * Slots and children arrays
 * ====================================================================== */

static int rows_reserve(dg_etable_t *t, size_t want, bool try_only) {
  if (want <= t->capslots) return 0;
  if (want > (size_t)DG_ENGINE_MAX_ROWS + 1) return DG_EINVAL;
  size_t cap = t->capslots ? t->capslots : 16;
  if (try_only)
    cap = want; /* an explicit reservation (bulk load) is taken at its word */
  else
    while (cap < want) cap = cap + cap / 2 + 16; /* x1.5: 10M-row tables matter */
  if (cap > (size_t)DG_ENGINE_MAX_ROWS + 1) cap = (size_t)DG_ENGINE_MAX_ROWS + 1;
  void *p = try_only ? dg_try_realloc(t->rows, cap * t->stride) : dg_realloc(t->rows, cap * t->stride);
  if (p == NULL) return DG_ENOMEM;
  t->rows = p;
  t->capslots = (uint32_t)cap;
  return 0;
}

uint32_t dg__et_slot_alloc(dg_etable_t *t) {
  uint32_t s;
  if (t->nfree > 0) {
    s = t->free_slots[--t->nfree];
  } else {
    DG_ASSERT(rows_reserve(t, (size_t)t->nslots + 1, false) == 0);
    s = t->nslots++;
  }
  memset(ROW(t, s), 0, t->stride);
  ROW(t, s)->parent = NIL;
  return s;
}

void dg__et_slot_free(dg_etable_t *t, uint32_t slot) {
  erow_t *r = ROW(t, slot);
  if (!(r->flags & ROW_LOADING)) dg__et_kids_free(r);
  etext_t **tx = TEXTS(t, slot);
  for (uint32_t c = 0; c < t->ntext; c++) dg_free(tx[c]);
  memset(r, 0, t->stride);
  r->parent = NIL;
  if (t->nfree == t->capfree) {
    size_t cap = t->capfree;
    t->free_slots = dg__et_grow(t->free_slots, &cap, (size_t)t->nfree + 1, sizeof(uint32_t));
    t->capfree = (uint32_t)cap;
  }
  t->free_slots[t->nfree++] = slot;
}

void dg__et_kids_free(erow_t *r) {
  if (r->u.kids && !KIDS_IS_RANGE(r)) dg_free(r->u.kids);
  r->u.kids = NULL;
}

/* Turns a range of children into an array (same order) before the first
 * structural change under the parent; returns the array (NULL: no children). */
static ekids_t *kids_materialise(erow_t *p) {
  if (p->u.kids == NULL || !KIDS_IS_RANGE(p)) return p->u.kids;
  const kview_t v = KVIEW(p);
  ekids_t *k = dg_malloc(sizeof(ekids_t) + (size_t)v.n * sizeof(uint32_t));
  k->n = k->cap = v.n;
  for (uint32_t i = 0; i < v.n; i++) k->s[i] = v.first + i;
  p->u.kids = k;
  return k;
}

/* Position of the first child with id >= id (binary search on ids). */
static uint32_t kid_lower_bound(const dg_etable_t *t, const erow_t *p, int64_t id) {
  const kview_t kids = KVIEW(p);
  uint32_t lo = 0, hi = kids.n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (ROW(t, KAT(kids, mid))->id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

void dg__et_kid_link(dg_etable_t *t, uint32_t parent, uint32_t kid) {
  erow_t *p = ROW(t, parent);
  int64_t id = ROW(t, kid)->id;
  kids_materialise(p);
  const uint32_t n = NKIDS(p);
  if (p->u.kids == NULL || n == p->u.kids->cap) {
    /* 4 to start: 8 + 16 bytes fill glibc's smallest (32-byte) chunk. */
    size_t cap = n ? (size_t)n * 2 : 4;
    p->u.kids = dg_realloc(p->u.kids, sizeof(ekids_t) + cap * sizeof(uint32_t));
    p->u.kids->n = n;
    p->u.kids->cap = (uint32_t)cap;
  }
  uint32_t *kids = p->u.kids->s;
  uint32_t pos = (n == 0 || ROW(t, kids[n - 1])->id < id)
                     ? n /* ids usually arrive in increasing order */
                     : kid_lower_bound(t, p, id);
  memmove(kids + pos + 1, kids + pos, (size_t)(n - pos) * sizeof(uint32_t));
  kids[pos] = kid;
  p->u.kids->n = n + 1;
  ROW(t, kid)->parent = parent;
}

void dg__et_kid_unlink(dg_etable_t *t, uint32_t parent, uint32_t kid) {
  erow_t *p = ROW(t, parent);
  uint32_t pos = kid_lower_bound(t, p, ROW(t, kid)->id);
  ekids_t *k = kids_materialise(p);
  DG_ASSERT(k && pos < k->n && k->s[pos] == kid);
  memmove(k->s + pos, k->s + pos + 1, (size_t)(k->n - pos - 1) * sizeof(uint32_t));
  if (--k->n == 0) { /* a leaf again: no empty arrays (HAS_KIDS relies on it) */
    dg_free(k);
    p->u.kids = NULL;
  }
  ROW(t, kid)->parent = NIL;
}

/* ======================================================================
 * Holds: a set of (slot, column) keys, plus per-row flags and subtree counts
 * so that spreads skip the hold logic where no hold can matter.
 * ====================================================================== */

#define HELD_EMPTY UINT64_MAX

static inline uint64_t hkey(uint32_t slot, uint32_t col) { return (uint64_t)slot << 32 | col; }

static bool held_find(const dg_etable_t *t, uint64_t key, uint32_t *pos) {
  if (t->held == NULL) return false;
  uint32_t i = (uint32_t)mix64(key) & t->held_mask;
  for (;;) {
    if (t->held[i] == HELD_EMPTY) {
      *pos = i;
      return false;
    }
    if (t->held[i] == key) {
      *pos = i;
      return true;
    }
    i = (i + 1) & t->held_mask;
  }
}

static void held_resize(dg_etable_t *t, size_t cap) {
  uint64_t *old = t->held;
  size_t oldcap = old ? (size_t)t->held_mask + 1 : 0;
  t->held = dg_malloc(cap * sizeof(uint64_t));
  for (size_t k = 0; k < cap; k++) t->held[k] = HELD_EMPTY;
  t->held_mask = (uint32_t)(cap - 1);
  for (size_t k = 0; k < oldcap; k++) {
    if (old[k] == HELD_EMPTY) continue;
    uint32_t i = (uint32_t)mix64(old[k]) & t->held_mask;
    while (t->held[i] != HELD_EMPTY) i = (i + 1) & t->held_mask;
    t->held[i] = old[k];
  }
  dg_free(old);
}

bool dg__et_is_held(const dg_etable_t *t, uint32_t slot, uint32_t col) {
  if (t->nheld[col] == 0 || !(ROW(t, slot)->flags & ROW_HELD)) return false;
  uint32_t pos;
  return held_find(t, hkey(slot, col), &pos);
}

void dg__et_holds_below_add(dg_etable_t *t, uint32_t from, int64_t d) {
  for (uint32_t s = from; s != NIL; s = ROW(t, s)->parent) ROW(t, s)->holds_below += (uint32_t)d;
}

/* Sets or clears one hold (the caller journals it). */
void dg__et_hold_set(dg_etable_t *t, uint32_t slot, uint32_t col, bool on) {
  uint64_t key = hkey(slot, col);
  uint32_t pos = 0;
  bool found = held_find(t, key, &pos);
  if (found == on) return;
  if (on) {
    if (t->held == NULL || ((size_t)t->held_count + 1) * 2 > (size_t)t->held_mask + 1) {
      held_resize(t, t->held ? ((size_t)t->held_mask + 1) * 2 : 16);
      held_find(t, key, &pos);
    }
    t->held[pos] = key;
    t->held_count++;
    t->nheld[col]++;
    ROW(t, slot)->flags |= ROW_HELD;
    dg__et_holds_below_add(t, slot, 1);
    return;
  }
  /* backward-shift deletion, as in the id index */
  uint32_t m = t->held_mask, i = pos, j = pos;
  for (;;) {
    j = (j + 1) & m;
    uint64_t k2 = t->held[j];
    if (k2 == HELD_EMPTY) break;
    uint32_t k = (uint32_t)mix64(k2) & m;
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    t->held[i] = k2;
    i = j;
  }
  t->held[i] = HELD_EMPTY;
  t->held_count--;
  t->nheld[col]--;
  dg__et_holds_below_add(t, slot, -1);
  bool any = false;
  for (uint32_t c = 0; c < t->nnum && !any; c++)
    if (t->nheld[c] > 0 && held_find(t, hkey(slot, c), &pos)) any = true;
  if (!any) ROW(t, slot)->flags &= ~ROW_HELD;
}

/* ======================================================================
 * Create, destroy, introspection
 * ====================================================================== */

int dg_etable_create(const dg_etable_opts_t *o, dg_etable_t **out) {
  if (o == NULL || out == NULL || o->nnum > DG_ENGINE_MAX_COLUMNS ||
      o->ntext > DG_ENGINE_MAX_COLUMNS || (o->nnum > 0 && o->scales == NULL))
    return DG_EINVAL;
  for (uint32_t c = 0; c < o->nnum; c++)
    if (o->scales[c] > DG_DECIMAL_MAX_SCALE) return DG_EINVAL;
  dg_etable_t *t = dg_calloc(1, sizeof *t);
  t->nnum = o->nnum;
  t->ntext = o->ntext;
  t->stride = sizeof(erow_t) + (size_t)o->nnum * sizeof(int64_t) + (size_t)o->ntext * sizeof(etext_t *);
  t->scales = dg_malloc(o->nnum ? o->nnum : 1);
  if (o->nnum) memcpy(t->scales, o->scales, o->nnum);
  t->nheld = dg_calloc(o->nnum ? o->nnum : 1, sizeof(uint32_t));
  t->tag = o->tag;
  t->flags = o->flags;
#if !defined(NDEBUG) || defined(DG_ENGINE_CHECK)
  t->check = true;
#else
  t->check = (o->flags & DG_ETABLE_CHECK) != 0;
#endif
  uint32_t s = dg__et_slot_alloc(t); /* the sentinel */
  DG_ASSERT(s == SENTINEL);
  ROW(t, s)->id = DG_ROW_NONE;
  t->tmp = dg_changes_create();
  *out = t;
  return 0;
}

static void free_rows(dg_etable_t *t) {
  for (uint32_t s = 0; s < t->nslots; s++) {
    erow_t *r = ROW(t, s);
    if (!(r->flags & ROW_LOADING)) dg__et_kids_free(r);
    etext_t **tx = TEXTS(t, s);
    for (uint32_t c = 0; c < t->ntext; c++) dg_free(tx[c]);
  }
}

void dg_etable_destroy(dg_etable_t *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->njournal; i++)
    if (t->journal[i].kind == J_TEXT) dg_free(t->journal[i].old.text);
  free_rows(t);
  dg_free(t->rows);
  dg_free(t->free_slots);
  dg_free(t->dmap);
  dg_free(t->index);
  dg_free(t->scales);
  dg_free(t->held);
  dg_free(t->nheld);
  dg_free(t->journal);
  dg_free(t->marks);
  dg_free(t->work);
  dg_free(t->stack);
  dg_free(t->lr_num);
  dg_free(t->lr_out);
  dg_free(t->lr_items);
  dg_free(t->lr_pos);
  dg_free(t->lr_rem);
  dg_free(t->lr_sel);
  dg_free(t->lr_num64);
  dg_free(t->lr_out64);
  dg_free(t->cand);
  dg_free(t->rep);
  dg_free(t->lvl);
  dg_changes_destroy(t->tmp);
  dg_free(t);
}

uint32_t dg_etable_num_columns(const dg_etable_t *t) { return t->nnum; }
uint32_t dg_etable_text_columns(const dg_etable_t *t) { return t->ntext; }
int dg_etable_scale(const dg_etable_t *t, uint32_t col) {
  return col < t->nnum ? t->scales[col] : -1;
}
size_t dg_etable_row_count(const dg_etable_t *t) { return t->nlive; }

size_t dg_etable_memory(const dg_etable_t *t) {
  size_t m = sizeof *t + (size_t)t->capslots * t->stride + (size_t)t->capfree * 4 +
             (size_t)t->dcap * 4 + (t->index ? ((size_t)t->index_mask + 1) * 8 : 0) +
             (t->held ? ((size_t)t->held_mask + 1) * 8 : 0) + (size_t)t->nnum * 5 +
             t->capjournal * sizeof(jentry_t) + (size_t)t->capmarks * sizeof(size_t) +
             t->capwork * sizeof(work_t) + t->capstack * 4 +
             t->caplr * (2 * sizeof(__int128) + sizeof(lr_item_t) + 4 + 32) +
             t->capcand * sizeof(cand_t) + t->caprep * sizeof(rep_t) + t->caplvl * sizeof(__int128);
  for (uint32_t s = 0; s < t->nslots; s++) {
    const erow_t *r = ROW(t, s);
    if (!(r->flags & ROW_LOADING) && r->u.kids && !KIDS_IS_RANGE(r))
      m += sizeof(ekids_t) + (size_t)r->u.kids->cap * 4;
    etext_t **tx = TEXTS(t, s);
    for (uint32_t c = 0; c < t->ntext; c++)
      if (tx[c]) m += sizeof(etext_t) + tx[c]->len;
  }
  return m;
}

void dg__et_after_op(dg_etable_t *t) {
  if (t->check) DG_ASSERT(dg_etable_verify(t) == 0);
}

/* ======================================================================
 * Reading
 * ====================================================================== */

int dg_etable_row_get(const dg_etable_t *t, int64_t id, dg_erow_t *out) {
  return dg_etable_row_read(t, id, out, NULL);
}

int dg_etable_row_read(const dg_etable_t *t, int64_t id, dg_erow_t *out, int64_t *nums) {
  if (t->loading) return DG_EINVAL;
  uint32_t s = dg__et_lookup(t, id);
  if (s == 0) return DG_ENOTFOUND;
  const erow_t *r = ROW(t, s);
  out->id = id;
  out->parent_id = r->parent == SENTINEL ? DG_ROW_NONE : ROW(t, r->parent)->id;
  out->nchildren = NKIDS(r);
  if (nums && t->nnum) memcpy(nums, NUMS(t, s), (size_t)t->nnum * sizeof(int64_t));
  return 0;
}

void dg_etable_prefetch(const dg_etable_t *t, int64_t id, int stage) {
  uint32_t off;
  if (direct_off(t, id, &off)) {
    if (stage == 0)
      __builtin_prefetch(&t->dmap[off]);
    else if (t->dmap[off] != 0 && t->dmap[off] < t->nslots)
      __builtin_prefetch(ROW(t, t->dmap[off]));
    return;
  }
  if (t->index == NULL) return;
  const uint64_t h = mix64((uint64_t)id);
  const uint64_t *e = &t->index[(uint32_t)h & t->index_mask];
  if (stage == 0) {
    __builtin_prefetch(e);
  } else if (*e != 0 && ENTRY_TAG(*e) == (uint32_t)(h >> 32) && ENTRY_SLOT(*e) < t->nslots) {
    __builtin_prefetch(ROW(t, ENTRY_SLOT(*e)));
  }
}

int dg_etable_number_get(const dg_etable_t *t, int64_t id, uint32_t col, int64_t *out) {
  if (t->loading || col >= t->nnum) return DG_EINVAL;
  uint32_t s = dg__et_lookup(t, id);
  if (s == 0) return DG_ENOTFOUND;
  *out = NUMS(t, s)[col];
  return 0;
}

int dg_etable_numbers_get(const dg_etable_t *t, int64_t id, int64_t *out) {
  if (t->loading) return DG_EINVAL;
  uint32_t s = dg__et_lookup(t, id);
  if (s == 0) return DG_ENOTFOUND;
  if (t->nnum) memcpy(out, NUMS(t, s), (size_t)t->nnum * sizeof(int64_t));
  return 0;
}

int dg_etable_text_get(const dg_etable_t *t, int64_t id, uint32_t col, const char **s, size_t *len) {
  if (t->loading || col >= t->ntext) return DG_EINVAL;
  uint32_t slot = dg__et_lookup(t, id);
  if (slot == 0) return DG_ENOTFOUND;
  const etext_t *x = TEXTS(t, slot)[col];
  *s = x ? x->data : NULL;
  *len = x ? x->len : 0;
  return 0;
}

int dg_etable_children_get(const dg_etable_t *t, int64_t parent_id, int64_t after, int64_t *ids,
                           size_t cap, size_t *n) {
  if (t->loading) return DG_EINVAL;
  uint32_t p = SENTINEL;
  if (parent_id != DG_ROW_NONE && (p = dg__et_lookup(t, parent_id)) == 0) return DG_ENOTFOUND;
  const erow_t *r = ROW(t, p);
  const kview_t kids = KVIEW(r);
  const uint32_t nk = kids.n;
  uint32_t pos = 0;
  if (after != DG_ROW_NONE) {
    pos = kid_lower_bound(t, r, after);
    if (pos < nk && ROW(t, KAT(kids, pos))->id == after) pos++;
  }
  size_t k = 0;
  for (; pos < nk && k < cap; pos++) ids[k++] = ROW(t, KAT(kids, pos))->id;
  *n = k;
  return 0;
}

int dg_etable_is_held(const dg_etable_t *t, int64_t id, uint32_t col, bool *out) {
  if (t->loading || col >= t->nnum) return DG_EINVAL;
  uint32_t s = dg__et_lookup(t, id);
  if (s == 0) return DG_ENOTFOUND;
  *out = dg__et_is_held(t, s, col);
  return 0;
}

/* ======================================================================
 * The invariant checker
 * ====================================================================== */

#define VFAIL(...)                                       \
  do {                                                   \
    fprintf(stderr, "duckgrid engine verify: " __VA_ARGS__); \
    fputc('\n', stderr);                                 \
    rc = DG_EINTERNAL;                                   \
    goto done;                                           \
  } while (0)

int dg_etable_verify(const dg_etable_t *t) {
  if (t->loading) return DG_EINVAL;
  int rc = 0;
  uint32_t *order = dg_malloc(((size_t)t->nlive + 1) * sizeof(uint32_t));
  uint32_t *heldcount = dg_calloc(t->nnum ? t->nnum : 1, sizeof(uint32_t));
  size_t live = 0, kidsum = 0;
  for (uint32_t s = 0; s < t->nslots; s++) {
    const erow_t *r = ROW(t, s);
    if (s != SENTINEL && !(r->flags & ROW_LIVE)) continue;
    if (r->flags & (ROW_MARK | ROW_LOADING)) VFAIL("row slot %u has a stale flag %#x", s, r->flags);
    const int64_t *v = NUMS(t, s);
    if (s != SENTINEL) {
      live++;
      if (dg__et_lookup(t, r->id) != s) VFAIL("row %lld is not in the index", (long long)r->id);
      uint32_t p = r->parent;
      if (p == NIL || p >= t->nslots || (p != SENTINEL && !(ROW(t, p)->flags & ROW_LIVE)))
        VFAIL("row %lld has a bad parent slot %u", (long long)r->id, p);
      for (uint32_t c = 0; c < t->nnum; c++)
        if (!in_range(v[c])) VFAIL("row %lld col %u out of range", (long long)r->id, c);
    }
    const kview_t kids = KVIEW(r);
    const uint32_t nk = kids.n;
    if (r->u.kids && !KIDS_IS_RANGE(r) && (r->u.kids->n == 0 || r->u.kids->n > r->u.kids->cap))
      VFAIL("slot %u: bad children array (empty, or over its capacity)", s);
    if (KIDS_IS_RANGE(r) && (nk == 0 || (uint64_t)kids.first + nk > t->nslots))
      VFAIL("slot %u: bad children range %u + %u", s, kids.first, nk);
    kidsum += nk;
    uint64_t own = 0;
    if (s != SENTINEL)
      for (uint32_t c = 0; c < t->nnum; c++)
        if (t->nheld[c] > 0 && (r->flags & ROW_HELD) && dg__et_is_held(t, s, c)) own++, heldcount[c]++;
    if (s != SENTINEL && ((own > 0) != ((r->flags & ROW_HELD) != 0)))
      VFAIL("row %lld: held flag disagrees with the hold set", (long long)r->id);
    uint64_t below = own;
    for (uint32_t i = 0; i < nk; i++) {
      uint32_t k = KAT(kids, i);
      const erow_t *kr = ROW(t, k);
      if (k == 0 || k >= t->nslots || !(kr->flags & ROW_LIVE) || kr->parent != s)
        VFAIL("slot %u: child %u does not point back", s, k);
      if (i > 0 && ROW(t, KAT(kids, i - 1))->id >= kr->id)
        VFAIL("row %lld: children not in id order", (long long)r->id);
      below += kr->holds_below;
    }
    if (s != SENTINEL && below != r->holds_below)
      VFAIL("row %lld: holds_below %u, counted %llu", (long long)r->id, r->holds_below,
            (unsigned long long)below);
    if (s != SENTINEL && nk > 0) {
      for (uint32_t c = 0; c < t->nnum; c++) {
        __int128 sum = 0;
        for (uint32_t i = 0; i < nk; i++) sum += NUMS(t, KAT(kids, i))[c];
        if (sum != v[c])
          VFAIL("row %lld col %u: value %lld but children sum to %lld", (long long)r->id, c,
                (long long)v[c], (long long)sum);
      }
    }
  }
  {
    size_t direct = 0, hashed = 0;
    for (uint32_t i = 0; i < t->dlen; i++) direct += t->dmap[i] != 0;
    for (uint32_t i = 0; t->index && i <= t->index_mask; i++) hashed += t->index[i] != 0;
    if (hashed != t->hash_count || direct + hashed != t->index_count || t->dlen > t->dcap)
      VFAIL("index: %zu direct + %zu hashed entries, counts %u / %u", direct, hashed, t->hash_count,
            t->index_count);
  }
  if (live != t->nlive || kidsum != live || t->index_count != live)
    VFAIL("counts: %zu live rows, nlive %u, %zu children links, %u indexed", live, t->nlive, kidsum,
          t->index_count);
  for (uint32_t c = 0; c < t->nnum; c++)
    if (heldcount[c] != t->nheld[c]) VFAIL("column %u: %u holds counted, %u recorded", c, heldcount[c], t->nheld[c]);
  {
    size_t inset = 0;
    for (size_t i = 0; t->held && i <= t->held_mask; i++)
      if (t->held[i] != HELD_EMPTY) inset++;
    if (inset != t->held_count) VFAIL("hold set holds %zu keys, count %u", inset, t->held_count);
    size_t total = 0;
    for (uint32_t c = 0; c < t->nnum; c++) total += heldcount[c];
    if (total != inset) VFAIL("hold set has keys of rows that are gone");
  }
  /* Everything reachable from the sentinel (no cycles). */
  {
    size_t head = 0, tail = 0;
    order[tail++] = SENTINEL;
    while (head < tail) {
      const erow_t *r = ROW(t, order[head++]);
      const kview_t kids = KVIEW(r);
      for (uint32_t i = 0; i < kids.n; i++) {
        if (tail > t->nlive) VFAIL("more rows reachable than live: a cycle");
        order[tail++] = KAT(kids, i);
      }
    }
    if (tail != (size_t)t->nlive + 1) VFAIL("%zu rows reachable of %u", tail - 1, t->nlive);
  }
done:
  dg_free(order);
  dg_free(heldcount);
  return rc;
}

/* ======================================================================
 * Bulk load
 * ====================================================================== */

int dg_etable_load_begin(dg_etable_t *t, size_t expected_rows) {
  if (t->loading || t->nlive > 0 || t->nmarks > 0) return DG_EINVAL;
  if (expected_rows > DG_ENGINE_MAX_ROWS) return DG_EINVAL;
  int rc = rows_reserve(t, expected_rows + 1, true);
  if (rc) return rc;
  t->loading = true;
  return 0;
}

int dg_etable_load_row(dg_etable_t *t, int64_t id, int64_t parent_id, const int64_t *nums,
                       const dg_etext_t *texts) {
  if (!t->loading || id == DG_ROW_NONE) return DG_EINVAL;
  if (t->nslots > DG_ENGINE_MAX_ROWS) return DG_EINVAL;
  if (nums)
    for (uint32_t c = 0; c < t->nnum; c++)
      if (!in_range(nums[c])) return DG_EOVERFLOW;
  if (texts)
    for (uint32_t c = 0; c < t->ntext; c++)
      if (texts[c].ptr && texts[c].len > DG_ENGINE_MAX_TEXT) return DG_EINVAL;
  uint32_t s = dg__et_slot_alloc(t);
  erow_t *r = ROW(t, s);
  r->id = id;
  r->u.load_parent = parent_id;
  r->flags = ROW_LOADING;
  if (nums && t->nnum) memcpy(NUMS(t, s), nums, (size_t)t->nnum * sizeof(int64_t));
  if (texts) {
    etext_t **tx = TEXTS(t, s);
    for (uint32_t c = 0; c < t->ntext; c++) tx[c] = dg__et_text_new(texts[c].ptr, texts[c].len);
  }
  return 0;
}

typedef struct idslot_s {
  int64_t id;
  uint32_t slot;
} idslot_t;

static int cmp_idslot(const void *a, const void *b) {
  int64_t x = ((const idslot_t *)a)->id, y = ((const idslot_t *)b)->id;
  return x < y ? -1 : x > y;
}

/* Sorts a children array by id: the ids are fetched once into (id, slot)
 * pairs (one random access per child), then insertion sort for short lists
 * and qsort for long ones. buf and cap hold a reusable pair buffer. */
static void sort_kids(const dg_etable_t *t, uint32_t *kids, uint32_t n, idslot_t **buf, size_t *cap) {
  *buf = dg__et_grow(*buf, cap, n, sizeof(idslot_t));
  idslot_t *p = *buf;
  for (uint32_t i = 0; i < n; i++) p[i] = (idslot_t){ROW(t, kids[i])->id, kids[i]};
  if (n <= 32) {
    for (uint32_t i = 1; i < n; i++) {
      idslot_t x = p[i];
      uint32_t j = i;
      while (j > 0 && p[j - 1].id > x.id) p[j] = p[j - 1], j--;
      p[j] = x;
    }
  } else {
    qsort(p, n, sizeof(idslot_t), cmp_idslot);
  }
  for (uint32_t i = 0; i < n; i++) kids[i] = p[i].slot;
}

/* Drops every loaded row: the table is empty again. */
static void load_reset(dg_etable_t *t) {
  for (uint32_t s = 1; s < t->nslots; s++) {
    erow_t *r = ROW(t, s);
    if (!(r->flags & ROW_LOADING)) dg__et_kids_free(r);
    etext_t **tx = TEXTS(t, s);
    for (uint32_t c = 0; c < t->ntext; c++) dg_free(tx[c]);
  }
  erow_t *z = ROW(t, SENTINEL);
  dg__et_kids_free(z);
  t->nslots = 1;
  t->nfree = 0;
  t->nlive = 0;
  dg_free(t->dmap);
  t->dmap = NULL;
  t->dbase = 0;
  t->dlen = t->dcap = 0;
  dg_free(t->index);
  t->index = NULL;
  t->index_mask = 0;
  t->hash_count = 0;
  t->index_count = 0;
  t->loading = false;
}

int dg_etable_load_finish(dg_etable_t *t, unsigned flags) {
  if (!t->loading) return DG_EINVAL;
  int rc = 0;
  uint32_t n = t->nslots - 1;
  uint32_t *order = NULL;
  /* 1. the id index (duplicates fail): direct when the ids fill at least
   * half of [min, max] -- 4 bytes per id of range against 10.7 to 21.3 per
   * id hashed -- else hashed. */
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (uint32_t s = 1; s <= n; s++) {
    int64_t id = ROW(t, s)->id;
    lo = id < lo ? id : lo;
    hi = id > hi ? id : hi;
  }
  uint64_t span = n ? (uint64_t)hi - (uint64_t)lo + 1 : 0; /* 0 also when it wraps */
  if (n > 0 && span != 0 && span <= (uint64_t)n * 2 + 64 && span <= UINT32_MAX) {
    t->dmap = dg_calloc(span, sizeof(uint32_t));
    t->dbase = lo;
    t->dlen = t->dcap = (uint32_t)span;
    for (uint32_t s = 1; s <= n; s++) {
      uint32_t *e = &t->dmap[(uint64_t)ROW(t, s)->id - (uint64_t)lo];
      if (*e != 0) {
        rc = DG_EEXIST;
        goto fail;
      }
      *e = s;
    }
    t->index_count = n;
  } else {
    /* Random accesses dominate a large load: prefetch the index position
     * of the row 16 ahead while inserting this one. */
    index_resize(t, n);
    for (uint32_t s = 1; s <= n; s++) {
      if (s + 16 <= n) index_prefetch(t, ROW(t, s + 16)->id);
      if (!index_insert_new(t, s)) {
        rc = DG_EEXIST;
        goto fail;
      }
    }
  }
  /* 2. parents */
  for (uint32_t s = 1; s <= n; s++) {
    if (s + 16 <= n && ROW(t, s + 16)->u.load_parent != DG_ROW_NONE)
      dg_etable_prefetch(t, ROW(t, s + 16)->u.load_parent, 0);
    erow_t *r = ROW(t, s);
    int64_t pid = r->u.load_parent;
    uint32_t p = SENTINEL;
    if (pid != DG_ROW_NONE && (p = dg__et_lookup(t, pid)) == 0) {
      rc = DG_ENOTFOUND;
      goto fail;
    }
    r->parent = p;
  }
  /* 3. children arrays: count into the union (the parent ids are spent; a
   * separate pass, since a parent's own load_parent may still be unread in
   * pass 2), size exactly, fill in slot order, then sort by id if needed.
   * Nothing fails from here until every union holds a kids pointer. */
  for (uint32_t s = 0; s <= n; s++) {
    erow_t *r = ROW(t, s);
    r->flags &= ~ROW_LOADING;
    r->u.load_count = 0;
  }
  /* While counting, the high half keeps the last child's slot, or NIL once
   * two children were not adjacent: such children cannot be a range. */
  for (uint32_t s = 1; s <= n; s++) {
    erow_t *p = ROW(t, ROW(t, s)->parent);
    uint32_t cnt = (uint32_t)p->u.load_count, last = (uint32_t)(p->u.load_count >> 32);
    last = (cnt == 0 || (last != NIL && s == last + 1)) ? s : NIL;
    p->u.load_count = (uint64_t)last << 32 | (cnt + 1);
  }
  for (uint32_t s = 0; s <= n; s++) {
    erow_t *r = ROW(t, s);
    const uint32_t cnt = (uint32_t)r->u.load_count, last = (uint32_t)(r->u.load_count >> 32);
    r->u.kids = NULL;
    if (cnt == 0) continue;
    if (last != NIL && cnt <= KIDS_RANGE_MAX) { /* adjacent: a range if also in id order */
      const uint32_t first = last - cnt + 1;
      uint32_t i = 1;
      while (i < cnt && ROW(t, first + i - 1)->id < ROW(t, first + i)->id) i++;
      if (i == cnt) {
        r->u.kids_range = (uint64_t)first << 32 | (uint64_t)cnt << 1 | 1u;
        continue;
      }
    }
    r->u.kids = dg_malloc(sizeof(ekids_t) + (size_t)cnt * sizeof(uint32_t));
    r->u.kids->n = 0;
    r->u.kids->cap = cnt;
  }
  for (uint32_t s = 1; s <= n; s++) {
    erow_t *p = ROW(t, ROW(t, s)->parent);
    if (KIDS_IS_RANGE(p)) continue;
    p->u.kids->s[p->u.kids->n++] = s;
  }
  {
    /* Rows fed in id order give sorted lists already: only sort when a
     * list is out of order (the check costs what the sort's fetch would). */
    idslot_t *pairs = NULL;
    size_t cap = 0;
    for (uint32_t s = 0; s <= n; s++) {
      erow_t *r = ROW(t, s);
      int64_t prev = INT64_MIN;
      if (r->u.kids == NULL || KIDS_IS_RANGE(r)) continue; /* ranges are in id order */
      const uint32_t nk = r->u.kids->n;
      uint32_t *kids = r->u.kids->s;
      for (uint32_t i = 0; i < nk; i++) {
        int64_t id = ROW(t, kids[i])->id;
        if (id < prev) {
          sort_kids(t, kids, nk, &pairs, &cap);
          break;
        }
        prev = id;
      }
    }
    dg_free(pairs);
  }
  /* 4. breadth-first order from the roots; rows not reached sit on a cycle */
  order = dg_malloc(((size_t)n + 1) * sizeof(uint32_t));
  size_t head = 0, tail = 0;
  order[tail++] = SENTINEL;
  while (head < tail) {
    const erow_t *r = ROW(t, order[head++]);
    const kview_t kids = KVIEW(r);
    for (uint32_t i = 0; i < kids.n; i++) order[tail++] = KAT(kids, i);
  }
  if (tail != (size_t)n + 1) {
    rc = DG_ECONFLICT;
    goto fail;
  }
  /* 5. parents from their children, deepest first */
  for (size_t i = tail; i-- > 1;) {
    uint32_t s = order[i];
    const erow_t *r = ROW(t, s);
    const kview_t kids = KVIEW(r);
    if (kids.n == 0) continue;
    int64_t *v = NUMS(t, s);
    for (uint32_t c = 0; c < t->nnum; c++) {
      __int128 sum = 0;
      for (uint32_t k = 0; k < kids.n; k++) sum += NUMS(t, KAT(kids, k))[c];
      if (flags & DG_ELOAD_RECOMPUTE) {
        if (!in_range(sum)) {
          rc = DG_EOVERFLOW;
          goto fail;
        }
        v[c] = (int64_t)sum;
      } else if (sum != v[c]) {
        rc = DG_EINTERNAL;
        goto fail;
      }
    }
  }
  for (uint32_t s = 1; s <= n; s++) ROW(t, s)->flags = ROW_LIVE;
  t->nlive = n;
  t->loading = false;
  dg_free(order);
  dg__et_after_op(t);
  return 0;
fail:
  dg_free(order);
  load_reset(t);
  return rc;
}
