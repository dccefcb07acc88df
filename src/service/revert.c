/*
 * revert.c (service) -- what POST /updates/{id}/revert and POST /views need
 * from DuckDB (service.h): an update's records from the audit log, the rows
 * it deleted, and the check of a view's SQL. The handler (http/write.c)
 * turns the records into the revert request; nothing here knows JSON.
 *
 * The records are copied out of DuckDB's result once, so the handler's
 * passes over them (grouping a cell's records, its net change) read plain
 * strings instead of converting a value on every look.
 */
#include "dg/service.h"

#include <duckdb.h>
#include <string.h>

#include "dg/common.h"
#include "dg/db.h"
#include "dg/dgsql.h"
#include "dg/log.h"
#include "dg/views.h"

int dg_service_view_check(dg_app_t *app, const char *sql, char *err, size_t errcap) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  return dg_view_sql_check(c, sql, err, errcap);
}

/* Column col of row i as an owned string; NULL for NULL. */
static char *text_at(duckdb_result *res, idx_t col, idx_t i) {
  if (duckdb_value_is_null(res, col, i)) return NULL;
  char *v = duckdb_value_varchar(res, col, i);
  char *s = v ? dg_strdup(v) : NULL;
  duckdb_free(v);
  return s;
}

/* Prepares sql, binds update x as ($1 ms, $2 seq) and runs it into *res.
 * what names the read in the log. 0, DG_EUNAVAIL or DG_EIO. */
static int run_for_update(dg_app_t *app, const char *sql, dg_redis_xid_t x, const char *what, duckdb_result *res) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  duckdb_prepared_statement st = NULL;
  if (duckdb_prepare(c, sql, &st) == DuckDBError) {
    dg_log_error("revert: preparing the %s read failed: %s", what, duckdb_prepare_error(st));
    duckdb_destroy_prepare(&st);
    return DG_EIO;
  }
  duckdb_bind_int64(st, 1, (int64_t)x.ms);
  duckdb_bind_int64(st, 2, (int64_t)x.seq);
  int rc = 0;
  if (duckdb_execute_prepared(st, res) == DuckDBError) {
    dg_log_error("revert: reading the %s failed: %s", what, duckdb_result_error(res));
    duckdb_destroy_result(res);
    rc = DG_EIO;
  }
  duckdb_destroy_prepare(&st);
  return rc;
}

int dg_service_revert_read(dg_app_t *app, dg_redis_xid_t x, size_t max, dg_revert_rec_t **out, size_t *n) {
  duckdb_result res;
  int rc = run_for_update(app, dg_sql_revert_cells, x, "audit log", &res);
  if (rc != 0) return rc;
  idx_t rows = duckdb_row_count(&res);
  if (rows > max) {
    duckdb_destroy_result(&res);
    *n = (size_t)rows;
    return DG_ETOOBIG;
  }
  dg_revert_rec_t *v = rows ? dg_calloc(rows, sizeof *v) : NULL;
  for (idx_t i = 0; i < rows; i++) {
    v[i].table = text_at(&res, 0, i);
    v[i].row = duckdb_value_int64(&res, 1, i);
    v[i].column = text_at(&res, 2, i);
    v[i].old_text = text_at(&res, 3, i);
    v[i].new_text = text_at(&res, 4, i);
    v[i].type = text_at(&res, 6, i);
    v[i].has_new_num = !duckdb_value_is_null(&res, 7, i);
    v[i].new_num = v[i].has_new_num ? duckdb_value_int64(&res, 7, i) : 0;
  }
  duckdb_destroy_result(&res);
  *out = v;
  *n = (size_t)rows;
  return 0;
}

void dg_service_revert_free(dg_revert_rec_t *recs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    dg_free(recs[i].table);
    dg_free(recs[i].column);
    dg_free(recs[i].old_text);
    dg_free(recs[i].new_text);
    dg_free(recs[i].type);
  }
  dg_free(recs);
}

int dg_service_revert_images(dg_app_t *app, dg_redis_xid_t x, dg_revert_image_t **out, size_t *n) {
  duckdb_result res;
  int rc = run_for_update(app, dg_sql_revert_images, x, "row images", &res);
  if (rc != 0) return rc;
  idx_t rows = duckdb_row_count(&res);
  dg_revert_image_t *v = rows ? dg_calloc(rows, sizeof *v) : NULL;
  for (idx_t i = 0; i < rows; i++) {
    v[i].table = text_at(&res, 0, i);
    v[i].row = duckdb_value_int64(&res, 1, i);
    v[i].has_parent = !duckdb_value_is_null(&res, 2, i);
    v[i].parent = v[i].has_parent ? duckdb_value_int64(&res, 2, i) : 0;
    v[i].cells = text_at(&res, 3, i);
  }
  duckdb_destroy_result(&res);
  *out = v;
  *n = (size_t)rows;
  return 0;
}

void dg_service_revert_images_free(dg_revert_image_t *imgs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    dg_free(imgs[i].table);
    dg_free(imgs[i].cells);
  }
  dg_free(imgs);
}
