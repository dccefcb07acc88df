/*
 * webhooks.c -- /admin/webhooks (admin): register, list and delete outgoing
 * webhooks, and see their last delivery attempts. Delivery itself is
 * src/webhook/webhook.c; the Redis layout is described there.
 *
 *   POST   /admin/webhooks {"url","tables":[…]?,"secret"?}
 *          -> 201 {"id","url","tables","created","secret"}   (secret shown once)
 *   GET    /admin/webhooks                   -> {"webhooks":[…without secret…]}
 *   DELETE /admin/webhooks/{id}              -> 204
 *   GET    /admin/webhooks/{id}/deliveries   -> {"deliveries":[…newest first…]}
 *
 * A new hook starts after the newest update: its cursor is set to
 * response_duck's last-generated-id before the hook is visible, so the
 * delivery thread never sees a hook without a cursor.
 */
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/redis.h"
#include "dg/redis_pool.h"
#include "dg/webhook.h"

/* Bounds of a secret the client chooses: short ones are guessable. */
#define SECRET_MIN 16
#define SECRET_MAX 256
/* Tables one filter names at most. */
#define TABLES_MAX 64

/* One Redis command on a pool connection; NULL after answering 503. */
static redisReply *run_or_problem(dg_req_t *r, dg_redis_t *c, int argc, const char **argv) {
  redisReply *rep = NULL;
  if (dg_redis_command(c, argc, argv, NULL, &rep) != 0 || rep->type == REDIS_REPLY_ERROR) {
    if (rep) freeReplyObject(rep);
    dg_problem(r, 503, NULL, "redis is unavailable");
    return NULL;
  }
  return rep;
}

/* A path id: exactly DG_WEBHOOK_ID_LEN lowercase hex digits, else 404. */
static int id_ok_or_problem(dg_req_t *r, const char *id) {
  size_t n = 0;
  for (; id[n] && n <= DG_WEBHOOK_ID_LEN; n++)
    if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f'))) break;
  if (n == DG_WEBHOOK_ID_LEN && id[n] == '\0') return 0;
  dg_problem(r, 404, NULL, "no such webhook");
  return -1;
}

static void hex_random(char *out, size_t nbytes) {
  unsigned char raw[64];
  DG_ASSERT(nbytes <= sizeof raw);
  DG_ASSERT(RAND_bytes(raw, (int)nbytes) == 1);
  for (size_t i = 0; i < nbytes; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
  OPENSSL_cleanse(raw, sizeof raw);
}

static int hooks_post(dg_req_t *r) {
  json_t *b = r->body;
  const char *k;
  json_t *v;
  json_object_foreach(b, k, v) {
    if (strcmp(k, "url") != 0 && strcmp(k, "tables") != 0 && strcmp(k, "secret") != 0) {
      dg_problem(r, 400, NULL, "unknown member '%.64s': expected url, tables, secret", k);
      return 0;
    }
  }
  const char *url = json_string_value(json_object_get(b, "url"));
  if (url == NULL) {
    dg_problem(r, 400, NULL, "url must be a string");
    return 0;
  }
  char err[300] = "url has a NUL character";
  if (json_string_length(json_object_get(b, "url")) != strlen(url) || dg_webhook_url_check(url, err, sizeof err) != 0) {
    dg_problem(r, 400, NULL, "%s", err);
    return 0;
  }
  json_t *tables = json_object_get(b, "tables");
  if (tables != NULL && !json_is_null(tables)) {
    if (!json_is_array(tables) || json_array_size(tables) == 0 || json_array_size(tables) > TABLES_MAX) {
      dg_problem(r, 400, NULL, "tables must be a non-empty array of at most %d table names", TABLES_MAX);
      return 0;
    }
    size_t i;
    json_t *t;
    json_array_foreach(tables, i, t) {
      if (!json_is_string(t) || !dg_name_valid(json_string_value(t))) {
        dg_problem(r, 400, NULL, "tables[%zu] is not a valid table name", i);
        return 0;
      }
    }
  } else {
    tables = NULL;
  }
  json_t *sj = json_object_get(b, "secret");
  char secret[SECRET_MAX + 1];
  if (sj != NULL && !json_is_null(sj)) {
    const char *s = json_string_value(sj);
    size_t n = json_string_length(sj);
    int ok = s != NULL && n >= SECRET_MIN && n <= SECRET_MAX;
    for (size_t i = 0; ok && i < n; i++) ok = (unsigned char)s[i] > ' ' && (unsigned char)s[i] < 0x7f;
    if (!ok) {
      dg_problem(r, 400, NULL, "secret must be %d to %d printable ASCII characters without spaces", SECRET_MIN,
                 SECRET_MAX);
      return 0;
    }
    memcpy(secret, s, n + 1);
  } else {
    hex_random(secret, 32);
  }
  char id[DG_WEBHOOK_ID_LEN + 1];
  hex_random(id, DG_WEBHOOK_ID_LEN / 2);
  char created[64];
  {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(created, sizeof created, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  }
  json_t *hook = json_pack("{s:s,s:s,s:O,s:s}", "id", id, "url", url, "tables", tables ? tables : json_null(),
                           "created", created);
  json_t *stored = json_deep_copy(hook);
  json_object_set_new(stored, "secret", json_string(secret));
  char *txt = json_dumps(stored, JSON_COMPACT);
  json_decref(stored);
  DG_ASSERT(txt != NULL);

  dg_redis_t *c = dg_redis_pool_get(r->app->redis);
  char hkey[256], ckey[256], cursor[DG_REDIS_XID_BUFSZ] = "0-0";
  dg_webhook_key(r->app, NULL, NULL, hkey, sizeof hkey);
  dg_webhook_key(r->app, id, "cursor", ckey, sizeof ckey);
  redisReply *rep;
  const char *hl[] = {"HLEN", hkey};
  if ((rep = run_or_problem(r, c, 2, hl)) == NULL) goto out;
  long long count = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
  freeReplyObject(rep);
  if (count >= DG_WEBHOOK_MAX) {
    dg_problem(r, 409, NULL, "at most %d webhooks; delete one first", DG_WEBHOOK_MAX);
    goto out;
  }
  /* The newest update id: the hook gets what comes after it. A stream
   * not yet created answers an error: then from the start. */
  const char *xi[] = {"XINFO", "STREAM", r->app->streams.res};
  if (dg_redis_command(c, 3, xi, NULL, &rep) != 0) {
    dg_problem(r, 503, NULL, "redis is unavailable");
    goto out;
  }
  if (rep->type == REDIS_REPLY_ARRAY)
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
      if (rep->element[i]->type == REDIS_REPLY_STRING && strcmp(rep->element[i]->str, "last-generated-id") == 0 &&
          rep->element[i + 1]->type == REDIS_REPLY_STRING && rep->element[i + 1]->len < sizeof cursor)
        snprintf(cursor, sizeof cursor, "%s", rep->element[i + 1]->str);
  freeReplyObject(rep);
  const char *sc[] = {"SET", ckey, cursor};
  if ((rep = run_or_problem(r, c, 3, sc)) == NULL) goto out;
  freeReplyObject(rep);
  const char *hs[] = {"HSET", hkey, id, txt};
  if ((rep = run_or_problem(r, c, 4, hs)) == NULL) goto out;
  freeReplyObject(rep);
  dg_audit(r, "webhook.create", "webhook %s to %s", id, url);
  json_object_set_new(hook, "secret", json_string(secret));
  dg_reply_json(r, 201, hook);
  hook = NULL;
out:
  dg_redis_pool_put(r->app->redis, c);
  json_decref(hook);
  OPENSSL_cleanse(txt, strlen(txt));
  free(txt);
  OPENSSL_cleanse(secret, sizeof secret);
  return 0;
}

static const char *member(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

/* Oldest first; ids break ties. */
static int by_created(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  int c = strcmp(member(x, "created"), member(y, "created"));
  return c ? c : strcmp(member(x, "id"), member(y, "id"));
}

static int hooks_list(dg_req_t *r) {
  dg_redis_t *c = dg_redis_pool_get(r->app->redis);
  char hkey[256];
  dg_webhook_key(r->app, NULL, NULL, hkey, sizeof hkey);
  const char *a[] = {"HGETALL", hkey};
  redisReply *rep = run_or_problem(r, c, 2, a);
  dg_redis_pool_put(r->app->redis, c);
  if (rep == NULL) return 0;
  size_t n = 0;
  json_t **items = dg_calloc(rep->type == REDIS_REPLY_ARRAY ? rep->elements / 2 + 1 : 1, sizeof *items);
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
    const redisReply *v = rep->element[i + 1];
    json_t *h = v->type == REDIS_REPLY_STRING ? json_loadb(v->str, v->len, 0, NULL) : NULL;
    if (!json_is_object(h)) {
      json_decref(h);
      continue;
    }
    json_object_del(h, "secret");
    items[n++] = h;
  }
  freeReplyObject(rep);
  qsort(items, n, sizeof *items, by_created);
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(arr, items[i]);
  dg_free(items);
  dg_reply_json(r, 200, json_pack("{s:o}", "webhooks", arr));
  return 0;
}

static int hooks_delete(dg_req_t *r) {
  const char *id = r->params[0];
  if (id_ok_or_problem(r, id) != 0) return 0;
  dg_redis_t *c = dg_redis_pool_get(r->app->redis);
  char hkey[256], ckey[256], dkey[256];
  dg_webhook_key(r->app, NULL, NULL, hkey, sizeof hkey);
  dg_webhook_key(r->app, id, "cursor", ckey, sizeof ckey);
  dg_webhook_key(r->app, id, "deliveries", dkey, sizeof dkey);
  const char *a[] = {"HDEL", hkey, id};
  redisReply *rep = run_or_problem(r, c, 3, a);
  if (rep != NULL) {
    int gone = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    if (!gone) {
      dg_problem(r, 404, NULL, "no such webhook");
    } else {
      const char *d[] = {"DEL", ckey, dkey};
      if ((rep = run_or_problem(r, c, 3, d)) != NULL) {
        freeReplyObject(rep);
        dg_audit(r, "webhook.delete", "webhook %s", id);
        dg_reply_empty(r, 204);
      }
    }
  }
  dg_redis_pool_put(r->app->redis, c);
  return 0;
}

static int hooks_deliveries(dg_req_t *r) {
  const char *id = r->params[0];
  if (id_ok_or_problem(r, id) != 0) return 0;
  dg_redis_t *c = dg_redis_pool_get(r->app->redis);
  char hkey[256], dkey[256], last[16];
  dg_webhook_key(r->app, NULL, NULL, hkey, sizeof hkey);
  dg_webhook_key(r->app, id, "deliveries", dkey, sizeof dkey);
  snprintf(last, sizeof last, "%d", DG_WEBHOOK_KEEP - 1);
  const char *e[] = {"HEXISTS", hkey, id};
  redisReply *rep = run_or_problem(r, c, 3, e);
  if (rep == NULL) goto out;
  int exists = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
  freeReplyObject(rep);
  if (!exists) {
    dg_problem(r, 404, NULL, "no such webhook");
    goto out;
  }
  const char *l[] = {"LRANGE", dkey, "0", last};
  if ((rep = run_or_problem(r, c, 4, l)) == NULL) goto out;
  json_t *arr = json_array();
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
    const redisReply *v = rep->element[i];
    json_t *d = v->type == REDIS_REPLY_STRING ? json_loadb(v->str, v->len, 0, NULL) : NULL;
    if (json_is_object(d)) json_array_append_new(arr, d);
    else json_decref(d);
  }
  freeReplyObject(rep);
  dg_reply_json(r, 200, json_pack("{s:s,s:o}", "id", id, "deliveries", arr));
out:
  dg_redis_pool_put(r->app->redis, c);
  return 0;
}

const dg_route_t dg_routes_webhooks[] = {
    {"POST", "/admin/webhooks", DG_ROLE_ADMIN, hooks_post, 1},
    {"GET", "/admin/webhooks", DG_ROLE_ADMIN, hooks_list, 0},
    {"DELETE", "/admin/webhooks/:id", DG_ROLE_ADMIN, hooks_delete, 0},
    {"GET", "/admin/webhooks/:id/deliveries", DG_ROLE_ADMIN, hooks_deliveries, 0},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0},
};
