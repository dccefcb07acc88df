/*
 * keys.c -- /admin/keys: create (the secret is shown once), list (never a
 * secret or a hash: a short prefix identifies a key), delete (effective on
 * the next request here, within a second in other processes).
 *
 * Keys live in dg.api_keys and are written by this API process directly:
 * they are not grid data, and a secret must never travel through
 * request_duck.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dg/alive.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/log.h"

static int keys_create(dg_req_t *r) {
  const char *name = json_string_value(json_object_get(r->body, "name"));
  const char *role_s = json_string_value(json_object_get(r->body, "role"));
  dg_role_t role;
  if (name == NULL || name[0] == '\0' || strlen(name) > 63) {
    dg_problem(r, 400, NULL, "name must be a string of 1..63 characters");
    return 0;
  }
  for (const char *p = name; *p; p++) {
    if ((unsigned char)*p < 0x20 || *p == 0x7f) {
      dg_problem(r, 400, NULL, "name must not contain control characters");
      return 0;
    }
  }
  if (dg_role_parse(role_s, &role) != 0) {
    dg_problem(r, 400, NULL, "role must be read, write or admin");
    return 0;
  }
  char key[DG_KEY_LEN + 1];
  int64_t id = 0;
  if (dg_auth_key_create(r->app->auth, name, role, key, &id) != 0) {
    dg_problem(r, 503, NULL, "the key store is unavailable");
    return 0;
  }
  json_t *body = json_pack("{s:I,s:s,s:s,s:s,s:s%}", "id", (json_int_t)id, "name", name, "role",
                           dg_role_name(role), "prefix", "", "key", key, (size_t)DG_KEY_LEN);
  char prefix[12];
  snprintf(prefix, sizeof prefix, "%.8s", key);
  json_object_set_new(body, "prefix", json_string(prefix));
  memset(key, 0, sizeof key);
  dg_reply_json(r, 201, body);
  return 0;
}

static int keys_list(dg_req_t *r) {
  duckdb_connection c = dg_db_conn(r->app->db);
  duckdb_result res;
  if (c == NULL ||
      duckdb_query(c,
                   "SELECT id, name, role, prefix, strftime(created_at, '%Y-%m-%dT%H:%M:%S.%gZ'), "
                   "strftime(last_used_at, '%Y-%m-%dT%H:%M:%S.%gZ') FROM dg.api_keys ORDER BY id",
                   &res) == DuckDBError) {
    if (c) duckdb_destroy_result(&res);
    dg_problem(r, 503, NULL, "the key store is unavailable");
    return 0;
  }
  json_t *list = json_array();
  for (idx_t i = 0; i < duckdb_row_count(&res); i++) {
    char *name = duckdb_value_varchar(&res, 1, i);
    char *role = duckdb_value_varchar(&res, 2, i);
    char *prefix = duckdb_value_varchar(&res, 3, i);
    char *created = duckdb_value_varchar(&res, 4, i);
    char *used = duckdb_value_is_null(&res, 5, i) ? NULL : duckdb_value_varchar(&res, 5, i);
    json_array_append_new(list, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s?}", "id",
                                          (json_int_t)duckdb_value_int64(&res, 0, i), "name", name,
                                          "role", role, "prefix", prefix, "created_at", created,
                                          "last_used_at", used));
    duckdb_free(name);
    duckdb_free(role);
    duckdb_free(prefix);
    duckdb_free(created);
    duckdb_free(used);
  }
  duckdb_destroy_result(&res);
  dg_reply_json(r, 200, json_pack("{s:o}", "keys", list));
  return 0;
}

static int keys_delete(dg_req_t *r) {
  const char *s = r->params[0];
  char *end = NULL;
  long long id = strtoll(s, &end, 10);
  if (*s == '\0' || *end != '\0' || id <= 0) {
    dg_problem(r, 400, NULL, "key id must be a positive integer");
    return 0;
  }
  int rc = dg_auth_key_delete(r->app->auth, id);
  if (rc == 0) dg_alive_invalidate(r->app->alive); /* open streams see it at once */
  if (rc == 0) dg_reply_empty(r, 204);
  else if (rc == DG_ENOTFOUND) dg_problem(r, 404, NULL, "key %lld does not exist", id);
  else if (rc == DG_ECONFLICT) dg_problem(r, 409, NULL, "key %lld is the last admin key; create another admin key first", id);
  else dg_problem(r, 503, NULL, "the key store is unavailable");
  return 0;
}

/* POST /admin/tokens/revoke {"jti"}: the token with that id is refused
 * from now on, here at once and in other processes within a second; its
 * open streams end. Idempotent: revoking twice is 204 both times. */
static int tokens_revoke(dg_req_t *r) {
  const char *jti = json_string_value(json_object_get(r->body, "jti"));
  if (jti == NULL || *jti == '\0' || strlen(jti) > 71) {
    dg_problem(r, 400, NULL, "jti must be a string of 1..71 bytes");
    return 0;
  }
  duckdb_connection c = dg_db_conn(r->app->db);
  duckdb_prepared_statement st;
  int ok = 0;
  if (c && duckdb_prepare(c, "INSERT INTO dg.revoked_tokens(jti, revoked_by) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                          &st) == DuckDBSuccess) {
    duckdb_bind_varchar(st, 1, jti);
    duckdb_bind_varchar(st, 2, r->who.user);
    duckdb_result res;
    ok = duckdb_execute_prepared(st, &res) == DuckDBSuccess;
    duckdb_destroy_result(&res);
  }
  if (c) duckdb_destroy_prepare(&st);
  if (!ok) {
    dg_problem(r, 503, NULL, "the key store is unavailable");
    return 0;
  }
  dg_alive_invalidate(r->app->alive);
  dg_log_info("token %.71s revoked by %s", jti, r->who.user);
  dg_reply_empty(r, 204);
  return 0;
}

const dg_route_t dg_routes_keys[] = {
    {"POST", "/admin/tokens/revoke", DG_ROLE_ADMIN, tokens_revoke, 1},
    {"POST", "/admin/keys", DG_ROLE_ADMIN, keys_create, 1},
    {"GET", "/admin/keys", DG_ROLE_ADMIN, keys_list, 0},
    {"DELETE", "/admin/keys/:id", DG_ROLE_ADMIN, keys_delete, 0},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0},
};
