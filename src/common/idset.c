/*
 * idset.c -- hash set of int64 ids (see idset.h).
 *
 * Where an id goes: its block of BLOCK consecutive ids is placed by a 64-bit
 * finaliser (splitmix64) of id / BLOCK, and within the block by its low
 * bits. So a run of sequential ids (a spread's leaves, an import) fills
 * neighbouring slots -- a cache line holds 8 of them -- instead of one cache
 * miss per id, while ids with any stride still land in scattered blocks. A
 * spread over 1,010,101 cells spent ~40% of the manager's time in this set
 * with a per-id hash.
 */
#include "dg/idset.h"

#include <string.h>

#include "dg/common.h"

#define BLOCK_BITS 6 /* 64 ids per block */

static uint64_t mix(int64_t id) {
  uint64_t z = ((uint64_t)id >> BLOCK_BITS) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (z << BLOCK_BITS) | ((uint64_t)id & ((1u << BLOCK_BITS) - 1));
}

void dg_idset_init(dg_idset_t *s) { memset(s, 0, sizeof *s); }

void dg_idset_dispose(dg_idset_t *s) {
  dg_free(s->keys);
  dg_free(s->state);
  dg_idset_init(s);
}

static void rehash(dg_idset_t *s, size_t cap) {
  dg_idset_t n;
  n.cap = cap;
  n.keys = dg_malloc(cap * sizeof *n.keys);
  n.state = dg_calloc(cap, 1);
  n.count = n.used = 0;
  for (size_t i = 0; i < s->cap; i++) {
    if (s->state[i] != 1) continue;
    size_t j = mix(s->keys[i]) & (cap - 1);
    while (n.state[j]) j = (j + 1) & (cap - 1);
    n.state[j] = 1;
    n.keys[j] = s->keys[i];
    n.count++;
    n.used++;
  }
  dg_free(s->keys);
  dg_free(s->state);
  *s = n;
}

int dg_idset_has(const dg_idset_t *s, int64_t id) {
  if (s->cap == 0) return 0;
  size_t j = mix(id) & (s->cap - 1);
  while (s->state[j]) {
    if (s->state[j] == 1 && s->keys[j] == id) return 1;
    j = (j + 1) & (s->cap - 1);
  }
  return 0;
}

void dg_idset_reserve(dg_idset_t *s, size_t more) {
  size_t want = s->count + more;
  if ((want + 1) * 2 <= s->cap) return;
  size_t cap = s->cap ? s->cap : 16;
  while ((want + 1) * 4 > cap) cap *= 2;
  rehash(s, cap);
}

int dg_idset_add(dg_idset_t *s, int64_t id) {
  if ((s->used + 1) * 2 > s->cap) {
    if (dg_idset_has(s, id)) return 0; /* no growth for an id we hold */
    /* Grow so the live ids fill at most a quarter; when the slots are
     * mostly tombstones this rehashes at the same size and clears them. */
    size_t cap = s->cap ? s->cap : 16;
    while ((s->count + 1) * 4 > cap) cap *= 2;
    rehash(s, cap);
  }
  /* One probe: the id itself (0), or the first free slot, preferring the
   * first tombstone on the way (the id is not beyond an empty slot). */
  size_t mask = s->cap - 1, j = mix(id) & mask, at = SIZE_MAX;
  for (; s->state[j]; j = (j + 1) & mask) {
    if (s->state[j] == 1) {
      if (s->keys[j] == id) return 0;
    } else if (at == SIZE_MAX) {
      at = j;
    }
  }
  if (at == SIZE_MAX) {
    at = j;
    s->used++;
  }
  s->state[at] = 1;
  s->keys[at] = id;
  s->count++;
  return 1;
}

int dg_idset_remove(dg_idset_t *s, int64_t id) {
  if (s->cap == 0) return 0;
  size_t j = mix(id) & (s->cap - 1);
  while (s->state[j]) {
    if (s->state[j] == 1 && s->keys[j] == id) {
      s->state[j] = 2;
      s->count--;
      return 1;
    }
    j = (j + 1) & (s->cap - 1);
  }
  return 0;
}
