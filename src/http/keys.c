/*
 * keys.c -- /admin/keys: create (the secret is shown once), list (never a
 * secret or a hash: a short prefix identifies a key), delete (effective on
 * the next request here, within a second in other processes).
 *
 * Keys live in dg.api_keys and are written by this API process directly:
 * they are not grid data, and a secret must never travel through
 * request_duck. Creating and deleting them is the key store's (auth.h);
 * the list, the admin audit log and token revocation go through the admin
 * service (service_admin.h). This file validates, answers and audits.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dg/alive.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/isotime.h"
#include "dg/log.h"
#include "dg/service_admin.h"

/* ---- the admin audit log (dg.admin_audit, GET /admin/audit) ------------- */

void dg_audit(dg_req_t *r, const char *action, const char *fmt, ...) {
  char detail[512], actor[160], id[80];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  dg_principal_id(&r->who, id, sizeof id);
  snprintf(actor, sizeof actor, "%s (%s)", id, r->who.user);
  dg_log_info("audit: %s %s: %s", actor, action, detail);
  dg_service_audit_write(r->app, actor, action, detail);
}

static void audit_listed(void *arg, const dg_audit_entry_t *e) {
  json_array_append_new(arg, json_pack("{s:I,s:s,s:s,s:s,s:s}", "id", (json_int_t)e->id, "at", e->at, "actor",
                                       e->actor, "action", e->action, "detail", e->detail));
}

/* GET /admin/audit?limit=100: the newest entries first. */
static int audit_list(dg_req_t *r) {
  const char *ls = dg_query(r, "limit");
  char *end = NULL;
  long long limit = ls ? strtoll(ls, &end, 10) : 100;
  if (ls && (*ls == '\0' || *end != '\0' || limit < 1 || limit > 1000)) {
    dg_problem(r, 400, NULL, "limit must be an integer from 1 to 1000");
    return 0;
  }
  json_t *list = json_array();
  if (dg_service_audit_list(r->app, limit, audit_listed, list) != 0) {
    json_decref(list);
    dg_problem(r, 503, NULL, "the audit log is unavailable");
    return 0;
  }
  dg_reply_json(r, 200, json_pack("{s:o}", "entries", list));
  return 0;
}

/* RFC 3339 date-time ("2026-12-31T23:59:59Z", "...59.5+01:00") to seconds
 * since the epoch (a fraction is dropped). 0, or -1 when malformed. */
static int parse_rfc3339(const char *s, int64_t *out) {
  int64_t ms;
  if (dg_parse_rfc3339_ms(s, &ms) != 0) return -1;
  *out = ms / 1000; /* from 1970 on: the fraction dropped */
  return 0;
}

/* "tables": an array of 1..DG_SCOPE_TABLES valid table names -> ",a,b,".
 * The tables need not exist yet: a scope may be set up before the table.
 * 0, or a problem answered. */
static int scope_or_problem(dg_req_t *r, json_t *tables, char scope[DG_SCOPE_MAX]) {
  scope[0] = '\0';
  if (tables == NULL || json_is_null(tables)) return 0;
  if (!json_is_array(tables) || json_array_size(tables) == 0 || json_array_size(tables) > DG_SCOPE_TABLES) {
    dg_problem(r, 400, NULL, "tables must be an array of 1..%d table names (omit it for every table)",
               DG_SCOPE_TABLES);
    return -1;
  }
  size_t o = 0;
  scope[o++] = ',';
  for (size_t i = 0; i < json_array_size(tables); i++) {
    const char *t = json_string_value(json_array_get(tables, i));
    if (t == NULL || !dg_name_valid(t)) {
      dg_problem(r, 400, NULL, "tables[%zu] is not a valid table name", i);
      return -1;
    }
    size_t n = strlen(t);
    memcpy(scope + o, t, n); /* 16 names of at most 63 bytes fit */
    o += n;
    scope[o++] = ',';
  }
  scope[o] = '\0';
  return 0;
}

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
  char scope[DG_SCOPE_MAX];
  if (scope_or_problem(r, json_object_get(r->body, "tables"), scope) != 0) return 0;
  if (scope[0] && role == DG_ROLE_ADMIN) {
    /* An admin creates and drops tables and keys: no scope would hold. */
    dg_problem(r, 400, NULL, "an admin key cannot be limited to some tables");
    return 0;
  }
  json_t *exp_j = json_object_get(r->body, "expires_at");
  int64_t expires_s = 0;
  if (exp_j && !json_is_null(exp_j) && parse_rfc3339(json_string_value(exp_j), &expires_s) != 0) {
    dg_problem(r, 400, NULL, "expires_at must be an RFC 3339 date-time such as 2026-12-31T23:59:59Z");
    return 0;
  }
  if (expires_s > 0 && expires_s <= (int64_t)time(NULL)) {
    dg_problem(r, 400, NULL, "expires_at is in the past");
    return 0;
  }
  char key[DG_KEY_LEN + 1];
  int64_t id = 0;
  if (dg_auth_key_create(r->app->auth, name, role, key, &id) != 0) {
    dg_problem(r, 503, NULL, "the key store is unavailable");
    return 0;
  }
  if (dg_auth_key_scope(r->app->auth, id, scope, expires_s) != 0) {
    /* Never hand out a key wider or longer-lived than asked for. */
    dg_auth_key_delete(r->app->auth, id);
    memset(key, 0, sizeof key);
    dg_problem(r, 503, NULL, "the key store is unavailable");
    return 0;
  }
  dg_audit(r, "key.create", "key %lld '%s' role %s%s%s%s%s", (long long)id, name, dg_role_name(role),
           scope[0] ? " tables " : "", scope, expires_s ? " expires_at " : "",
           expires_s ? json_string_value(exp_j) : "");
  json_t *body = json_pack("{s:I,s:s,s:s,s:s,s:s%}", "id", (json_int_t)id, "name", name, "role",
                           dg_role_name(role), "prefix", "", "key", key, (size_t)DG_KEY_LEN);
  char prefix[12];
  snprintf(prefix, sizeof prefix, "%.8s", key);
  json_object_set_new(body, "prefix", json_string(prefix));
  json_object_set(body, "tables", scope[0] ? json_object_get(r->body, "tables") : json_null());
  json_object_set(body, "expires_at", expires_s ? exp_j : json_null());
  memset(key, 0, sizeof key);
  dg_reply_json(r, 201, body);
  return 0;
}

static void key_listed(void *arg, const dg_key_info_t *k) {
  json_t *tl = json_null();
  if (k->tables) { /* ",a,b," -> ["a","b"] */
    tl = json_array();
    for (const char *p = k->tables + 1, *e; (e = strchr(p, ',')) != NULL; p = e + 1)
      json_array_append_new(tl, json_stringn(p, (size_t)(e - p)));
  }
  json_array_append_new(arg, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s?,s:o,s:s?}", "id", (json_int_t)k->id, "name",
                                       k->name, "role", k->role, "prefix", k->prefix, "created_at", k->created_at,
                                       "last_used_at", k->last_used_at, "tables", tl, "expires_at", k->expires_at));
}

static int keys_list(dg_req_t *r) {
  json_t *list = json_array();
  if (dg_service_keys_list(r->app, key_listed, list) != 0) {
    json_decref(list);
    dg_problem(r, 503, NULL, "the key store is unavailable");
    return 0;
  }
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
  if (rc == 0) dg_audit(r, "key.delete", "key %lld", id);
  else if (rc == DG_ECONFLICT) dg_audit(r, "key.delete.refused", "key %lld is the last admin key", id);
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
  int ok = dg_service_token_revoke(r->app, jti, r->who.user) == 0;
  if (!ok) {
    dg_problem(r, 503, NULL, "the key store is unavailable");
    return 0;
  }
  dg_alive_invalidate(r->app->alive);
  dg_audit(r, "token.revoke", "jti %.71s", jti);
  dg_reply_empty(r, 204);
  return 0;
}

const dg_route_t dg_routes_keys[] = {
    {"POST", "/admin/tokens/revoke", DG_ROLE_ADMIN, tokens_revoke, 1, NULL},
    {"POST", "/admin/keys", DG_ROLE_ADMIN, keys_create, 1, NULL},
    {"GET", "/admin/keys", DG_ROLE_ADMIN, keys_list, 0, NULL},
    {"DELETE", "/admin/keys/:id", DG_ROLE_ADMIN, keys_delete, 0, NULL},
    {"GET", "/admin/audit", DG_ROLE_ADMIN, audit_list, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
