/*
 * changes.c -- the caller-owned change buffer every engine operation appends
 * to: a growable array of 40-byte records plus a byte arena for the text of
 * TEXT records (so a record never owns a pointer and clearing is O(1)).
 * Operations plan into the buffer and rewind it on failure (dg__ch_rewind),
 * which is how a failed operation leaves the appended part untouched.
 */
#include <string.h>

#include "engine/internal.h"

/* Text handles pack (arena offset << 32 | length); the arena therefore stays
 * below 4 GiB, far above what one batch of requests can carry. */
#define NULL_TEXT ((int64_t)-1)

dg_changes_t *dg_changes_create(void) { return dg_calloc(1, sizeof(dg_changes_t)); }

void dg_changes_destroy(dg_changes_t *c) {
  if (c == NULL) return;
  dg_free(c->v);
  dg_free(c->arena);
  dg_free(c);
}

void dg_changes_clear(dg_changes_t *c) {
  c->n = 0;
  c->alen = 0;
}

size_t dg_changes_count(const dg_changes_t *c) { return c->n; }

const dg_change_t *dg_changes_items(const dg_changes_t *c) { return c->v; }

void dg_changes_truncate(dg_changes_t *c, size_t n) {
  if (n < c->n) c->n = n; /* the arena keeps the dropped bytes until clear */
}

int dg_changes_text(const dg_changes_t *c, const dg_change_t *ch, bool new_side, const char **s,
                    size_t *len) {
  if (ch == NULL || ch->kind != DG_CHANGE_TEXT) return DG_EINVAL;
  int64_t h = new_side ? ch->new_value : ch->old_value;
  if (h == NULL_TEXT) {
    *s = NULL;
    *len = 0;
    return 0;
  }
  uint64_t off = (uint64_t)h >> 32, n = (uint64_t)h & 0xffffffffu;
  if (off + n > c->alen) return DG_EINVAL;
  /* An empty text is "" (not null), even before the arena has memory. */
  *s = n ? c->arena + off : "";
  *len = (size_t)n;
  return 0;
}

dg_change_t *dg__ch_push(dg_changes_t *c) {
  if (c->n == c->cap) c->v = dg__et_grow(c->v, &c->cap, c->n + 1, sizeof(dg_change_t));
  dg_change_t *ch = &c->v[c->n++];
  memset(ch, 0, sizeof *ch);
  return ch;
}

int64_t dg__ch_text(dg_changes_t *c, const char *s, size_t len) {
  if (s == NULL) return NULL_TEXT;
  DG_ASSERT(c->alen + len < ((size_t)1 << 32));
  if (c->alen + len > c->acap) c->arena = dg__et_grow(c->arena, &c->acap, c->alen + len, 1);
  if (len) memcpy(c->arena + c->alen, s, len);
  int64_t h = (int64_t)(((uint64_t)c->alen << 32) | (uint64_t)len);
  c->alen += len;
  return h;
}

void dg__ch_rewind(dg_changes_t *c, size_t n, size_t alen) {
  c->n = n;
  c->alen = alen;
}
