/*
 * persist.c -- the manager and DuckDB: loading everything at start, and
 * writing each batch in one transaction of set-based statements.
 *
 * A batch's effects are net effects per row: a row is written once however
 * many requests touched it, as its final state taken from the engine.
 *
 *   touched row   existed before the batch   exists now   statement
 *   ───────────   ────────────────────────   ──────────   ──────────────────────────
 *                 yes                        no           DELETE … WHERE id IN (stage)
 *                 yes                        yes          UPDATE … FROM stage (whole row)
 *                 no                         yes          INSERT … SELECT FROM stage
 *
 * Rows go into connection-local temp staging tables through the appender,
 * as data chunks whose DECIMAL vectors are filled with the engine's scaled
 * int64 values directly (no text, no doubles). Every statement's row count
 * is checked against what was staged. The audit rows, the idempotency
 * records and the id of the last request applied (with the next automatic
 * row id) go into the same transaction, so after a crash DuckDB says
 * exactly which requests it holds; the rest of the log is applied again.
 *
 * A persist covers the whole unpersisted tail, many batches at once (the
 * persister thread, manager.c): the touched rows are copied out of the
 * engine while the manager is held off (state_lock), so they are the state
 * after the tail's last request; then everything (rows, audit, holds,
 * idem, dg.applied) is written from those copies and the tail taken out of
 * the manager, without the lock. The manager is held off for the copy
 * only (a spread over a million leaves: tens of ms, not the whole write).
 *
 * Values are always absolute (SET v = staged value), never increments: see
 * DESIGN.md on DuckDB 1.4.4 applying a point increment twice.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dg/common.h"
#include "dg/db.h"
#include "dg/dgsql.h"
#include "dg/log.h"
#include "dg/redis.h"
#include "internal.h"

/* ---- helpers ------------------------------------------------------------------ */

/* Runs one statement, prepared: the statements here are built around
 * table and column names (whitelisted where they entered, from a client or
 * request_duck), and a prepared text can only ever be one statement,
 * whatever a name held (duckdb_query runs every statement it is given).
 * *res is zeroed when the statement did not run. */
static duckdb_state query_one(dg_manager_t *m, const char *sql, duckdb_result *res, char *err, size_t errcap) {
  return dg_db_query_one(m->conn, sql, res, err, errcap);
}

static int exec(dg_manager_t *m, const char *sql, char *err, size_t errcap) {
  duckdb_result res;
  int rc = query_one(m, sql, &res, err, errcap) == DuckDBError ? DG_EIO : 0;
  duckdb_destroy_result(&res);
  return rc;
}

/* Runs sql and checks it changed exactly `want` rows. */
static int exec_count(dg_manager_t *m, const char *sql, idx_t want, char *err, size_t errcap) {
  duckdb_result res;
  if (query_one(m, sql, &res, err, errcap) == DuckDBError) {
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  idx_t got = duckdb_rows_changed(&res);
  duckdb_destroy_result(&res);
  if (got != want) {
    snprintf(err, errcap, "statement changed %llu rows, expected %llu: %.80s", (unsigned long long)got,
             (unsigned long long)want, sql);
    return DG_EIO;
  }
  return 0;
}

/* ---- loading -------------------------------------------------------------------- */

static int load_table(dg_manager_t *m, const char *name, char *err, size_t errcap) {
  dg_tabledef_t *def;
  if (dg_catalog_read_def(m->conn, name, &def) != 0) {
    snprintf(err, errcap, "cannot read the columns of table '%s'", name);
    return DG_EIO;
  }
  uint8_t *scales = dg_calloc((size_t)def->nnum + 1, 1);
  for (int i = 0; i < def->ncols; i++)
    if (def->cols[i].type == DG_COL_NUMBER) scales[def->cols[i].slot] = (uint8_t)def->cols[i].scale;
  mtable_t *t = dg_calloc(1, sizeof *t);
  t->def = def;
  t->tag = m->ntables;
  dg_idset_init(&t->touched);
  dg_idset_init(&t->fresh);
  dg_etable_opts_t eo = {scales, (uint32_t)def->nnum, (uint32_t)def->ntext, t->tag, 0};
  int rc = dg_etable_create(&eo, &t->et);
  dg_free(scales);
  if (rc != 0) {
    snprintf(err, errcap, "table '%s': %s", name, dg_strerror(rc));
    dg__mgr_table_free(t);
    return rc;
  }
  /* The row count first, so the engine reserves its rows exactly once. */
  dg_buf_t sql;
  dg_buf_init(&sql);
  dg_buf_printf(&sql, "SELECT count(*) FROM main.\"%s\"", name);
  duckdb_result res;
  idx_t nrows = 0;
  char qerr[256];
  if (query_one(m, sql.data, &res, qerr, sizeof qerr) == DuckDBSuccess) nrows = (idx_t)duckdb_value_int64(&res, 0, 0);
  duckdb_destroy_result(&res);
  /* Columns in declared order; the engine wants numbers and texts apart.
   * Streamed, in storage order: a materialised result (or ORDER BY id)
   * would hold a second copy of the table while the engine fills -- about
   * 700 MB and 1.3 s at 10M rows. Storage order is insertion order, which
   * is nearly id order; the engine's loader takes any order (it sorts the
   * children lists that come out unsorted), and its direct id map does not
   * care about order. */
  dg_buf_reset(&sql);
  dg_buf_puts(&sql, "SELECT id, parent_id");
  for (int i = 0; i < def->ncols; i++) dg_buf_printf(&sql, ", \"%s\"", def->cols[i].name);
  dg_buf_printf(&sql, " FROM main.\"%s\"", name);
  duckdb_prepared_statement st;
  if (duckdb_prepare(m->conn, sql.data, &st) == DuckDBError) {
    snprintf(err, errcap, "cannot read table '%s': %s", name, duckdb_prepare_error(st));
    duckdb_destroy_prepare(&st);
    dg_buf_dispose(&sql);
    dg__mgr_table_free(t);
    return DG_EIO;
  }
  dg_buf_dispose(&sql);
  if (duckdb_execute_prepared_streaming(st, &res) == DuckDBError) {
    snprintf(err, errcap, "cannot read table '%s': %s", name, duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&st);
    dg__mgr_table_free(t);
    return DG_EIO;
  }
  dg_etable_load_begin(t->et, nrows);
  int64_t *nums = dg_calloc((size_t)def->nnum + 1, sizeof *nums);
  dg_etext_t *texts = dg_calloc((size_t)def->ntext + 1, sizeof *texts);
  rc = 0;
  for (;;) {
    duckdb_data_chunk chunk = duckdb_fetch_chunk(res);
    if (chunk == NULL) break;
    idx_t n = duckdb_data_chunk_get_size(chunk);
    duckdb_vector idv = duckdb_data_chunk_get_vector(chunk, 0);
    duckdb_vector pv = duckdb_data_chunk_get_vector(chunk, 1);
    const int64_t *ids = duckdb_vector_get_data(idv);
    const int64_t *parents = duckdb_vector_get_data(pv);
    uint64_t *pvalid = duckdb_vector_get_validity(pv);
    for (idx_t r = 0; r < n && rc == 0; r++) {
      for (int c = 0; c < def->ncols; c++) {
        duckdb_vector v = duckdb_data_chunk_get_vector(chunk, (idx_t)c + 2);
        uint64_t *valid = duckdb_vector_get_validity(v);
        int ok = valid == NULL || duckdb_validity_row_is_valid(valid, r);
        if (def->cols[c].type == DG_COL_NUMBER) {
          nums[def->cols[c].slot] = ok ? ((const int64_t *)duckdb_vector_get_data(v))[r] : 0;
        } else {
          duckdb_string_t *s = &((duckdb_string_t *)duckdb_vector_get_data(v))[r];
          if (!ok) {
            texts[def->cols[c].slot] = (dg_etext_t){NULL, 0};
          } else {
            uint32_t len = duckdb_string_t_length(*s);
            texts[def->cols[c].slot] = (dg_etext_t){duckdb_string_t_data(s), len};
          }
        }
      }
      int64_t parent = pvalid == NULL || duckdb_validity_row_is_valid(pvalid, r) ? parents[r] : DG_ROW_NONE;
      rc = dg_etable_load_row(t->et, ids[r], parent, nums, texts);
      if (ids[r] >= m->next_row_id) m->next_row_id = ids[r] == INT64_MAX ? INT64_MAX : ids[r] + 1;
    }
    duckdb_destroy_data_chunk(&chunk);
    if (rc != 0) break;
  }
  /* A stream that broke off ends like one that is done: ask. */
  if (rc == 0 && duckdb_result_error(&res) != NULL) {
    snprintf(err, errcap, "cannot read table '%s': %s", name, duckdb_result_error(&res));
    rc = DG_EIO;
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  dg_free(nums);
  dg_free(texts);
  if (rc == 0) rc = dg_etable_load_finish(t->et, 0);
  if (rc != 0) {
    snprintf(err, errcap, "table '%s' does not load: %s", name, dg_strerror(rc));
    dg__mgr_table_free(t);
    return rc;
  }
  m->tables = dg_realloc(m->tables, (m->ntables + 1) * sizeof *m->tables);
  m->tables[m->ntables++] = t;
  return 0;
}

static void audit_cols_free(dg_manager_t *m) {
  for (size_t i = 0; i < m->naudit_cols; i++) {
    dg_free(m->audit_cols[i].table);
    dg_free(m->audit_cols[i].column);
  }
  dg_free(m->audit_cols);
  m->audit_cols = NULL;
  m->naudit_cols = m->audit_cols_cap = m->naudit_saved = 0;
}

static void free_state(dg_manager_t *m) {
  for (uint32_t i = 0; i < m->ntables; i++) dg__mgr_table_free(m->tables[i]);
  dg_free(m->tables);
  m->tables = NULL;
  m->ntables = 0;
  for (size_t i = 0; i < m->nviews; i++) dg_free(m->views[i]);
  dg_free(m->views);
  m->views = NULL;
  m->nviews = 0;
  pthread_mutex_lock(&m->idem_lock);
  dg__mgr_idem_dispose(&m->idem);
  pthread_mutex_unlock(&m->idem_lock);
  audit_cols_free(m);
  dg__mgr_undo_clear(m); /* what a revert reads comes from this state on */
}

static maudcol_t *audit_col_add(dg_manager_t *m) {
  if (m->naudit_cols == m->audit_cols_cap) {
    m->audit_cols_cap = m->audit_cols_cap ? m->audit_cols_cap * 2 : 16;
    m->audit_cols = dg_realloc(m->audit_cols, m->audit_cols_cap * sizeof *m->audit_cols);
  }
  maudcol_t *a = &m->audit_cols[m->naudit_cols++];
  memset(a, 0, sizeof *a);
  return a;
}

static int load_audit_cols(dg_manager_t *m, char *err, size_t errcap) {
  duckdb_result res;
  if (duckdb_query(m->conn, dg_sql_audit_cols_read, &res) == DuckDBError) {
    snprintf(err, errcap, "cannot read dg.audit_cols: %s", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  for (idx_t i = 0; i < duckdb_row_count(&res); i++) {
    maudcol_t *a = audit_col_add(m);
    a->id = duckdb_value_int32(&res, 0, i);
    char *tn = duckdb_value_varchar(&res, 1, i);
    char *cn = duckdb_value_varchar(&res, 2, i);
    a->table = dg_strdup(tn ? tn : "");
    a->column = cn ? dg_strdup(cn) : NULL;
    a->scale = duckdb_value_int32(&res, 3, i);
    duckdb_free(tn);
    duckdb_free(cn);
  }
  duckdb_destroy_result(&res);
  m->naudit_saved = m->naudit_cols;
  return 0;
}

void dg__mgr_persist_dispose(dg_manager_t *m) {
  audit_cols_free(m);
  dg_free(m->hist_spare);
  dg_free(m->pend_spare);
  m->hist_spare = NULL;
  m->pend_spare = NULL;
  m->hist_spare_cap = m->pend_spare_cap = 0;
  if (m->applied_st) duckdb_destroy_prepare(&m->applied_st);
  m->applied_st = NULL;
}

/* After a failed batch: ids handed out in it were never stored. */
static void audit_cols_forget(dg_manager_t *m) {
  for (size_t i = m->naudit_saved; i < m->naudit_cols; i++) {
    dg_free(m->audit_cols[i].table);
    dg_free(m->audit_cols[i].column);
  }
  m->naudit_cols = m->naudit_saved;
  for (uint32_t i = 0; i < m->ntables; i++) {
    if (m->tables[i] == NULL) continue;
    dg_free(m->tables[i]->audit_ids);
    m->tables[i]->audit_ids = NULL;
  }
}

/* The dg.audit_cols id of a table's column (col < 0: its row records),
 * handing out a new one when the pair is new (stored with the batch). A
 * table dropped and made again with the same column finds its old id. */
static int32_t audit_col_id(dg_manager_t *m, mtable_t *t, const char *table, int col) {
  int ncols = t ? t->def->ncols : 0;
  int slot = col >= 0 ? col : ncols;
  if (t && t->audit_ids && t->audit_ids[slot]) return t->audit_ids[slot];
  const char *cn = t && col >= 0 ? t->def->cols[col].name : NULL;
  int scale = t && col >= 0 && t->def->cols[col].type == DG_COL_NUMBER ? t->def->cols[col].scale : 0;
  int32_t id = 0, top = 0;
  for (size_t i = 0; i < m->naudit_cols; i++) {
    const maudcol_t *a = &m->audit_cols[i];
    if (a->id > top) top = a->id;
    if (a->scale == scale && strcmp(a->table, table) == 0 &&
        (a->column == NULL ? cn == NULL : cn != NULL && strcmp(a->column, cn) == 0))
      id = a->id;
  }
  if (id == 0) {
    maudcol_t *a = audit_col_add(m);
    a->id = id = top + 1;
    a->scale = scale;
    a->table = dg_strdup(table);
    a->column = cn ? dg_strdup(cn) : NULL;
  }
  if (t) {
    if (t->audit_ids == NULL) t->audit_ids = dg_calloc((size_t)ncols + 1, sizeof *t->audit_ids);
    t->audit_ids[slot] = id;
  }
  return id;
}

/* The idempotency map: every (caller, request_id) first seen within the
 * window before the last applied request (stream time). */
static int load_idem(dg_manager_t *m, char *err, size_t errcap) {
  dg_redis_xid_t applied = {0, 0};
  dg_redis_xid_parse(m->last_applied, strlen(m->last_applied), &applied);
  int64_t from = (int64_t)applied.ms - m->idem_window_ms;
  duckdb_prepared_statement st;
  if (duckdb_prepare(m->conn, dg_sql_idem_since, &st) == DuckDBError) {
    snprintf(err, errcap, "cannot read dg.idem: %s", duckdb_prepare_error(st));
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  duckdb_bind_int64(st, 1, from);
  duckdb_result res;
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    snprintf(err, errcap, "cannot read dg.idem: %s", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  pthread_mutex_lock(&m->idem_lock);
  for (idx_t i = 0; i < duckdb_row_count(&res); i++) {
    char *caller = duckdb_value_varchar(&res, 0, i);
    char *rid = duckdb_value_varchar(&res, 1, i);
    dg_redis_xid_t id = {(uint64_t)duckdb_value_int64(&res, 2, i), (uint64_t)duckdb_value_int64(&res, 3, i)};
    if (caller && rid) dg__mgr_idem_add(&m->idem, dg__mgr_idem_key(caller, rid), id);
    duckdb_free(caller);
    duckdb_free(rid);
  }
  pthread_mutex_unlock(&m->idem_lock);
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return 0;
}

int dg__mgr_load(dg_manager_t *m, char *err, size_t errcap) {
  free_state(m);
  m->next_row_id = 1;
  duckdb_result res;
  if (duckdb_query(m->conn, dg_sql_applied_read, &res) == DuckDBError ||
      duckdb_row_count(&res) != 1) {
    snprintf(err, errcap, "cannot read dg.applied");
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  char *last = duckdb_value_varchar(&res, 0, 0);
  snprintf(m->last_applied, sizeof m->last_applied, "%s", last ? last : "0-0");
  duckdb_free(last);
  /* The counter is state: rows inserted and deleted again leave it above
   * every id in use, and a replay must hand out the same ids. */
  int64_t stored_next = duckdb_value_is_null(&res, 1, 0) ? 1 : duckdb_value_int64(&res, 1, 0);
  duckdb_destroy_result(&res);

  if (duckdb_query(m->conn, dg_sql_table_names, &res) == DuckDBError) {
    snprintf(err, errcap, "cannot read dg.tables");
    duckdb_destroy_result(&res);
    return DG_EIO;
  }
  int rc = 0;
  for (idx_t i = 0; i < duckdb_row_count(&res) && rc == 0; i++) {
    char *name = duckdb_value_varchar(&res, 0, i);
    rc = load_table(m, name, err, errcap);
    duckdb_free(name);
  }
  duckdb_destroy_result(&res);
  if (rc != 0) return rc;

  if (duckdb_query(m->conn, dg_sql_holds_read, &res) == DuckDBSuccess) {
    for (idx_t i = 0; i < duckdb_row_count(&res); i++) {
      char *tn = duckdb_value_varchar(&res, 0, i);
      char *cn = duckdb_value_varchar(&res, 2, i);
      mtable_t *t = dg__mgr_table(m, tn);
      const dg_coldef_t *c = t && cn ? dg_tabledef_col(t->def, cn) : NULL;
      if (c && c->type == DG_COL_NUMBER)
        dg_etable_hold(t->et, duckdb_value_int64(&res, 1, i), (uint32_t)c->slot, true, NULL);
      duckdb_free(tn);
      duckdb_free(cn);
    }
  }
  duckdb_destroy_result(&res);

  if (duckdb_query(m->conn, dg_sql_view_names, &res) == DuckDBSuccess) {
    m->nviews = duckdb_row_count(&res);
    m->views = dg_calloc(m->nviews + 1, sizeof *m->views);
    for (idx_t i = 0; i < m->nviews; i++) {
      char *v = duckdb_value_varchar(&res, 0, i);
      m->views[i] = dg_strdup(v ? v : "");
      duckdb_free(v);
    }
  }
  duckdb_destroy_result(&res);

  if (stored_next > m->next_row_id) m->next_row_id = stored_next;
  rc = load_audit_cols(m, err, errcap);
  if (rc != 0) return rc;
  return load_idem(m, err, errcap);
}

/* ---- writing a batch ---------------------------------------------------------------- */

/* Staging tables live on the manager's connection, made outside any batch
 * transaction so a rollback cannot take them away. */
static int ensure_staging(dg_manager_t *m, mtable_t *t, char *err, size_t errcap) {
  if (t->staged) return 0;
  char sql[256];
  const char *kinds[] = {"upd", "ins"};
  for (int k = 0; k < 2; k++) {
    snprintf(sql, sizeof sql,
             "CREATE OR REPLACE TEMP TABLE \"dg_%s_%s\" AS SELECT * FROM main.\"%s\" LIMIT 0",
             kinds[k], t->def->name, t->def->name);
    if (exec(m, sql, err, errcap) != 0) return DG_EIO;
  }
  if (exec(m, "CREATE TEMP TABLE IF NOT EXISTS dg_del (id BIGINT)", err, errcap) != 0) return DG_EIO;
  t->staged = 1;
  return 0;
}

/* A table's touched rows as the tail left them, copied out of the engine
 * under state_lock so that the DuckDB statements run without it (the
 * manager goes on applying meanwhile; a spread over a million leaves used
 * to hold it off for the whole write). */
typedef struct {
  size_t n;
  int64_t *ids, *parents; /* parent DG_ROW_NONE: NULL                      */
  int64_t *nums;          /* n x def->nnum, by number slot                  */
  char **texts;           /* n x def->ntext, by text slot (copies or NULL) */
  size_t *tlens;
} caprows_t;

/* Appends row id (read already: row, its numbers in nums) to r, growing it;
 * texts are copied from the engine. */
static void caprows_push(caprows_t *r, size_t *cap, const mtable_t *t, const dg_erow_t *row, const int64_t *nums) {
  size_t nn = (size_t)t->def->nnum, nt = (size_t)t->def->ntext;
  if (r->n == *cap) {
    size_t c = *cap ? *cap * 2 : 1024;
    r->ids = dg_realloc(r->ids, c * sizeof *r->ids);
    r->parents = dg_realloc(r->parents, c * sizeof *r->parents);
    r->nums = dg_realloc(r->nums, (c * nn + 1) * sizeof *r->nums);
    r->texts = dg_realloc(r->texts, (c * nt + 1) * sizeof *r->texts);
    r->tlens = dg_realloc(r->tlens, (c * nt + 1) * sizeof *r->tlens);
    *cap = c;
  }
  size_t k = r->n++;
  r->ids[k] = row->id;
  r->parents[k] = row->parent_id;
  if (nn) memcpy(r->nums + k * nn, nums, nn * sizeof *nums);
  for (size_t c = 0; c < nt; c++) {
    const char *txt = NULL;
    size_t len = 0;
    if (dg_etable_text_get(t->et, row->id, (uint32_t)c, &txt, &len) != 0) txt = NULL;
    r->texts[k * nt + c] = txt ? dg_strndup(txt, len) : NULL;
    r->tlens[k * nt + c] = txt ? len : 0;
  }
}

static void caprows_free(caprows_t *r, const dg_tabledef_t *def) {
  if (r->texts)
    for (size_t i = 0; i < r->n * (size_t)def->ntext; i++) dg_free(r->texts[i]);
  dg_free(r->ids);
  dg_free(r->parents);
  dg_free(r->nums);
  dg_free(r->texts);
  dg_free(r->tlens);
  memset(r, 0, sizeof *r);
}

/* Appends captured rows to a staging table via data chunks. */
static int stage_rows(dg_manager_t *m, const dg_tabledef_t *def, const char *stage, const caprows_t *r,
                      char *err, size_t errcap) {
  duckdb_appender app;
  if (duckdb_appender_create_ext(m->conn, "temp", "main", stage, &app) == DuckDBError) {
    snprintf(err, errcap, "appender on %s: %s", stage, duckdb_appender_error(app));
    duckdb_appender_destroy(&app);
    return DG_EIO;
  }
  idx_t ncols = duckdb_appender_column_count(app);
  duckdb_logical_type *types = dg_calloc(ncols, sizeof *types);
  for (idx_t c = 0; c < ncols; c++) types[c] = duckdb_appender_column_type(app, c);
  duckdb_data_chunk chunk = duckdb_create_data_chunk(types, ncols);
  idx_t cap = duckdb_vector_size();
  size_t nn = (size_t)def->nnum, nt = (size_t)def->ntext;
  int rc = 0;
  idx_t fill = 0;
  /* Vectors and their data, fetched once per chunk (a spread stages a
   * million rows). */
  duckdb_vector *vec = dg_calloc(ncols + 1, sizeof *vec);
  int64_t **data = dg_calloc(ncols + 1, sizeof *data);
  size_t n = r->n;
  for (size_t i = 0; i <= n && rc == 0; i++) {
    if (fill == cap || (i == n && fill > 0)) {
      duckdb_data_chunk_set_size(chunk, fill);
      if (duckdb_append_data_chunk(app, chunk) == DuckDBError) {
        snprintf(err, errcap, "append to %s: %s", stage, duckdb_appender_error(app));
        rc = DG_EIO;
      }
      duckdb_data_chunk_reset(chunk);
      fill = 0;
    }
    if (i == n || rc != 0) break;
    if (fill == 0) {
      for (idx_t c = 0; c < ncols; c++) {
        vec[c] = duckdb_data_chunk_get_vector(chunk, c);
        data[c] = duckdb_vector_get_data(vec[c]);
      }
    }
    data[0][fill] = r->ids[i];
    duckdb_vector pv = vec[1];
    if (r->parents[i] == DG_ROW_NONE) {
      duckdb_vector_ensure_validity_writable(pv);
      duckdb_validity_set_row_invalid(duckdb_vector_get_validity(pv), fill);
    } else {
      uint64_t *valid = duckdb_vector_get_validity(pv);
      if (valid) duckdb_validity_set_row_valid(valid, fill);
      data[1][fill] = r->parents[i];
    }
    for (int c = 0; c < def->ncols; c++) {
      duckdb_vector v = vec[c + 2];
      size_t slot = (size_t)def->cols[c].slot;
      if (def->cols[c].type == DG_COL_NUMBER) {
        data[c + 2][fill] = r->nums[i * nn + slot];
      } else {
        const char *txt = r->texts[i * nt + slot];
        if (txt == NULL) {
          duckdb_vector_ensure_validity_writable(v);
          duckdb_validity_set_row_invalid(duckdb_vector_get_validity(v), fill);
        } else {
          uint64_t *valid = duckdb_vector_get_validity(v);
          if (valid) duckdb_validity_set_row_valid(valid, fill);
          duckdb_vector_assign_string_element_len(v, fill, txt, r->tlens[i * nt + slot]);
        }
      }
    }
    fill++;
  }
  if (rc == 0 && duckdb_appender_close(app) == DuckDBError) {
    snprintf(err, errcap, "flush %s: %s", stage, duckdb_appender_error(app));
    rc = DG_EIO;
  }
  duckdb_destroy_data_chunk(&chunk);
  for (idx_t c = 0; c < ncols; c++) duckdb_destroy_logical_type(&types[c]);
  dg_free(types);
  dg_free(vec);
  dg_free(data);
  duckdb_appender_destroy(&app);
  return rc;
}

static int stage_ids(dg_manager_t *m, const int64_t *ids, size_t n, char *err, size_t errcap) {
  if (exec(m, "DELETE FROM temp.dg_del", err, errcap) != 0) return DG_EIO;
  duckdb_appender app;
  if (duckdb_appender_create_ext(m->conn, "temp", "main", "dg_del", &app) == DuckDBError) {
    snprintf(err, errcap, "appender on dg_del");
    duckdb_appender_destroy(&app);
    return DG_EIO;
  }
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++)
    if (duckdb_append_int64(app, ids[i]) == DuckDBError || duckdb_appender_end_row(app) == DuckDBError)
      rc = DG_EIO;
  if (rc == 0 && duckdb_appender_close(app) == DuckDBError) rc = DG_EIO;
  if (rc) snprintf(err, errcap, "staging ids: %s", duckdb_appender_error(app));
  duckdb_appender_destroy(&app);
  return rc;
}

typedef struct {
  int64_t *v;
  size_t n, cap;
} idvec_t;

static void idvec_push(idvec_t *a, int64_t x) {
  if (a->n == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 64;
    a->v = dg_realloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n++] = x;
}

/* DuckDB joins a staging table to the user table either by scanning the
 * table or, when the staged side has at most dynamic_or_filter_threshold
 * rows, by pushing the staged ids into the scan as an IN filter that probes
 * the primary key. Measured on 1.4.4 (a batch's UPDATE … FROM stage):
 *
 *   table rows   staged   scan     probe
 *   101k         50       5.8 ms   5.1 ms
 *   101k         2,000    10 ms    25 ms
 *   101k         8,000    16 ms    51 ms
 *   10M          450      53 ms    35 ms
 *
 * so probing pays while the staged rows are under about 1% of the table.
 * The threshold is set per table, rounded to a power of two so a growing
 * table does not cost a SET per batch. */
static uint64_t probe_threshold(const mtable_t *t) {
  uint64_t want = 50, rows = dg_etable_row_count(t->et) / 100;
  while (want * 2 <= rows) want *= 2;
  return want;
}

static int set_probe_threshold(dg_manager_t *m, uint64_t want, char *err, size_t errcap) {
  if (want == m->or_threshold) return 0;
  char sql[80];
  snprintf(sql, sizeof sql, "SET dynamic_or_filter_threshold = %" PRIu64, want);
  if (exec(m, sql, err, errcap) != 0) return DG_EIO;
  m->or_threshold = want;
  return 0;
}

static int cmp_id(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* One table's share of a persist: what capture_table takes under
 * state_lock, written by write_table without it. */
typedef struct {
  dg_tabledef_t *def;   /* counted ref                                      */
  uint32_t tag;
  uint64_t threshold;   /* for set_probe_threshold                          */
  idvec_t del;          /* rows to delete                                   */
  caprows_t upd, ins;   /* rows to update, to insert (ins in id order)      */
} tabwork_t;

/* Sorts the table's touched rows into deletes, updates and inserts (what
 * DuckDB holds is what `fresh` says) and copies the rows out (state_lock
 * held). */
static void capture_table(mtable_t *t, tabwork_t *tw) {
  memset(tw, 0, sizeof *tw);
  tw->def = dg_tabledef_ref(t->def);
  tw->tag = t->tag;
  tw->threshold = probe_threshold(t);
  idvec_t ins = {0};
  size_t upd_cap = 0, ins_cap = 0;
  int64_t *nums = dg_calloc((size_t)t->def->nnum + 1, sizeof *nums);
  /* One engine look-up per row (the row, its numbers); the updates are
   * copied on the way, the inserts after sorting. */
  for (size_t i = 0; i < t->touched.cap; i++) {
    if (t->touched.state[i] != 1) continue;
    int64_t id = t->touched.keys[i];
    dg_erow_t row;
    int exists = dg_etable_row_read(t->et, id, &row, nums) == 0;
    int fresh = dg_idset_has(&t->fresh, id);
    if (!fresh && !exists) idvec_push(&tw->del, id);
    else if (!fresh && exists) caprows_push(&tw->upd, &upd_cap, t, &row, nums);
    else if (fresh && exists) idvec_push(&ins, id);
  }
  /* Inserts in id order (the touched set's order is its hash's): DuckDB's
   * primary key index takes sorted keys faster, and the table's rows lie
   * in id order, the order every read and export asks for. */
  if (ins.n > 1) qsort(ins.v, ins.n, sizeof *ins.v, cmp_id);
  for (size_t i = 0; i < ins.n; i++) {
    dg_erow_t row;
    if (dg_etable_row_read(t->et, ins.v[i], &row, nums) == 0) caprows_push(&tw->ins, &ins_cap, t, &row, nums);
  }
  dg_free(ins.v);
  dg_free(nums);
}

static void tabwork_free(tabwork_t *tw) {
  caprows_free(&tw->upd, tw->def);
  caprows_free(&tw->ins, tw->def);
  dg_free(tw->del.v);
  dg_tabledef_unref(tw->def);
  memset(tw, 0, sizeof *tw);
}

/* Writes one table's captured rows (state_lock not held). hist: the tail's
 * audit rows, for the columns the updates set. */
static int write_table(dg_manager_t *m, const tabwork_t *tw, const mhist_t *hist, size_t nhist, char *err,
                       size_t errcap) {
  if (set_probe_threshold(m, tw->threshold, err, errcap) != 0) return DG_EIO;
  const dg_tabledef_t *def = tw->def;
  const char *name = def->name;
  char sql[4096];
  int rc = 0;
  if (tw->del.n) {
    rc = stage_ids(m, tw->del.v, tw->del.n, err, errcap);
    snprintf(sql, sizeof sql, "DELETE FROM main.\"%s\" WHERE id IN (SELECT id FROM temp.dg_del)", name);
    if (rc == 0) rc = exec_count(m, sql, tw->del.n, err, errcap);
    dg_sql_holds_delete_staged(sql, sizeof sql, name);
    if (rc == 0) rc = exec(m, sql, err, errcap);
  }
  if (rc == 0 && tw->upd.n) {
    char stage[96];
    snprintf(stage, sizeof stage, "dg_upd_%s", name);
    rc = stage_rows(m, def, stage, &tw->upd, err, errcap);
    /* SET only the columns the batch changed: DuckDB's update cost grows
     * with the columns set (1 column instead of 2: ~25% less on 101k rows).
     * A row-level change (move) sets the whole row. */
    int all = 0;
    uint8_t *cols = dg_calloc((size_t)def->ncols + 1, 1);
    for (size_t i = 0; i < nhist && !all; i++) {
      const mhist_t *h = &hist[i];
      if (h->tag != tw->tag || h->kind == MHIST_HOLD || h->kind == MHIST_IMAGE) continue;
      if (h->kind == MHIST_ROW || h->col < 0) all = 1;
      else if (h->col < def->ncols) cols[h->col] = 1;
    }
    dg_buf_t b;
    dg_buf_init(&b);
    dg_buf_printf(&b, "UPDATE main.\"%s\" AS x SET ", name);
    const char *sep = "";
    if (all) {
      dg_buf_puts(&b, "parent_id = s.parent_id");
      sep = ", ";
    }
    for (int c = 0; c < def->ncols; c++) {
      if (!all && !cols[c]) continue;
      dg_buf_printf(&b, "%s\"%s\" = s.\"%s\"", sep, def->cols[c].name, def->cols[c].name);
      sep = ", ";
    }
    dg_free(cols);
    if (*sep == '\0') dg_buf_puts(&b, "parent_id = s.parent_id"); /* rows touched, nothing changed */
    dg_buf_printf(&b, " FROM temp.\"%s\" AS s WHERE x.id = s.id", stage);
    if (rc == 0) rc = exec_count(m, b.data, tw->upd.n, err, errcap);
    dg_buf_dispose(&b);
    snprintf(sql, sizeof sql, "DELETE FROM temp.\"%s\"", stage);
    if (rc == 0) rc = exec(m, sql, err, errcap);
  }
  if (rc == 0 && tw->ins.n) {
    char stage[96];
    snprintf(stage, sizeof stage, "dg_ins_%s", name);
    rc = stage_rows(m, def, stage, &tw->ins, err, errcap);
    snprintf(sql, sizeof sql, "INSERT INTO main.\"%s\" SELECT * FROM temp.\"%s\"", name, stage);
    if (rc == 0) rc = exec_count(m, sql, tw->ins.n, err, errcap);
    snprintf(sql, sizeof sql, "DELETE FROM temp.\"%s\"", stage);
    if (rc == 0) rc = exec(m, sql, err, errcap);
  }
  return rc;
}

/* What one persist writes besides the rows: the tail taken from the
 * manager under state_lock, so the manager goes on applying meanwhile. */
typedef struct {
  mpend_t *pend;           /* the requests, in stream order (owned)          */
  size_t npend;
  size_t pend_cap;
  mhist_t *hist;           /* their audit rows (owned)                       */
  size_t nhist, hist_cap;
  int32_t *audit_ids;      /* dg.audit_cols id of each audit row             */
  char **holds_table;      /* hold rows: table and column names (borrowed
                              from the definitions, kept alive by refs)      */
  dg_tabledef_t **defs;    /* table definitions referenced (counted refs)    */
  size_t ndefs;
  dg_idset_t *touched;     /* per table tag: rows staged (moved out)         */
  dg_idset_t *fresh;
  uint32_t ntables;
  int64_t next_row_id;
} work_t;

/* The definition behind a hold row, if the table is still there. */
static const dg_tabledef_t *work_def(const work_t *w, uint32_t tag) {
  return tag < w->ndefs ? w->defs[tag] : NULL;
}

static int write_holds(dg_manager_t *m, const work_t *w, char *err, size_t errcap) {
  duckdb_prepared_statement del = NULL, add = NULL;
  int rc = 0;
  for (size_t i = 0; i < w->nhist && rc == 0; i++) {
    const mhist_t *h = &w->hist[i];
    const dg_tabledef_t *def = work_def(w, h->tag);
    if (h->kind != MHIST_HOLD || def == NULL) continue;
    if (del == NULL &&
        (duckdb_prepare(m->conn, dg_sql_hold_delete, &del) == DuckDBError ||
         duckdb_prepare(m->conn, dg_sql_hold_insert, &add) == DuckDBError)) {
      snprintf(err, errcap, "prepare holds");
      rc = DG_EIO;
      break;
    }
    duckdb_prepared_statement sts[2] = {del, add};
    for (int k = 0; k < (strcmp(h->new_text, "held") == 0 ? 2 : 1); k++) {
      duckdb_bind_varchar(sts[k], 1, def->name);
      duckdb_bind_int64(sts[k], 2, h->row);
      duckdb_bind_varchar(sts[k], 3, def->cols[h->col].name);
      duckdb_result res;
      if (duckdb_execute_prepared(sts[k], &res) == DuckDBError) {
        snprintf(err, errcap, "holds: %s", duckdb_result_error(&res));
        rc = DG_EIO;
      }
      duckdb_destroy_result(&res);
    }
  }
  if (del) duckdb_destroy_prepare(&del);
  if (add) duckdb_destroy_prepare(&add);
  return rc;
}

/* Sets row `i` of a VARCHAR vector, or null. */
static void put_str(duckdb_vector v, idx_t i, const char *s, size_t len) {
  if (s == NULL) {
    duckdb_vector_ensure_validity_writable(v);
    duckdb_validity_set_row_invalid(duckdb_vector_get_validity(v), i);
    return;
  }
  uint64_t *valid = duckdb_vector_get_validity(v);
  if (valid) duckdb_validity_set_row_valid(valid, i);
  duckdb_vector_assign_string_element_len(v, i, s, len);
}

/* The audit log (see migration 5 in dgsql.c): one dg.audit_requests row per
 * request with changes, one integer dg.cell_log row per change, filled as
 * data chunks in place (a batch of 1,024 writes has ~13,000 of them). */
static int write_history(dg_manager_t *m, const work_t *w, char *err, size_t errcap) {
  int rc = 0;
  /* New (table, column) names first: the cell rows refer to them. Between
   * batches every name is saved, so the new ones start at naudit_saved.
   * The ids were looked up while the tail was taken (work_take). */
  const int32_t *ids = w->audit_ids;
  if (m->naudit_cols > m->naudit_saved) {
    duckdb_prepared_statement st;
    if (duckdb_prepare(m->conn, dg_sql_audit_col_insert, &st) == DuckDBError) {
      rc = DG_EIO;
    } else {
      for (size_t i = m->naudit_saved; i < m->naudit_cols && rc == 0; i++) {
        const maudcol_t *a = &m->audit_cols[i];
        duckdb_bind_int32(st, 1, a->id);
        duckdb_bind_varchar(st, 2, a->table);
        if (a->column) duckdb_bind_varchar(st, 3, a->column);
        else duckdb_bind_null(st, 3);
        duckdb_bind_int32(st, 4, a->scale);
        duckdb_result res;
        if (duckdb_execute_prepared(st, &res) == DuckDBError) rc = DG_EIO;
        duckdb_destroy_result(&res);
      }
    }
    duckdb_destroy_prepare(&st);
    if (rc) {
      snprintf(err, errcap, "cannot record audit column names");
      return rc;
    }
  }

  duckdb_appender ra, app, ia;
  if (duckdb_appender_create(m->conn, "dg", "audit_requests", &ra) == DuckDBError ||
      duckdb_appender_create(m->conn, "dg", "cell_log", &app) == DuckDBError ||
      duckdb_appender_create(m->conn, "dg", "row_images", &ia) == DuckDBError) {
    snprintf(err, errcap, "appender on the audit log");
    duckdb_appender_destroy(&ra);
    duckdb_appender_destroy(&app);
    duckdb_appender_destroy(&ia);
    return DG_EIO;
  }
  int32_t pos = 0; /* of the next row image within its request */

  enum { C_MS, C_SEQ, C_ROW, C_COL, C_OLDN, C_NEWN, C_OLDT, C_NEWT, NCOL };
  duckdb_logical_type types[NCOL];
  for (idx_t c = 0; c < NCOL; c++) types[c] = duckdb_appender_column_type(app, c);
  duckdb_data_chunk chunk = duckdb_create_data_chunk(types, NCOL);
  duckdb_vector vec[NCOL];
  int64_t *data[NCOL];
  idx_t cap = duckdb_vector_size(), fill = 0;
  uint32_t prev_req = UINT32_MAX;
  dg_redis_xid_t xid = {0, 0};
  for (size_t i = 0; i <= w->nhist && rc == 0; i++) {
    if (fill == 0) {
      for (idx_t c = 0; c < NCOL; c++) {
        vec[c] = duckdb_data_chunk_get_vector(chunk, c);
        data[c] = duckdb_vector_get_data(vec[c]);
      }
    }
    if (fill == cap || (i == w->nhist && fill > 0)) {
      duckdb_data_chunk_set_size(chunk, fill);
      if (duckdb_append_data_chunk(app, chunk) == DuckDBError) rc = DG_EIO;
      duckdb_data_chunk_reset(chunk);
      fill = 0;
      for (idx_t c = 0; c < NCOL; c++) {
        vec[c] = duckdb_data_chunk_get_vector(chunk, c);
        data[c] = duckdb_vector_get_data(vec[c]);
      }
    }
    if (i == w->nhist || rc != 0) break;
    const mhist_t *h = &w->hist[i];
    if (h->req != prev_req) {
      /* A request's audit rows are contiguous: it was applied whole. */
      const mpend_t *r = &w->pend[h->req];
      prev_req = h->req;
      if (dg_redis_xid_parse(r->stream_id, strlen(r->stream_id), &xid) != 0) xid = (dg_redis_xid_t){0, 0};
      /* The request's time is its stream id's: a replay writes the same. */
      duckdb_timestamp ts = {(int64_t)xid.ms * 1000};
      duckdb_append_int64(ra, (int64_t)xid.ms);
      duckdb_append_int64(ra, (int64_t)xid.seq);
      duckdb_append_varchar(ra, r->request_id);
      duckdb_append_varchar(ra, r->user);
      duckdb_append_timestamp(ra, ts);
      if (duckdb_appender_end_row(ra) == DuckDBError) rc = DG_EIO;
      pos = 0;
    }
    if (h->kind == MHIST_IMAGE) {
      /* A deleted row as it was (migration 9): its own table, few rows. */
      duckdb_append_int64(ia, (int64_t)xid.ms);
      duckdb_append_int64(ia, (int64_t)xid.seq);
      duckdb_append_int32(ia, pos++);
      duckdb_append_int32(ia, ids[i]);
      duckdb_append_int64(ia, h->row);
      if (h->has_old) duckdb_append_int64(ia, h->old_num);
      else duckdb_append_null(ia);
      duckdb_append_varchar(ia, h->old_text ? h->old_text : "{}");
      if (duckdb_appender_end_row(ia) == DuckDBError) rc = DG_EIO;
      continue;
    }
    data[C_MS][fill] = (int64_t)xid.ms;
    data[C_SEQ][fill] = (int64_t)xid.seq;
    data[C_ROW][fill] = h->row;
    ((int32_t *)data[C_COL])[fill] = ids[i];
    if (h->numeric) {
      if (h->has_old) {
        uint64_t *valid = duckdb_vector_get_validity(vec[C_OLDN]);
        if (valid) duckdb_validity_set_row_valid(valid, fill);
        data[C_OLDN][fill] = h->old_num;
      } else {
        duckdb_vector_ensure_validity_writable(vec[C_OLDN]);
        duckdb_validity_set_row_invalid(duckdb_vector_get_validity(vec[C_OLDN]), fill);
      }
      uint64_t *valid = duckdb_vector_get_validity(vec[C_NEWN]);
      if (valid) duckdb_validity_set_row_valid(valid, fill);
      data[C_NEWN][fill] = h->new_num;
      put_str(vec[C_OLDT], fill, NULL, 0);
      put_str(vec[C_NEWT], fill, NULL, 0);
    } else {
      for (int c = C_OLDN; c <= C_NEWN; c++) {
        duckdb_vector_ensure_validity_writable(vec[c]);
        duckdb_validity_set_row_invalid(duckdb_vector_get_validity(vec[c]), fill);
      }
      if (h->kind == MHIST_ROW && h->has_new) {
        /* An insert's row record: new_num is the parent (INT64_MIN: a root). */
        duckdb_validity_set_row_valid(duckdb_vector_get_validity(vec[C_NEWN]), fill);
        data[C_NEWN][fill] = h->new_num;
      }
      put_str(vec[C_OLDT], fill, h->old_text, h->old_text ? strlen(h->old_text) : 0);
      put_str(vec[C_NEWT], fill, h->new_text, h->new_text ? strlen(h->new_text) : 0);
    }
    fill++;
  }
  if (rc == 0 && duckdb_appender_close(ra) == DuckDBError) rc = DG_EIO;
  if (rc == 0 && duckdb_appender_close(app) == DuckDBError) rc = DG_EIO;
  if (rc == 0 && duckdb_appender_close(ia) == DuckDBError) rc = DG_EIO;
  if (rc) {
    const char *e = duckdb_appender_error(app);
    if (e == NULL) e = duckdb_appender_error(ia);
    snprintf(err, errcap, "audit log: %s", e ? e : duckdb_appender_error(ra));
  }
  duckdb_destroy_data_chunk(&chunk);
  for (idx_t c = 0; c < NCOL; c++) duckdb_destroy_logical_type(&types[c]);
  duckdb_appender_destroy(&ra);
  duckdb_appender_destroy(&app);
  duckdb_appender_destroy(&ia);
  return rc;
}

static double mono_ms(void) { return (double)dg_mono_us() / 1e3; }

/* dg.idem: (caller, request_id) -> the first request's stream id, for
 * idempotent retries (the API finds the first outcome by that id) and for
 * the manager's map after a restart. Replaces dg.outcomes (migration 6). */
static int write_idem(dg_manager_t *m, const work_t *w, char *err, size_t errcap) {
  duckdb_appender app;
  if (duckdb_appender_create(m->conn, "dg", "idem", &app) == DuckDBError) {
    snprintf(err, errcap, "appender on dg.idem");
    duckdb_appender_destroy(&app);
    return DG_EIO;
  }
  int rc = 0;
  for (size_t i = 0; i < w->npend && rc == 0; i++) {
    const mpend_t *p = &w->pend[i];
    if (!p->idem) continue;
    dg_redis_xid_t x = {0, 0};
    dg_redis_xid_parse(p->stream_id, strlen(p->stream_id), &x);
    duckdb_append_varchar(app, p->caller);
    duckdb_append_varchar(app, p->request_id);
    duckdb_append_int64(app, (int64_t)x.ms);
    duckdb_append_int64(app, (int64_t)x.seq);
    if (duckdb_appender_end_row(app) == DuckDBError) rc = DG_EIO;
  }
  if (rc == 0 && duckdb_appender_close(app) == DuckDBError) rc = DG_EIO;
  if (rc) snprintf(err, errcap, "dg.idem: %s", duckdb_appender_error(app));
  duckdb_appender_destroy(&app);
  return rc;
}

static int run_ddl(dg_manager_t *m, char *err, size_t errcap) {
  for (size_t i = 0; i < m->nddl; i++) {
    if (m->ddl[i][0] == '\x01' && i + 1 < m->nddl) {
      duckdb_prepared_statement st;
      int rc = 0;
      if (duckdb_prepare(m->conn, dg_sql_view_insert, &st) == DuckDBError) {
        rc = DG_EIO;
      } else {
        duckdb_bind_varchar(st, 1, m->ddl[i] + 1);
        duckdb_bind_varchar(st, 2, m->ddl[i + 1]);
        duckdb_result res;
        if (duckdb_execute_prepared(st, &res) == DuckDBError) rc = DG_EIO;
        duckdb_destroy_result(&res);
      }
      duckdb_destroy_prepare(&st);
      if (rc) {
        snprintf(err, errcap, "cannot record the view");
        return rc;
      }
      i++;
      continue;
    }
    if (exec(m, m->ddl[i], err, errcap) != 0) return DG_EIO;
  }
  return 0;
}

/* Takes the tail from the manager (state_lock held): pend, audit rows and
 * the touched sets move into w; audit column ids are looked up now, while
 * the table definitions cannot change. */
static void work_take(dg_manager_t *m, work_t *w) {
  memset(w, 0, sizeof *w);
  w->pend = m->pend;
  w->npend = m->npend;
  w->pend_cap = m->pend_cap;
  m->pend = m->pend_spare; /* NULL, or the arrays of a tail persisted before */
  m->pend_cap = m->pend_spare_cap;
  m->npend = 0;
  m->pend_spare = NULL;
  m->pend_spare_cap = 0;
  w->hist = m->hist;
  w->nhist = m->nhist;
  w->hist_cap = m->hist_cap;
  m->hist = m->hist_spare;
  m->hist_cap = m->hist_spare_cap;
  m->nhist = 0;
  m->hist_spare = NULL;
  m->hist_spare_cap = 0;
  w->next_row_id = m->next_row_id;
  w->audit_ids = dg_malloc((w->nhist + 1) * sizeof *w->audit_ids);
  for (size_t i = 0; i < w->nhist; i++) {
    const mhist_t *h = &w->hist[i];
    mtable_t *t = h->tag < m->ntables ? m->tables[h->tag] : NULL;
    w->audit_ids[i] = audit_col_id(m, t, t ? t->def->name : w->pend[h->req].table_name, h->col);
  }
  w->ntables = w->ndefs = m->ntables;
  w->touched = dg_calloc((size_t)m->ntables + 1, sizeof *w->touched);
  w->fresh = dg_calloc((size_t)m->ntables + 1, sizeof *w->fresh);
  w->defs = dg_calloc((size_t)m->ntables + 1, sizeof *w->defs);
  for (uint32_t i = 0; i < m->ntables; i++) {
    mtable_t *t = m->tables[i];
    if (t == NULL) continue;
    w->defs[i] = dg_tabledef_ref(t->def);
    w->touched[i] = t->touched;
    w->fresh[i] = t->fresh;
    dg_idset_init(&t->touched);
    dg_idset_init(&t->fresh);
  }
  atomic_store(&m->npend_atomic, 0);
  atomic_store(&m->pend_since_us, 0);
}

/* Spares kept up to this many bytes each: a batch's tail (a few MB at
 * 20,000 requests) is reused, a million-cell spread's is not kept. */
#define SPARE_MAX_BYTES ((size_t)32 << 20)

/* After a persist (state_lock held): the tail's arrays become the spares
 * the next work_take hands the manager, when there is room. Their texts
 * were freed already (work_texts_free). */
static void recycle(dg_manager_t *m, work_t *w) {
  if (m->hist_spare == NULL && w->hist && w->hist_cap * sizeof *w->hist <= SPARE_MAX_BYTES) {
    m->hist_spare = w->hist;
    m->hist_spare_cap = w->hist_cap;
    w->hist = NULL;
    w->nhist = 0;
  }
  if (m->pend_spare == NULL && w->pend && w->pend_cap * sizeof *w->pend <= SPARE_MAX_BYTES) {
    m->pend_spare = w->pend;
    m->pend_spare_cap = w->pend_cap;
    w->pend = NULL;
    w->npend = 0;
  }
}

static void work_texts_free(work_t *w) {
  for (size_t i = 0; i < w->nhist; i++) {
    dg_free(w->hist[i].old_text);
    dg_free(w->hist[i].new_text);
    w->hist[i].old_text = w->hist[i].new_text = NULL;
  }
}

static void work_free(work_t *w) {
  dg_free(w->pend);
  for (size_t i = 0; i < w->nhist; i++) {
    dg_free(w->hist[i].old_text);
    dg_free(w->hist[i].new_text);
  }
  dg_free(w->hist);
  dg_free(w->audit_ids);
  for (uint32_t i = 0; i < w->ntables; i++) {
    dg_idset_dispose(&w->touched[i]);
    dg_idset_dispose(&w->fresh[i]);
    if (w->defs[i]) dg_tabledef_unref(w->defs[i]);
  }
  dg_free(w->touched);
  dg_free(w->fresh);
  dg_free(w->defs);
  memset(w, 0, sizeof *w);
}

/* A persist failed: the tail goes back in front of what the manager added
 * since (state_lock held), so the next attempt writes it all. */
static void work_return(dg_manager_t *m, work_t *w) {
  if (w->npend) {
    mpend_t *p = dg_malloc((w->npend + m->npend + 1) * sizeof *p);
    memcpy(p, w->pend, w->npend * sizeof *p);
    if (m->npend) memcpy(p + w->npend, m->pend, m->npend * sizeof *p);
    dg_free(m->pend);
    m->pend = p;
    m->npend += w->npend;
    m->pend_cap = m->npend;
  }
  mhist_t *h = dg_malloc((w->nhist + m->nhist + 1) * sizeof *h);
  if (w->nhist) memcpy(h, w->hist, w->nhist * sizeof *h);
  for (size_t i = 0; i < m->nhist; i++) {
    h[w->nhist + i] = m->hist[i];
    h[w->nhist + i].req += (uint32_t)w->npend; /* they index pend, which grew in front */
  }
  dg_free(m->hist);
  m->hist = h;
  m->nhist += w->nhist;
  m->hist_cap = m->nhist + 1;
  for (uint32_t i = 0; i < w->ntables && i < m->ntables; i++) {
    mtable_t *t = m->tables[i];
    if (t == NULL) continue;
    dg_idset_t *ot = &w->touched[i], *of = &w->fresh[i];
    for (size_t k = 0; k < ot->cap; k++) {
      if (ot->state[k] != 1) continue;
      int64_t id = ot->keys[k];
      dg_idset_add(&t->touched, id);
      /* Whether DuckDB has the row is what the older touch said. */
      if (dg_idset_has(of, id)) dg_idset_add(&t->fresh, id);
      else dg_idset_remove(&t->fresh, id);
    }
  }
  atomic_store(&m->npend_atomic, m->npend);
  if (m->npend && atomic_load(&m->pend_since_us) == 0) atomic_store(&m->pend_since_us, dg_mono_us());
  /* Only the moved-out parts remain to free. */
  dg_free(w->pend);
  w->pend = NULL;
  w->npend = 0;
  dg_free(w->hist);
  w->hist = NULL;
  w->nhist = 0;
  work_free(w);
  audit_cols_forget(m);
}

static int applied_write(dg_manager_t *m, const work_t *w, char *err, size_t errcap) {
  /* Prepared once per manager: a prepare costs ~0.25 ms. */
  if (m->applied_st == NULL &&
      duckdb_prepare(m->conn, dg_sql_applied_write, &m->applied_st) == DuckDBError) {
    duckdb_destroy_prepare(&m->applied_st);
    m->applied_st = NULL;
    snprintf(err, errcap, "cannot prepare the update of dg.applied");
    return DG_EIO;
  }
  duckdb_bind_varchar(m->applied_st, 1, w->pend[w->npend - 1].stream_id);
  duckdb_bind_int64(m->applied_st, 2, w->next_row_id);
  duckdb_result res;
  int rc = 0;
  if (duckdb_execute_prepared(m->applied_st, &res) == DuckDBError || duckdb_rows_changed(&res) != 1) rc = DG_EIO;
  duckdb_destroy_result(&res);
  if (rc) snprintf(err, errcap, "cannot record the last applied request");
  return rc;
}

int dg__mgr_persist(dg_manager_t *m, dg__mgr_precommit_fn pre, void *pre_arg, char (**acked)[DG_REDIS_XID_BUFSZ],
                    size_t *nacked, char *err, size_t errcap) {
  *acked = NULL;
  *nacked = 0;
  memset(m->persist_ms, 0, sizeof m->persist_ms);
  double t0 = mono_ms();
  work_t w;
  memset(&w, 0, sizeof w);
  pthread_mutex_lock(&m->state_lock);
  if (m->npend == 0 && m->nddl == 0) {
    pthread_mutex_unlock(&m->state_lock);
    return 0;
  }
  int rc = 0;
  /* Staging tables are made outside the transaction, so a rollback cannot
   * take them away. */
  for (uint32_t i = 0; i < m->ntables && rc == 0; i++) {
    mtable_t *t = m->tables[i];
    if (t && t->touched.count) rc = ensure_staging(m, t, err, errcap);
  }
  if (rc == 0) rc = dg_db_exec(m->conn, "BEGIN TRANSACTION", err, errcap);
  if (rc != 0) {
    pthread_mutex_unlock(&m->state_lock);
    return DG_EIO;
  }
  /* The rows are copied from the engine, which the manager holds exactly
   * at the end of the tail (it hands over under this lock): what is written
   * is the state after the tail's last request, no more, no less. */
  rc = run_ddl(m, err, errcap);
  tabwork_t *tws = dg_calloc((size_t)m->ntables + 1, sizeof *tws);
  size_t ntw = 0;
  for (uint32_t i = 0; i < m->ntables && rc == 0; i++) {
    mtable_t *t = m->tables[i];
    if (t && t->touched.count) capture_table(t, &tws[ntw++]);
  }
  work_take(m, &w);
  pthread_mutex_unlock(&m->state_lock);
  double tl = mono_ms();
  for (size_t i = 0; i < ntw && rc == 0; i++) rc = write_table(m, &tws[i], w.hist, w.nhist, err, errcap);
  for (size_t i = 0; i < ntw; i++) tabwork_free(&tws[i]);
  dg_free(tws);
  double t1 = mono_ms();
  if (rc == 0) rc = write_holds(m, &w, err, errcap);
  if (rc == 0 && w.nhist) rc = write_history(m, &w, err, errcap);
  double t2 = mono_ms();
  if (rc == 0) rc = write_idem(m, &w, err, errcap);
  if (rc == 0 && w.npend) rc = applied_write(m, &w, err, errcap);
  double t3 = mono_ms();
  if (rc == 0 && pre && pre(m, pre_arg) != 0) {
    snprintf(err, errcap, "refused before commit");
    rc = DG_EUNAVAIL;
  }
  if (rc == 0 && dg_db_exec(m->conn, "COMMIT", err, errcap) != 0) rc = DG_EUNAVAIL;
  m->persist_ms[0] = t1 - t0;
  m->persist_ms[1] = t2 - t1;
  m->persist_ms[2] = t3 - t2;
  m->persist_ms[3] = mono_ms() - t3;
  m->persist_ms[4] = tl - t0;
  if (rc != 0) {
    dg_db_exec(m->conn, "ROLLBACK", NULL, 0); /* after a failed COMMIT it errors harmlessly */
    pthread_mutex_lock(&m->state_lock);
    work_return(m, &w);
    pthread_mutex_unlock(&m->state_lock);
    return rc;
  }
  m->naudit_saved = m->naudit_cols;
  pthread_mutex_lock(&m->state_lock);
  for (size_t i = 0; i < m->nddl; i++) dg_free(m->ddl[i]);
  m->nddl = 0;
  if (w.npend) snprintf(m->last_applied, sizeof m->last_applied, "%s", w.pend[w.npend - 1].stream_id);
  pthread_mutex_unlock(&m->state_lock);
  if (w.npend) {
    *acked = dg_malloc(w.npend * sizeof **acked);
    for (size_t i = 0; i < w.npend; i++) memcpy((*acked)[i], w.pend[i].stream_id, DG_REDIS_XID_BUFSZ);
    *nacked = w.npend;
  }
  work_texts_free(&w);
  pthread_mutex_lock(&m->state_lock);
  recycle(m, &w);
  pthread_mutex_unlock(&m->state_lock);
  work_free(&w);
  return 0;
}

void dg__mgr_pend_drop(dg_manager_t *m) {
  work_t w;
  work_take(m, &w);
  work_free(&w);
  audit_cols_forget(m);
  for (size_t i = 0; i < m->nddl; i++) dg_free(m->ddl[i]);
  m->nddl = 0;
}
