/*
 * fuzz_mgr_apply.c -- libFuzzer harness for the manager's request decoder:
 * dg__mgr_apply() and dg__mgr_is_ddl() (src/manager/apply.c), i.e. JSON
 * taken from request_duck -> engine operations -> the outcome JSON.
 *
 * apply.c is compiled into this file (its helpers are static) against an
 * in-memory manager: no Redis, no DuckDB. Every input starts from the same
 * state -- tables `sales` (name text, sales number(2), qty number(0), note
 * text) with a 6-row tree and `t2` (v number(6)) with 2 rows -- set up
 * through dg__mgr_apply itself.
 *
 * Input: byte 0 is a bit pattern deciding, batch by batch, whether the batch
 * "commits" or is undone as after a failed DuckDB transaction; the rest is
 * up to 16 requests separated by NUL bytes (an empty one stands for an entry
 * without a `req` field). Requests are batched as manager.c's run_entries
 * does: every DDL request (dg__mgr_is_ddl) alone.
 * Checks, after every request:
 *   - every table passes dg_etable_verify();
 *   - the outcome is a JSON object with the request's stream_id, its
 *     request_id, and status "applied" or "rejected" (with an error object
 *     whose status is 400/404/409); a duplicate request_id has no outcome;
 *   - a rejected or duplicate request changed nothing: all tables, their
 *     rows, numbers, holds and texts equal the snapshot before it, and its
 *     audit rows and DDL are gone;
 *   - every table definition the manager holds is one the API would accept
 *     (valid, unique names -- they are spliced into DDL --, scales 0..6,
 *     the engine's scales equal to the definition's);
 * and after a batch without DDL that is undone, everything equals the
 * snapshot taken before the batch.
 */
#include "../../src/manager/apply.c"
#include "../../src/manager/undo.c" /* the compact revert's cache (undo_log.c, which reads DuckDB, is not linked) */

#include <stdlib.h>

#include "fuzz_check.h"

/* ---- what the harness does not link ------------------------------------------ */

/* A view's SQL is checked by DuckDB in production; here a SELECT passes. */
int dg_view_sql_check(duckdb_connection c, const char *sql, char *err, size_t errcap) {
  (void)c;
  if (strncmp(sql, "SELECT ", 7) == 0) return 0;
  snprintf(err, errcap, "only a single read-only SELECT is accepted");
  return DG_EINVAL;
}

/* ---- the manager ---------------------------------------------------------------- */

#define MAXREQS 16

static mreq_t *req_add(dg_manager_t *m, int seq) {
  if (m->nreqs == m->reqs_cap) {
    m->reqs_cap = m->reqs_cap ? m->reqs_cap * 2 : 8;
    m->reqs = dg_realloc(m->reqs, m->reqs_cap * sizeof *m->reqs);
  }
  mreq_t *r = &m->reqs[m->nreqs++];
  memset(r, 0, sizeof *r);
  snprintf(r->stream_id, sizeof r->stream_id, "1700000000000-%d", seq);
  return r;
}

/* The manager no longer undoes a batch (it publishes before persisting);
 * the engine's batch rollback is still exercised here: the batch's engine
 * effects, audit rows and idempotency records go back to `mark`. */
typedef struct {
  size_t nhist;
  midem_t idem;
} undo_mark_t;

static void undo_mark(dg_manager_t *m, undo_mark_t *u) {
  u->nhist = m->nhist;
  u->idem = (midem_t){NULL, NULL, m->idem.cap, m->idem.count};
  if (m->idem.cap) {
    u->idem.keys = dg_malloc(m->idem.cap * sizeof *u->idem.keys);
    u->idem.ids = dg_malloc(m->idem.cap * sizeof *u->idem.ids);
    memcpy(u->idem.keys, m->idem.keys, m->idem.cap * sizeof *u->idem.keys);
    memcpy(u->idem.ids, m->idem.ids, m->idem.cap * sizeof *u->idem.ids);
  }
}

static void hist_cut(dg_manager_t *m, size_t n) {
  for (size_t i = n; i < m->nhist; i++) {
    dg_free(m->hist[i].old_text);
    dg_free(m->hist[i].new_text);
  }
  m->nhist = n;
}

static void batch_undo(dg_manager_t *m, undo_mark_t *u) {
  dg__mgr_batch_end(m, 0);
  hist_cut(m, u->nhist);
  dg__mgr_idem_dispose(&m->idem);
  m->idem = u->idem;
  u->idem = (midem_t){NULL, NULL, 0, 0};
  dg__mgr_batch_clear(m);
}

static void mgr_free(dg_manager_t *m) {
  dg__mgr_batch_clear(m);
  hist_cut(m, 0);
  for (size_t i = 0; i < m->nddl; i++) dg_free(m->ddl[i]);
  for (uint32_t i = 0; i < m->ntables; i++) dg__mgr_table_free(m->tables[i]);
  dg_free(m->tables);
  for (size_t i = 0; i < m->nviews; i++) dg_free(m->views[i]);
  dg_free(m->views);
  dg_free(m->reqs);
  dg_free(m->hist);
  dg_free(m->ddl);
  dg_changes_destroy(m->changes);
  dg__mgr_undo_dispose(m);
  dg_buf_dispose(&m->json);
  dg__mgr_idem_dispose(&m->idem);
  dg_free(m);
}

/* Everything a request may change, as text: tables, rows in pre-order with
 * numbers, holds and texts; views; the next row id. */
static void render_rows(dg_buf_t *b, const mtable_t *t, int64_t parent, int depth) {
  CHECK(depth < 10000, "table '%s' nests deeper than its rows", t->def->name);
  int64_t after = DG_ROW_NONE;
  uint32_t nnum = dg_etable_num_columns(t->et), ntext = dg_etable_text_columns(t->et);
  for (;;) {
    int64_t ids[32];
    size_t n = 0;
    CHECK(dg_etable_children_get(t->et, parent, after, ids, 32, &n) == 0, "children_get");
    for (size_t k = 0; k < n; k++) {
      dg_buf_printf(b, " %" PRId64 "<%" PRId64 ":", ids[k], parent);
      for (uint32_t c = 0; c < nnum; c++) {
        int64_t v;
        bool held;
        CHECK(dg_etable_number_get(t->et, ids[k], c, &v) == 0, "number_get");
        CHECK(dg_etable_is_held(t->et, ids[k], c, &held) == 0, "is_held");
        dg_buf_printf(b, "%" PRId64 "%s,", v, held ? "H" : "");
      }
      for (uint32_t c = 0; c < ntext; c++) {
        const char *s;
        size_t len;
        CHECK(dg_etable_text_get(t->et, ids[k], c, &s, &len) == 0, "text_get");
        if (s) dg_buf_json_str(b, s, len);
        else dg_buf_puts(b, "null");
        dg_buf_putc(b, ',');
      }
      render_rows(b, t, ids[k], depth + 1);
    }
    if (n < 32) break;
    after = ids[n - 1];
  }
}

static char *render(const dg_manager_t *m) {
  dg_buf_t b;
  dg_buf_init(&b);
  for (uint32_t i = 0; i < m->ntables; i++) {
    const mtable_t *t = m->tables[i];
    if (t == NULL) continue;
    dg_buf_printf(&b, "table %s (%zu rows):", t->def->name, dg_etable_row_count(t->et));
    render_rows(&b, t, DG_ROW_NONE, 0);
    dg_buf_putc(&b, '\n');
  }
  for (size_t i = 0; i < m->nviews; i++) dg_buf_printf(&b, "view %s\n", m->views[i]);
  return dg_buf_steal(&b);
}

static void verify_all(const dg_manager_t *m, const char *after) {
  for (uint32_t i = 0; i < m->ntables; i++) {
    if (m->tables[i] == NULL) continue;
    int rc = dg_etable_verify(m->tables[i]->et);
    CHECK(rc == 0, "table '%s' fails verify after %s", m->tables[i]->def->name, after);
  }
}

/* Checks one outcome and, for a rejection, that nothing changed. */
static void check_outcome(const dg_manager_t *m, const mreq_t *r, const char *before,
                          size_t nhist, size_t nddl, const char *text, size_t len) {
  char *now = render(m);
  if (r->duplicate) {
    CHECK(r->res == NULL, "a duplicate has an outcome");
    CHECK(strcmp(before, now) == 0, "a duplicate request changed the state: %.*s", (int)len, text);
    dg_free(now);
    return;
  }
  CHECK(r->res != NULL && strlen(r->res) == r->res_len, "no outcome for %.*s", (int)len, text);
  json_error_t jerr;
  json_t *o = json_loadb(r->res, r->res_len, 0, &jerr);
  CHECK(json_is_object(o), "outcome is not a JSON object (%s): %s\nrequest: %.*s", jerr.text,
        r->res, (int)len, text);
  const char *status = json_string_value(json_object_get(o, "status"));
  const char *sid = json_string_value(json_object_get(o, "stream_id"));
  const char *rid = json_string_value(json_object_get(o, "request_id"));
  CHECK(status && (strcmp(status, "applied") == 0 || strcmp(status, "rejected") == 0),
        "outcome status: %s", r->res);
  CHECK(sid && strcmp(sid, r->stream_id) == 0, "outcome stream_id: %s", r->res);
  CHECK(rid && strcmp(rid, r->request_id) == 0, "outcome request_id: %s", r->res);
  CHECK(json_is_array(json_object_get(o, "changes")) && json_is_string(json_object_get(o, "ts")),
        "outcome shape: %s", r->res);
  if (strcmp(status, "rejected") == 0) {
    json_t *e = json_object_get(o, "error");
    int st = (int)json_integer_value(json_object_get(e, "status"));
    CHECK(st == 400 || st == 404 || st == 409, "rejection status %d: %s", st, r->res);
    CHECK(json_is_string(json_object_get(e, "detail")), "rejection without detail");
    CHECK(json_array_size(json_object_get(o, "changes")) == 0, "rejection with changes");
    CHECK(strcmp(before, now) == 0,
          "a rejected request changed the state\nrequest: %.*s\noutcome: %s\nbefore:\n%s\nafter:\n%s",
          (int)len, text, r->res, before, now);
    CHECK(m->nhist == nhist && m->nddl == nddl, "a rejected request left audit rows or DDL");
  } else {
    CHECK(json_is_null(json_object_get(o, "error")), "applied with an error: %s", r->res);
  }
  json_decref(o);
  dg_free(now);
}

/* What the manager holds must be what the API would accept (catalog.h: the
 * manager "checks everything again"): names that match the whitelist --
 * they are spliced into DDL -- unique columns, scales 0..6 on numbers and
 * the same scales in the engine. */
static void check_defs(const dg_manager_t *m, const char *text, size_t len) {
  for (uint32_t i = 0; i < m->ntables; i++) {
    const mtable_t *t = m->tables[i];
    if (t == NULL) continue;
    const dg_tabledef_t *d = t->def;
    CHECK(dg_name_valid(d->name), "table name '%s' from: %.*s", d->name, (int)len, text);
    for (int c = 0; c < d->ncols; c++) {
      const dg_coldef_t *col = &d->cols[c];
      CHECK(dg_name_valid(col->name), "table '%s' has column name '%s' (spliced into DDL) from: %.*s",
            d->name, col->name, (int)len, text);
      for (int k = 0; k < c; k++)
        CHECK(strcmp(d->cols[k].name, col->name) != 0, "table '%s' has column '%s' twice from: %.*s",
              d->name, col->name, (int)len, text);
      if (col->type == DG_COL_NUMBER)
        CHECK(col->scale >= 0 && col->scale <= DG_DECIMAL_MAX_SCALE &&
                  dg_etable_scale(t->et, (uint32_t)col->slot) == col->scale,
              "table '%s' column '%s' has scale %d (engine %d) from: %.*s", d->name, col->name,
              col->scale, dg_etable_scale(t->et, (uint32_t)col->slot), (int)len, text);
    }
  }
}

static void apply_one(dg_manager_t *m, int seq, const char *text, size_t len) {
  char *before = render(m);
  size_t nhist = m->nhist, nddl = m->nddl;
  mreq_t *r = req_add(m, seq);
  /* A compact revert of an update the cache does not hold: manager.c
   * reads its records from the audit log first (revert_records). Here there
   * is no DuckDB: as if the log held none of its cells (a 404). */
  dg_redis_xid_t u;
  if (text && dg__mgr_revert_target(text, len, &u) && dg__mgr_undo_find(m, u) == NULL) {
    dg__mgr_undo_free(&m->undo_loaded);
    m->undo_loaded.id = u;
    m->undo_loaded.loaded = 1;
  }
  if (text == NULL) dg__mgr_apply(m, r, "{}", 2); /* an entry without `req` */
  else dg__mgr_apply(m, r, text, len);
  verify_all(m, "a request");
  check_outcome(m, r, before, nhist, nddl, text ? text : "{}", text ? len : 2);
  check_defs(m, text ? text : "{}", text ? len : 2);
  dg_free(before);
}

static const char *const setup[] = {
    "{\"op\":\"create_table\",\"table\":\"sales\",\"user\":\"admin\",\"request_id\":\"s-1\","
    "\"columns\":[{\"name\":\"name\",\"type\":\"text\",\"scale\":0},"
    "{\"name\":\"sales\",\"type\":\"number\",\"scale\":2},"
    "{\"name\":\"qty\",\"type\":\"number\",\"scale\":0},"
    "{\"name\":\"note\",\"type\":\"text\",\"scale\":0}]}",
    "{\"op\":\"create_table\",\"table\":\"t2\",\"user\":\"admin\",\"request_id\":\"s-2\","
    "\"columns\":[{\"name\":\"v\",\"type\":\"number\",\"scale\":6}]}",
    "{\"op\":\"insert_rows\",\"table\":\"sales\",\"user\":\"alice\",\"request_id\":\"s-3\",\"rows\":["
    "{\"id\":1,\"cells\":{\"name\":\"Brand X\"}},"
    "{\"id\":2,\"parent_id\":1,\"cells\":{\"name\":\"Snacks\"}},"
    "{\"id\":3,\"parent_id\":1,\"cells\":{\"name\":\"Drinks\",\"note\":\"\"}},"
    "{\"id\":4,\"parent_id\":2,\"cells\":{\"name\":\"Chips\",\"sales\":\"100.00\",\"qty\":\"10\"}},"
    "{\"id\":5,\"parent_id\":2,\"cells\":{\"name\":\"Nuts\",\"sales\":\"50.50\",\"qty\":\"5\"}},"
    "{\"id\":6,\"parent_id\":3,\"cells\":{\"name\":\"Cola\",\"sales\":\"-20.25\",\"qty\":\"0\"}}]}",
    "{\"op\":\"insert_rows\",\"table\":\"t2\",\"user\":\"alice\",\"request_id\":\"s-4\",\"rows\":["
    "{\"id\":1,\"cells\":{}},{\"id\":2,\"parent_id\":1,\"cells\":{\"v\":\"0.000001\"}}]}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dg_manager_t *m = dg_calloc(1, sizeof *m);
  m->changes = dg_changes_create();
  dg_buf_init(&m->json);
  pthread_mutex_init(&m->idem_lock, NULL);
  m->next_row_id = 1;
  m->undo_max = 1u << 20; /* compact reverts of the updates just applied read this cache */
  int seq = 0;
  for (size_t i = 0; i < DG_ARRAY_SIZE(setup); i++) {
    apply_one(m, ++seq, setup[i], strlen(setup[i]));
    CHECK(strstr(m->reqs[m->nreqs - 1].res, "\"applied\"") != NULL, "setup %zu: %s", i,
          m->reqs[m->nreqs - 1].res);
    dg__mgr_batch_end(m, 1);
    dg__mgr_batch_clear(m);
  }

  uint8_t commit_bits = size ? data[0] : 0xff;
  const char *p = size ? (const char *)data + 1 : "";
  const char *end = (const char *)data + size;
  /* The entries: NUL-separated. */
  const char *req[MAXREQS];
  size_t len[MAXREQS];
  size_t n = 0;
  while (p <= end && n < MAXREQS && size > 1) {
    const char *z = memchr(p, '\0', (size_t)(end - p));
    const char *e = z ? z : end;
    req[n] = e > p ? p : NULL;
    len[n] = (size_t)(e - p);
    n++;
    if (z == NULL) break;
    p = z + 1;
  }
  /* Batches as run_entries() makes them: every DDL request alone. */
  size_t i = 0;
  int batch = 0;
  while (i < n) {
    size_t j = i + 1;
    if (!(req[i] && dg__mgr_is_ddl(req[i], len[i])))
      while (j < n && !(req[j] && dg__mgr_is_ddl(req[j], len[j]))) j++;
    int had_ddl = 0;
    undo_mark_t um;
    undo_mark(m, &um);
    char *start = render(m);
    for (size_t k = i; k < j; k++) {
      had_ddl |= req[k] && dg__mgr_is_ddl(req[k], len[k]);
      apply_one(m, ++seq, req[k], len[k]);
    }
    int commit = had_ddl || (commit_bits >> (batch % 8) & 1);
    if (commit) {
      dg__mgr_batch_end(m, 1);
      dg__mgr_batch_clear(m);
    } else {
      batch_undo(m, &um);
      char *now = render(m);
      CHECK(strcmp(start, now) == 0, "an undone batch left changes\nbefore:\n%s\nafter:\n%s", start,
            now);
      dg_free(now);
    }
    dg__mgr_idem_dispose(&um.idem);
    verify_all(m, "the batch");
    dg_free(start);
    batch++;
    i = j;
  }
  mgr_free(m);
  return 0;
}
