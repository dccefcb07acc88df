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
 * Selecting the top k: when the denominator fits 64 bits (nearly always),
 * a quickselect on a copy of the plain uint64_t remainders finds the k-th
 * largest remainder r*; every item above r* gets a unit, and the units left
 * go to the items equal to r* in position order -- exactly the top k of the
 * order (remainder desc, position asc). Otherwise a quickselect on
 * (remainder, position) items does the same. Both are O(n) expected, and the
 * result does not depend on the selection algorithm since the order is
 * strict. Divisions use 64-bit arithmetic when operands fit and __int128
 * otherwise.
 */
#include <string.h>

#include "engine/internal.h"

void dg__lr_reserve(dg_etable_t *t, size_t n) {
  if (n <= t->caplr) return;
  size_t cap = t->caplr ? t->caplr : 64;
  while (cap < n) cap *= 2;
  t->lr_num = dg_realloc(t->lr_num, cap * sizeof(__int128));
  t->lr_out = dg_realloc(t->lr_out, cap * sizeof(__int128));
  t->lr_items = dg_realloc(t->lr_items, cap * sizeof(lr_item_t));
  t->lr_pos = dg_realloc(t->lr_pos, cap * sizeof(uint32_t));
  t->lr_rem = dg_realloc(t->lr_rem, cap * sizeof(uint64_t));
  t->lr_sel = dg_realloc(t->lr_sel, cap * sizeof(uint64_t));
  t->lr_num64 = dg_realloc(t->lr_num64, cap * sizeof(int64_t));
  t->lr_out64 = dg_realloc(t->lr_out64, cap * sizeof(int64_t));
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

/* The value of rank idx (0-based, ascending) of a[0..n); reorders a. Hoare
 * partition around a median of three: many equal values stay cheap. */
static uint64_t nth_smallest(uint64_t *a, uint32_t n, uint32_t idx) {
  int64_t lo = 0, hi = (int64_t)n - 1;
  while (lo < hi) {
    uint64_t x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
    uint64_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        uint64_t tmp = a[i];
        a[i++] = a[j];
        a[j--] = tmp;
      }
    }
    /* [lo, j] <= pivot <= [i, hi], and (j, i) == pivot */
    if ((int64_t)idx <= j)
      hi = j;
    else if ((int64_t)idx >= i)
      lo = i;
    else
      return a[idx];
  }
  return a[lo];
}

void dg__lr_round(dg_etable_t *t, const __int128 *num, __int128 den, __int128 total, uint32_t n,
                  __int128 *out) {
  DG_ASSERT(den > 0);
  bool neg = total < 0;
  __int128 T = neg ? -total : total;
  __int128 sumf = 0;
  const bool small_den = den <= INT64_MAX;
  const int64_t d64 = small_den ? (int64_t)den : 0;
  uint64_t *rem64 = t->lr_rem;
  lr_item_t *it = t->lr_items;
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
    if (small_den) {
      rem64[i] = (uint64_t)r;
    } else {
      it[i].rem = (unsigned __int128)r;
      it[i].pos = i;
    }
  }
  __int128 k = T - sumf;
  DG_ASSERT(k >= 0 && k <= (__int128)n);
  if (k == (__int128)n) {
    for (uint32_t i = 0; i < n; i++) out[i] += 1;
  } else if (k > 0 && small_den) {
    memcpy(t->lr_sel, rem64, (size_t)n * sizeof(uint64_t));
    uint64_t thr = nth_smallest(t->lr_sel, n, n - (uint32_t)k); /* the k-th largest */
    uint32_t above = 0;
    for (uint32_t i = 0; i < n; i++) above += rem64[i] > thr;
    uint32_t at = (uint32_t)k - above; /* units for remainders equal to thr, lowest first */
    for (uint32_t i = 0; i < n; i++) {
      if (rem64[i] > thr) {
        out[i] += 1;
      } else if (rem64[i] == thr && at > 0) {
        out[i] += 1;
        at--;
      }
    }
  } else if (k > 0) {
    select_top(it, n, (uint32_t)k);
    for (uint32_t j = 0; j < (uint32_t)k; j++) out[it[j].pos] += 1;
  }
  if (neg)
    for (uint32_t i = 0; i < n; i++) out[i] = -out[i];
}

/* ---- the 64-bit path ---------------------------------------------------
 * All children of a node share one divisor, so instead of one hardware
 * division per child (40-90 cycles on this Xeon) we precompute the divisor's
 * reciprocal once and divide with a multiply-high, exactly, for every
 * 64-bit numerator: Granlund & Montgomery, "Division by invariant integers
 * using multiplication" (PLDI 1994), figure 4.1, with N = 64:
 *   l = ceil(log2 d), m = floor(2^64 * (2^l - d) / d) + 1,
 *   t = mulhi(m, n), q = (t + ((n - t) >> min(l, 1))) >> max(l - 1, 0).
 * Pure integer arithmetic; the tests cross-check it against the int128 path
 * and the Python reference. */

typedef struct udiv_s {
  uint64_t m;
  uint8_t sh1, sh2;
} udiv_t;

static udiv_t udiv_gen(uint64_t d) {
  unsigned l = d == 1 ? 0 : 64u - (unsigned)__builtin_clzll(d - 1); /* d < 2^63: l <= 63 */
  unsigned __int128 num = (unsigned __int128)(((uint64_t)1 << l) - d) << 64;
  udiv_t u = {.m = (uint64_t)(num / d) + 1, .sh1 = l < 1 ? (uint8_t)l : 1, .sh2 = l > 1 ? (uint8_t)(l - 1) : 0};
  return u;
}

static inline uint64_t udiv_do(uint64_t n, const udiv_t *u) {
  uint64_t t = (uint64_t)(((unsigned __int128)u->m * n) >> 64);
  return (t + ((n - t) >> u->sh1)) >> u->sh2;
}

/* Gives one unit to each of the k items (0 < k < n) with the largest
 * remainders rem[i] in [0, den), equal remainders to the lower position.
 * A histogram on the remainders' top bits (about one bucket per item) finds
 * the bucket holding the k-th largest; only that bucket is searched for the
 * exact threshold r*. Items above r* get a unit; the units left go to the
 * items equal to r* in position order. O(n) with few unpredictable
 * branches, where a plain quickselect costs ~13 ns per item here. */
static void give_units(dg_etable_t *t, const uint64_t *rem, uint64_t den, uint32_t n, uint32_t k,
                       int64_t *out) {
  unsigned nbits = 4;
  while (nbits < 12 && (1u << nbits) < n) nbits++;
  const unsigned width = 64u - (unsigned)__builtin_clzll(den); /* remainders have <= width bits */
  const unsigned sh = width > nbits ? width - nbits : 0;
  const uint32_t nb = 1u << nbits;
  uint32_t *hist = t->lr_hist;
  memset(hist, 0, nb * sizeof(uint32_t));
  for (uint32_t i = 0; i < n; i++) hist[rem[i] >> sh]++;
  uint32_t b = nb, above = 0; /* items in buckets above b */
  while (above + hist[b - 1] < k) above += hist[--b];
  const uint32_t bb = b - 1; /* the boundary bucket */
  uint32_t m = 0;
  uint64_t *sel = t->lr_sel;
  for (uint32_t i = 0; i < n; i++) { /* branch-free: the comparisons are coin flips */
    const uint64_t x = rem[i] >> sh;
    out[i] += x > bb;
    sel[m] = rem[i];
    m += x == bb;
  }
  const uint32_t need = k - above; /* 1..m units inside the boundary bucket */
  const uint64_t thr = nth_smallest(sel, m, m - need);
  uint32_t gt = 0;
  for (uint32_t j = 0; j < m; j++) gt += sel[j] > thr;
  uint32_t at = need - gt; /* units for remainders equal to thr, lowest position first */
  for (uint32_t i = 0; i < n; i++) {
    if ((rem[i] >> sh) != bb) continue;
    if (rem[i] > thr) {
      out[i] += 1;
    } else if (rem[i] == thr && at > 0) {
      out[i] += 1;
      at--;
    }
  }
}

void dg__lr_round64(dg_etable_t *t, const int64_t *num, int64_t den, int64_t total, uint32_t n,
                    int64_t *out) {
  DG_ASSERT(den > 0);
  const bool neg = total < 0;
  const int64_t T = neg ? -total : total;
  const udiv_t u = udiv_gen((uint64_t)den);
  uint64_t *rem = t->lr_rem;
  __int128 sumf = 0;
  for (uint32_t i = 0; i < n; i++) {
    int64_t a = neg ? -num[i] : num[i];
    int64_t q;
    if (a >= 0) {
      q = (int64_t)udiv_do((uint64_t)a, &u);
    } else { /* floor(a / d) = -ceil(|a| / d); |a| + d - 1 < 2^64 */
      q = -(int64_t)udiv_do((uint64_t)-(a + 1) + (uint64_t)den, &u);
    }
    uint64_t r = (uint64_t)a - (uint64_t)q * (uint64_t)den; /* in [0, den): exact mod 2^64 */
    out[i] = q;
    rem[i] = r;
    sumf += q;
  }
  __int128 k = (__int128)T - sumf;
  DG_ASSERT(k >= 0 && k <= (__int128)n);
  if (k == (__int128)n) {
    for (uint32_t i = 0; i < n; i++) out[i] += 1;
  } else if (k > 0) {
    give_units(t, rem, (uint64_t)den, n, (uint32_t)k, out);
  }
  if (neg)
    for (uint32_t i = 0; i < n; i++) out[i] = -out[i];
}
