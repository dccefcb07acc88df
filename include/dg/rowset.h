/*
 * rowset.h -- the set of a table's row ids the catalog validates against.
 *
 * Row ids are almost always dense (the manager hands out max + 1, bulk
 * loads number rows 1..n), so the set is a bitmap over one id range -- one
 * bit per id, 1.25 MB for 10 million rows where a hash set takes ~600 MB --
 * and a dg_idset_t for the ids that would make the bitmap too sparse (a
 * client that picks id 10^15 next to rows 1..100). Not thread-safe: the
 * catalog guards it with its lock.
 */
#ifndef DG_ROWSET_H
#define DG_ROWSET_H

#include <stddef.h>
#include <stdint.h>

#include "dg/idset.h"

typedef struct dg_rowset_s {
  uint64_t *_bits;       /* private: bit b of word w is id 64 * (_word0 + w) + b */
  int64_t _word0;        /* private: first covered word index (floor(id / 64)) */
  size_t _nwords;        /* private: words in _bits (0: no bitmap yet) */
  size_t count;          /* ids in the set, bitmap and outliers together */
  dg_idset_t _outliers;  /* private: ids outside the bitmap's range */
} dg_rowset_t;

void dg_rowset_init(dg_rowset_t *s);
void dg_rowset_dispose(dg_rowset_t *s);
/** Adds id; returns 1 if it was new, 0 if present already. Aborts on OOM. */
int dg_rowset_add(dg_rowset_t *s, int64_t id);
/** Removes id; returns 1 if it was present. */
int dg_rowset_remove(dg_rowset_t *s, int64_t id);
int dg_rowset_has(const dg_rowset_t *s, int64_t id);
/** Heap bytes held (bitmap and outlier hash), for tests and measurements. */
size_t dg_rowset_memory(const dg_rowset_t *s);

#endif
