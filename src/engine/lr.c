/*
 * lr.c -- largest-remainder rounding, the one place where exact rational
 * shares become integers (units of a column's last digit).
 *
 * Input: n quotas num[i] / den (den > 0) whose sum is exactly the integer
 * `total`. For total >= 0 every item gets floor(num[i] / den) -- a true
 * floor, also for negative quotas of mixed-sign weights -- and the
 * k = total - Σ floor items with the largest remainders (num[i] mod den, in
 * [0, den)) get one unit more; equal remainders go to the lower position,
 * and positions are in id order, so ties go to the lower id. Since the
 * quotas sum to total, 0 <= k < n, so every item ends at the floor or the
 * ceiling of its quota. For total < 0 the problem is mirrored (negate the
 * quotas and the total, round, negate back), which makes rounding symmetric:
 * spreading -x gives exactly the negation of spreading x.
 *
 * The top k are found with a quickselect on (remainder desc, position asc),
 * a strict total order, so the result does not depend on the selection
 * algorithm: O(n) expected per call. Divisions use 64-bit arithmetic when
 * operands fit (the common case) and __int128 otherwise.
 */
#include "engine/internal.h"

void dg__lr_reserve(dg_etable_t *t, size_t n) {
  if (n <= t->caplr) return;
  size_t cap = t->caplr ? t->caplr : 64;
  while (cap < n) cap *= 2;
  t->lr_num = dg_realloc(t->lr_num, cap * sizeof(__int128));
  t->lr_out = dg_realloc(t->lr_out, cap * sizeof(__int128));
  t->lr_items = dg_realloc(t->lr_items, cap * sizeof(lr_item_t));
  t->lr_pos = dg_realloc(t->lr_pos, cap * sizeof(uint32_t));
  t->caplr = cap;
}

/* a is ranked before b: larger remainder, or equal remainder and lower position. */
static inline bool better(const lr_item_t *a, const lr_item_t *b) {
  return a->rem > b->rem || (a->rem == b->rem && a->pos < b->pos);
}

static inline void swap(lr_item_t *a, lr_item_t *b) {
  lr_item_t x = *a;
  *a = *b;
  *b = x;
}

/* Reorders it[0..n) so that it[0..k) are the k best items (0 < k < n). */
static void select_top(lr_item_t *it, uint32_t n, uint32_t k) {
  uint32_t lo = 0, hi = n; /* the boundary k lies in [lo, hi) */
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2, last = hi - 1;
    /* median of three into it[last] as the pivot */
    if (better(&it[mid], &it[lo])) swap(&it[mid], &it[lo]);
    if (better(&it[last], &it[lo])) swap(&it[last], &it[lo]);
    if (better(&it[mid], &it[last])) swap(&it[mid], &it[last]);
    lr_item_t pv = it[last];
    uint32_t store = lo;
    for (uint32_t i = lo; i < last; i++)
      if (better(&it[i], &pv)) swap(&it[i], &it[store++]);
    swap(&it[store], &it[last]);
    /* [lo, store) better than the pivot at store, (store, hi) worse */
    if (store == k || store + 1 == k) return;
    if (k < store)
      hi = store;
    else
      lo = store + 1;
  }
}

void dg__lr_round(dg_etable_t *t, const __int128 *num, __int128 den, __int128 total, uint32_t n,
                  __int128 *out) {
  DG_ASSERT(den > 0);
  bool neg = total < 0;
  __int128 T = neg ? -total : total;
  lr_item_t *it = t->lr_items;
  __int128 sumf = 0;
  bool small_den = den <= INT64_MAX;
  int64_t d64 = small_den ? (int64_t)den : 0;
  for (uint32_t i = 0; i < n; i++) {
    __int128 a = neg ? -num[i] : num[i];
    __int128 q, r;
    if (small_den && a >= INT64_MIN && a <= INT64_MAX) {
      int64_t a64 = (int64_t)a, q64 = a64 / d64, r64 = a64 % d64;
      if (r64 < 0) q64--, r64 += d64;
      q = q64, r = r64;
    } else {
      q = a / den, r = a % den;
      if (r < 0) q--, r += den;
    }
    out[i] = q;
    sumf += q;
    it[i].rem = (unsigned __int128)r;
    it[i].pos = i;
  }
  __int128 k = T - sumf;
  DG_ASSERT(k >= 0 && k <= (__int128)n);
  if (k > 0) {
    if (k < (__int128)n) select_top(it, n, (uint32_t)k);
    for (uint32_t j = 0; j < (uint32_t)k; j++) out[it[j].pos] += 1;
  }
  if (neg)
    for (uint32_t i = 0; i < n; i++) out[i] = -out[i];
}
