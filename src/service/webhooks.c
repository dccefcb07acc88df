/*
 * webhooks.c (service) -- the webhooks of /admin/webhooks as the routes see
 * them (service_admin.h): the only place those routes speak Redis. The keys
 * and what they hold are described in src/webhook/webhook.c (the delivery
 * thread); here a hook is registered, listed, deleted, and its delivery
 * records read. The stored texts pass through untouched: the handler
 * parses them and drops the secret before answering.
 */
#include "dg/service_admin.h"

#include <stdio.h>
#include <string.h>

#include "dg/common.h"
#include "dg/redis.h"
#include "dg/redis_pool.h"
#include "dg/webhook.h"

/* One Redis command: 0 with the reply in *rep (freed by the caller), or
 * DG_EUNAVAIL (the connection failed or Redis answered an error). */
static int run(dg_redis_t *c, int argc, const char **argv, redisReply **rep) {
  *rep = NULL;
  if (dg_redis_command(c, argc, argv, NULL, rep) != 0 || (*rep)->type == REDIS_REPLY_ERROR) {
    if (*rep) freeReplyObject(*rep);
    *rep = NULL;
    return DG_EUNAVAIL;
  }
  return 0;
}

int dg_service_webhook_create(dg_app_t *app, const char *id, const char *text) {
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  char hkey[256], ckey[256], cursor[DG_REDIS_XID_BUFSZ] = "0-0";
  dg_webhook_key(app, NULL, NULL, hkey, sizeof hkey);
  dg_webhook_key(app, id, "cursor", ckey, sizeof ckey);
  redisReply *rep;
  int rc;
  const char *hl[] = {"HLEN", hkey};
  if ((rc = run(c, 2, hl, &rep)) != 0) goto out;
  long long count = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
  freeReplyObject(rep);
  if (count >= DG_WEBHOOK_MAX) {
    rc = DG_ECONFLICT;
    goto out;
  }
  /* The newest update id: the hook gets what comes after it. A stream
   * not yet created answers an error: then from the start. */
  const char *xi[] = {"XINFO", "STREAM", app->streams.res};
  if (dg_redis_command(c, 3, xi, NULL, &rep) != 0) {
    rc = DG_EUNAVAIL;
    goto out;
  }
  if (rep->type == REDIS_REPLY_ARRAY)
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
      if (rep->element[i]->type == REDIS_REPLY_STRING && strcmp(rep->element[i]->str, "last-generated-id") == 0 &&
          rep->element[i + 1]->type == REDIS_REPLY_STRING && rep->element[i + 1]->len < sizeof cursor)
        snprintf(cursor, sizeof cursor, "%s", rep->element[i + 1]->str);
  freeReplyObject(rep);
  const char *sc[] = {"SET", ckey, cursor};
  if ((rc = run(c, 3, sc, &rep)) != 0) goto out;
  freeReplyObject(rep);
  const char *hs[] = {"HSET", hkey, id, text};
  if ((rc = run(c, 4, hs, &rep)) != 0) goto out;
  freeReplyObject(rep);
out:
  dg_redis_pool_put(app->redis, c);
  return rc;
}

int dg_service_webhooks_list(dg_app_t *app, dg_webhook_text_fn fn, void *arg) {
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  char hkey[256];
  dg_webhook_key(app, NULL, NULL, hkey, sizeof hkey);
  const char *a[] = {"HGETALL", hkey};
  redisReply *rep;
  int rc = run(c, 2, a, &rep);
  dg_redis_pool_put(app->redis, c);
  if (rc != 0) return rc;
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
    const redisReply *v = rep->element[i + 1];
    if (v->type == REDIS_REPLY_STRING) fn(arg, v->str, v->len);
  }
  freeReplyObject(rep);
  return 0;
}

int dg_service_webhook_delete(dg_app_t *app, const char *id) {
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  char hkey[256], ckey[256], dkey[256];
  dg_webhook_key(app, NULL, NULL, hkey, sizeof hkey);
  dg_webhook_key(app, id, "cursor", ckey, sizeof ckey);
  dg_webhook_key(app, id, "deliveries", dkey, sizeof dkey);
  const char *a[] = {"HDEL", hkey, id};
  redisReply *rep;
  int rc = run(c, 3, a, &rep);
  if (rc == 0) {
    int gone = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    if (!gone) {
      rc = DG_ENOTFOUND;
    } else {
      const char *d[] = {"DEL", ckey, dkey};
      if ((rc = run(c, 3, d, &rep)) == 0) freeReplyObject(rep);
    }
  }
  dg_redis_pool_put(app->redis, c);
  return rc;
}

int dg_service_webhook_deliveries(dg_app_t *app, const char *id, dg_webhook_text_fn fn, void *arg) {
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  char hkey[256], dkey[256], last[16];
  dg_webhook_key(app, NULL, NULL, hkey, sizeof hkey);
  dg_webhook_key(app, id, "deliveries", dkey, sizeof dkey);
  snprintf(last, sizeof last, "%d", DG_WEBHOOK_KEEP - 1);
  const char *e[] = {"HEXISTS", hkey, id};
  redisReply *rep;
  int rc = run(c, 3, e, &rep);
  if (rc != 0) goto out;
  int exists = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
  freeReplyObject(rep);
  if (!exists) {
    rc = DG_ENOTFOUND;
    goto out;
  }
  const char *l[] = {"LRANGE", dkey, "0", last};
  if ((rc = run(c, 4, l, &rep)) != 0) goto out;
  dg_redis_pool_put(app->redis, c);
  c = NULL;
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
    const redisReply *v = rep->element[i];
    if (v->type == REDIS_REPLY_STRING) fn(arg, v->str, v->len);
  }
  freeReplyObject(rep);
out:
  if (c) dg_redis_pool_put(app->redis, c);
  return rc;
}
