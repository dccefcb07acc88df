/*
 * undo.c -- what a revert needs to know about the update it undoes (issue 19).
 *
 * A compact revert request names only the update U ({"op":"revert",
 * "reverts":U,"compact":true}); the manager finds U's cell changes itself,
 * in one of two places that hold the same records in the same order:
 *
 *   the undo cache   the cell records of the most recent cell writes
 *                    (update_cell, update_cells, revert), copied from the
 *                    audit records as each was applied; bounded by bytes
 *                    (DUCKGRID_REVERT_CACHE_MB), oldest evicted first,
 *                    emptied by DDL and by every (re)load of the state;
 *   the audit log    dg.cell_log in DuckDB, in the order it was appended
 *                    (rowid), read after the persister has written every
 *                    request before the revert (manager.c and replay.c
 *                    drain it first: a barrier, like DDL).
 *
 * The cache only saves time: a revert answered from it and one answered
 * from DuckDB (after a restart, on a follower that started later, in
 * `duckgrid restore`) find the same records, so apply stays a pure function
 * of (state, request).
 */
#include <string.h>

#include "dg/common.h"
#include "dg/log.h"
#include "dg/wire.h"
#include "internal.h"

#define UNDO_CACHE_MB_DEFAULT 64

void dg__mgr_undo_free(mundo_t *u) {
  for (size_t i = 0; i < u->n; i++) {
    dg_free(u->cells[i].old_text);
    dg_free(u->cells[i].new_text);
  }
  dg_free(u->cells);
  memset(u, 0, sizeof *u);
}

static void evict_oldest(dg_manager_t *m) {
  mundo_t *u = &m->undo[m->undo_head];
  m->undo_bytes -= u->bytes;
  dg__mgr_undo_free(u);
  m->undo_head = (m->undo_head + 1) & (m->undo_cap - 1);
  m->nundo--;
}

void dg__mgr_undo_clear(dg_manager_t *m) {
  while (m->nundo > 0) evict_oldest(m);
  dg__mgr_undo_free(&m->undo_loaded);
  m->undo_head = 0;
  m->undo_bytes = 0;
}

void dg__mgr_undo_dispose(dg_manager_t *m) {
  dg__mgr_undo_clear(m);
  dg_free(m->undo);
  m->undo = NULL;
  m->undo_cap = 0;
}

void dg__mgr_undo_settings(dg_manager_t *m) {
  const char *v = getenv("DUCKGRID_REVERT_CACHE_MB");
  long mb = UNDO_CACHE_MB_DEFAULT;
  if (v && *v) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*end == '\0' && x >= 0 && x <= 1024L * 1024) mb = x;
  }
  m->undo_max = (size_t)mb << 20;
}

void dg__mgr_undo_keep(dg_manager_t *m, dg_redis_xid_t id, size_t from, size_t to) {
  if (to <= from || m->undo_max == 0) return;
  size_t bytes = sizeof(mundo_t);
  for (size_t i = from; i < to; i++) {
    const mhist_t *h = &m->hist[i];
    if (h->kind != MHIST_CELL || h->col < 0) return; /* rows or holds: not a cell write */
    bytes += sizeof(mundo_cell_t);
    if (!h->numeric) bytes += (h->old_text ? strlen(h->old_text) + 1 : 0) + (h->new_text ? strlen(h->new_text) + 1 : 0);
  }
  if (bytes > m->undo_max) return;
  while (m->nundo > 0 && m->undo_bytes + bytes > m->undo_max) evict_oldest(m);
  if (m->nundo == m->undo_cap) { /* grow the ring (a power of two), unrolled */
    size_t cap = m->undo_cap ? m->undo_cap * 2 : 64;
    mundo_t *ring = dg_calloc(cap, sizeof *ring);
    for (size_t i = 0; i < m->nundo; i++) ring[i] = m->undo[(m->undo_head + i) & (m->undo_cap - 1)];
    dg_free(m->undo);
    m->undo = ring;
    m->undo_cap = cap;
    m->undo_head = 0;
  }
  mundo_t *u = &m->undo[(m->undo_head + m->nundo) & (m->undo_cap - 1)];
  u->id = id;
  u->n = to - from;
  u->cells = dg_malloc(u->n * sizeof *u->cells);
  u->bytes = bytes;
  for (size_t i = from; i < to; i++) {
    const mhist_t *h = &m->hist[i];
    mundo_cell_t *c = &u->cells[i - from];
    *c = (mundo_cell_t){.tag = h->tag, .col = h->col, .row = h->row, .kind = h->numeric ? MUNDO_NUM : MUNDO_TEXT,
                        .has_old = h->numeric ? h->has_old : 1, .old_num = h->old_num, .new_num = h->new_num};
    if (!h->numeric) {
      c->old_text = h->old_text ? dg_strdup(h->old_text) : NULL;
      c->new_text = h->new_text ? dg_strdup(h->new_text) : NULL;
    }
  }
  m->nundo++;
  m->undo_bytes += bytes;
}

const mundo_t *dg__mgr_undo_find(const dg_manager_t *m, dg_redis_xid_t id) {
  if (m->undo_loaded.loaded && dg_redis_xid_cmp(m->undo_loaded.id, id) == 0) return &m->undo_loaded;
  size_t lo = 0, hi = m->nundo; /* the ring is in stream order */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const mundo_t *u = &m->undo[(m->undo_head + mid) & (m->undo_cap - 1)];
    int c = dg_redis_xid_cmp(u->id, id);
    if (c == 0) return u;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

/* ---- which requests need it ------------------------------------------------------ */

int dg__mgr_revert_target(const char *json, size_t len, dg_redis_xid_t *u) {
  /* Cheap first: a text that begins {"op":"<name>" with another name than
   * revert is no revert (the reasoning of dg__mgr_is_ddl), and only a text
   * naming "compact" can be one. Else decoded as dg__mgr_apply decodes. */
  static const char head[] = "{\"op\":\"", rv[] = "revert\"";
  if (len > sizeof head - 1 && memcmp(json, head, sizeof head - 1) == 0 &&
      (len < sizeof head - 1 + sizeof rv - 1 || memcmp(json + sizeof head - 1, rv, sizeof rv - 1) != 0)) {
    const char *p = json + sizeof head - 1, *q = p, *end = json + len;
    while (q < end && q - p <= 32 && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
    if (q < end && *q == '"') return 0;
  }
  static const char needle[] = "\"compact\"";
  if (len < sizeof needle || memmem(json, len, needle, sizeof needle - 1) == NULL) return 0;
  dg_wire_req_t rq;
  (void)dg_wire_req_decode(json, len, 0, &rq);
  const char *uid = json_string_value(json_object_get(rq.body, "reverts"));
  int yes = rq.op && strcmp(rq.op, DG_OP_REVERT) == 0 && json_is_true(json_object_get(rq.body, "compact")) && uid &&
            dg_redis_xid_parse(uid, strlen(uid), u) == 0;
  dg_wire_req_dispose(&rq);
  return yes;
}
