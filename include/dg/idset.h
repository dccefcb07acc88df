/*
 * idset.h -- a set of int64 row ids: open addressing with linear probing,
 * load factor at most 1/2, tombstones for removal. 9 bytes per slot;
 * consecutive ids share neighbouring slots (idset.c).
 */
#ifndef DG_IDSET_H
#define DG_IDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct dg_idset_s {
  int64_t *keys;    /* slot keys                                        */
  uint8_t *state;   /* 0 empty, 1 used, 2 removed (tombstone)            */
  size_t cap;       /* slots, a power of two (0 before the first add)   */
  size_t count;     /* ids in the set                                    */
  size_t used;      /* used + removed slots (drives growth)             */
} dg_idset_t;

void dg_idset_init(dg_idset_t *s);
void dg_idset_dispose(dg_idset_t *s);
/** Makes room for `more` ids beyond those held, in one step. */
void dg_idset_reserve(dg_idset_t *s, size_t more);
/** Adds id; returns 1 if it was new, 0 if present already. */
int dg_idset_add(dg_idset_t *s, int64_t id);
/** Removes id; returns 1 if it was present. */
int dg_idset_remove(dg_idset_t *s, int64_t id);
int dg_idset_has(const dg_idset_t *s, int64_t id);

#endif
