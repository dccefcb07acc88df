/*
 * idset.c -- hash set of int64 ids (see idset.h). The hash is a 64-bit
 * finaliser (splitmix64), so sequential ids spread over the table.
 */
#include "dg/idset.h"

#include <string.h>

#include "dg/common.h"

static uint64_t mix(int64_t id) {
  uint64_t z = (uint64_t)id + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
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

int dg_idset_add(dg_idset_t *s, int64_t id) {
  if (dg_idset_has(s, id)) return 0;
  if ((s->used + 1) * 2 > s->cap) {
    /* Grow so the live ids fill at most a quarter; when the slots are
     * mostly tombstones this rehashes at the same size and clears them. */
    size_t cap = s->cap ? s->cap : 16;
    while ((s->count + 1) * 4 > cap) cap *= 2;
    rehash(s, cap);
  }
  size_t j = mix(id) & (s->cap - 1);
  while (s->state[j] == 1) j = (j + 1) & (s->cap - 1);
  if (s->state[j] == 0) s->used++;
  s->state[j] = 1;
  s->keys[j] = id;
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
