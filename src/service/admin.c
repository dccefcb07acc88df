/*
 * admin.c (service) -- the admin audit log, the key list and token
 * revocation as keys.c sees them (service_admin.h): the only place the
 * admin routes speak DuckDB. Keys live in dg.api_keys and are written by
 * this API process directly: they are not grid data, and a secret must
 * never travel through request_duck.
 */
#include "dg/dgsql.h"
#include "dg/service_admin.h"

#include <duckdb.h>
#include <string.h>

#include "dg/common.h"
#include "dg/db.h"
#include "dg/log.h"

void dg_service_audit_write(dg_app_t *app, const char *actor, const char *action, const char *detail) {
  duckdb_connection c = dg_db_conn(app->db);
  duckdb_prepared_statement st;
  if (c == NULL) return;
  if (duckdb_prepare(c, dg_sql_admin_audit_insert, &st) == DuckDBSuccess) {
    duckdb_bind_varchar(st, 1, actor);
    duckdb_bind_varchar(st, 2, action);
    duckdb_bind_varchar(st, 3, detail);
    duckdb_result res;
    if (duckdb_execute_prepared(st, &res) == DuckDBError)
      dg_log_error("audit log write failed: %s", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
  }
  duckdb_destroy_prepare(&st);
}

int dg_service_audit_list(dg_app_t *app, int64_t limit, dg_audit_entry_fn fn, void *arg) {
  duckdb_connection c = dg_db_conn(app->db);
  duckdb_prepared_statement st;
  duckdb_result res;
  if (c == NULL || duckdb_prepare(c, dg_sql_admin_audit_list, &st) == DuckDBError) {
    if (c) duckdb_destroy_prepare(&st);
    return DG_EUNAVAIL;
  }
  duckdb_bind_int64(st, 1, limit);
  if (duckdb_execute_prepared(st, &res) == DuckDBError) {
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&st);
    return DG_EUNAVAIL;
  }
  for (idx_t i = 0; i < duckdb_row_count(&res); i++) {
    char *v[4];
    for (int k = 0; k < 4; k++) v[k] = duckdb_value_varchar(&res, (idx_t)k + 1, i);
    dg_audit_entry_t e = {duckdb_value_int64(&res, 0, i), v[0] ? v[0] : "", v[1] ? v[1] : "", v[2] ? v[2] : "",
                          v[3] ? v[3] : ""};
    fn(arg, &e);
    for (int k = 0; k < 4; k++) duckdb_free(v[k]);
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_prepare(&st);
  return 0;
}

int dg_service_keys_list(dg_app_t *app, dg_key_info_fn fn, void *arg) {
  duckdb_connection c = dg_db_conn(app->db);
  duckdb_result res;
  if (c == NULL ||
      duckdb_query(c,
                   dg_sql_key_list,
                   &res) == DuckDBError) {
    if (c) duckdb_destroy_result(&res);
    return DG_EUNAVAIL;
  }
  for (idx_t i = 0; i < duckdb_row_count(&res); i++) {
    char *v[7];
    for (int k = 0; k < 7; k++)
      v[k] = k >= 4 && duckdb_value_is_null(&res, (idx_t)k + 1, i) ? NULL : duckdb_value_varchar(&res, (idx_t)k + 1, i);
    dg_key_info_t info = {duckdb_value_int64(&res, 0, i), v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    fn(arg, &info);
    for (int k = 0; k < 7; k++) duckdb_free(v[k]);
  }
  duckdb_destroy_result(&res);
  return 0;
}

int dg_service_token_revoke(dg_app_t *app, const char *jti, const char *by) {
  duckdb_connection c = dg_db_conn(app->db);
  duckdb_prepared_statement st;
  int ok = 0;
  if (c && duckdb_prepare(c, dg_sql_token_revoke,
                          &st) == DuckDBSuccess) {
    duckdb_bind_varchar(st, 1, jti);
    duckdb_bind_varchar(st, 2, by);
    duckdb_result res;
    ok = duckdb_execute_prepared(st, &res) == DuckDBSuccess;
    duckdb_destroy_result(&res);
  }
  if (c) duckdb_destroy_prepare(&st);
  return ok ? 0 : DG_EUNAVAIL;
}
