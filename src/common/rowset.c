/*
 * rowset.c -- a dense bitmap over one id range plus a hash set of outliers
 * (see rowset.h).
 *
 * Invariant: an id inside the bitmap's range is never in _outliers. When
 * the range grows, outliers that it now covers move into the bitmap.
 *
 * The range grows (by half its size at least, so a run of new max + 1 ids
 * reallocates O(log n) times) only while the bitmap stays cheaper than
 * hashing the same ids: dg_idset_t keeps at most a quarter of its 9-byte
 * slots used, ~36 bytes per id, so a bitmap of up to 32 bytes per id (256
 * ids of range per member) still wins. An id that would break that bound
 * is an outlier.
 */
#include "dg/rowset.h"

#include <string.h>

#include "dg/common.h"

/* Bytes of bitmap allowed per member, and a floor so small sets never
 * fall back to hashing for ids that are merely a few thousand apart. */
#define BYTES_PER_ID 32u
#define FREE_BYTES 4096u

/* floor(id / 64) without relying on signed shifts. */
static int64_t word_of(int64_t id) { return id >= 0 ? id / 64 : -((-(id + 1)) / 64) - 1; }
static unsigned bit_of(int64_t id) { return (unsigned)((uint64_t)id & 63u); }

void dg_rowset_init(dg_rowset_t *s) {
  memset(s, 0, sizeof *s);
  dg_idset_init(&s->_outliers);
}

void dg_rowset_dispose(dg_rowset_t *s) {
  dg_free(s->_bits);
  dg_idset_dispose(&s->_outliers);
  dg_rowset_init(s);
}

/* The index of id's word in _bits, or -1 when outside the range. Word
 * indices lie in [-2^57, 2^57), so the difference cannot overflow. */
static int64_t slot_of(const dg_rowset_t *s, int64_t id) {
  int64_t w = word_of(id) - s->_word0;
  return w >= 0 && (uint64_t)w < s->_nwords ? w : -1;
}

int dg_rowset_has(const dg_rowset_t *s, int64_t id) {
  int64_t w = slot_of(s, id);
  if (w >= 0) return (int)((s->_bits[w] >> bit_of(id)) & 1u);
  return s->_outliers.count > 0 && dg_idset_has(&s->_outliers, id);
}

static int cheap_enough(const dg_rowset_t *s, size_t nwords) {
  return nwords * 8 <= ((size_t)s->count + 1) * BYTES_PER_ID + FREE_BYTES;
}

/* Moves the bitmap to cover words [lo, lo + n) (a superset of the current
 * range) and pulls in the outliers that now fall inside. */
static void rebase(dg_rowset_t *s, int64_t lo, size_t n) {
  uint64_t *bits = dg_calloc(n, sizeof *bits);
  if (s->_nwords) memcpy(bits + (s->_word0 - lo), s->_bits, s->_nwords * sizeof *bits);
  dg_free(s->_bits);
  s->_bits = bits;
  s->_word0 = lo;
  s->_nwords = n;
  dg_idset_t *o = &s->_outliers;
  for (size_t i = 0; o->count > 0 && i < o->cap; i++) {
    if (o->state[i] != 1) continue;
    int64_t id = o->keys[i], w = slot_of(s, id);
    if (w < 0) continue;
    s->_bits[w] |= (uint64_t)1 << bit_of(id);
    dg_idset_remove(o, id);
  }
}

/* Tries to grow the range to cover id's word: with slack first, then
 * exactly. Returns 0 when id stays an outlier. */
static int try_cover(dg_rowset_t *s, int64_t id) {
  int64_t w = word_of(id);
  if (s->_nwords == 0) {
    if (!cheap_enough(s, 1)) return 0;
    rebase(s, w, 1);
    return 1;
  }
  int64_t lo = s->_word0, hi = s->_word0 + (int64_t)s->_nwords; /* [lo, hi) */
  int64_t grow = (int64_t)(s->_nwords / 2) + 1;
  int64_t lo2 = w < lo ? w - grow : lo, hi2 = w >= hi ? w + 1 + grow : hi;
  if (lo2 < -((int64_t)1 << 57)) lo2 = -((int64_t)1 << 57);
  if (hi2 > ((int64_t)1 << 57)) hi2 = (int64_t)1 << 57;
  if (cheap_enough(s, (size_t)(hi2 - lo2))) {
    rebase(s, lo2, (size_t)(hi2 - lo2));
    return 1;
  }
  lo2 = w < lo ? w : lo;
  hi2 = w >= hi ? w + 1 : hi;
  if (cheap_enough(s, (size_t)(hi2 - lo2))) {
    rebase(s, lo2, (size_t)(hi2 - lo2));
    return 1;
  }
  return 0;
}

int dg_rowset_add(dg_rowset_t *s, int64_t id) {
  int64_t w = slot_of(s, id);
  if (w < 0) {
    if (s->_outliers.count > 0 && dg_idset_has(&s->_outliers, id)) return 0;
    if (!try_cover(s, id)) {
      dg_idset_add(&s->_outliers, id);
      s->count++;
      return 1;
    }
    w = slot_of(s, id);
  }
  uint64_t m = (uint64_t)1 << bit_of(id);
  if (s->_bits[w] & m) return 0;
  s->_bits[w] |= m;
  s->count++;
  return 1;
}

int dg_rowset_remove(dg_rowset_t *s, int64_t id) {
  int64_t w = slot_of(s, id);
  if (w >= 0) {
    uint64_t m = (uint64_t)1 << bit_of(id);
    if (!(s->_bits[w] & m)) return 0;
    s->_bits[w] &= ~m;
    s->count--;
    return 1;
  }
  if (s->_outliers.count == 0 || !dg_idset_remove(&s->_outliers, id)) return 0;
  s->count--;
  return 1;
}

size_t dg_rowset_memory(const dg_rowset_t *s) {
  return s->_nwords * sizeof(uint64_t) + s->_outliers.cap * (sizeof(int64_t) + 1);
}
