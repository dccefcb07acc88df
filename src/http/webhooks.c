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
#include "dg/service_admin.h"
#include "dg/webhook.h"

/* Bounds of a secret the client chooses: short ones are guessable. */
#define SECRET_MIN 16
#define SECRET_MAX 256
/* Tables one filter names at most. */
#define TABLES_MAX 64

/* Answers a failed webhook call: 404 for DG_ENOTFOUND, else 503. */
static void fail_problem(dg_req_t *r, int rc) {
  if (rc == DG_ENOTFOUND) dg_problem(r, 404, NULL, "no such webhook");
  else dg_problem(r, 503, NULL, "redis is unavailable");
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

  int rc = dg_service_webhook_create(r->app, id, txt);
  if (rc == DG_ECONFLICT) {
    dg_problem(r, 409, NULL, "at most %d webhooks; delete one first", DG_WEBHOOK_MAX);
    goto out;
  }
  if (rc != 0) {
    fail_problem(r, rc);
    goto out;
  }
  dg_audit(r, "webhook.create", "webhook %s to %s", id, url);
  json_object_set_new(hook, "secret", json_string(secret));
  dg_reply_json(r, 201, hook);
  hook = NULL;
out:
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

/* The hooks as listed: parsed, without their secrets. */
typedef struct hook_list_s {
  json_t **items;
  size_t n, cap;
} hook_list_t;

static void hook_add(void *arg, const char *text, size_t len) {
  hook_list_t *l = arg;
  json_t *h = json_loadb(text, len, 0, NULL);
  if (!json_is_object(h)) {
    json_decref(h);
    return;
  }
  json_object_del(h, "secret");
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    l->items = dg_realloc(l->items, l->cap * sizeof *l->items);
  }
  l->items[l->n++] = h;
}

static int hooks_list(dg_req_t *r) {
  hook_list_t l = {0};
  int rc = dg_service_webhooks_list(r->app, hook_add, &l);
  if (rc != 0) {
    fail_problem(r, rc);
    return 0;
  }
  if (l.n) qsort(l.items, l.n, sizeof *l.items, by_created);
  json_t *arr = json_array();
  for (size_t i = 0; i < l.n; i++) json_array_append_new(arr, l.items[i]);
  dg_free(l.items);
  dg_reply_json(r, 200, json_pack("{s:o}", "webhooks", arr));
  return 0;
}

static int hooks_delete(dg_req_t *r) {
  const char *id = r->params[0];
  if (id_ok_or_problem(r, id) != 0) return 0;
  int rc = dg_service_webhook_delete(r->app, id);
  if (rc != 0) {
    fail_problem(r, rc);
    return 0;
  }
  dg_audit(r, "webhook.delete", "webhook %s", id);
  dg_reply_empty(r, 204);
  return 0;
}

static void delivery_add(void *arg, const char *text, size_t len) {
  json_t *d = json_loadb(text, len, 0, NULL);
  if (json_is_object(d)) json_array_append_new(arg, d);
  else json_decref(d);
}

static int hooks_deliveries(dg_req_t *r) {
  const char *id = r->params[0];
  if (id_ok_or_problem(r, id) != 0) return 0;
  json_t *arr = json_array();
  int rc = dg_service_webhook_deliveries(r->app, id, delivery_add, arr);
  if (rc != 0) {
    json_decref(arr);
    fail_problem(r, rc);
    return 0;
  }
  dg_reply_json(r, 200, json_pack("{s:s,s:o}", "id", id, "deliveries", arr));
  return 0;
}

const dg_route_t dg_routes_webhooks[] = {
    {"POST", "/admin/webhooks", DG_ROLE_ADMIN, hooks_post, 1, NULL},
    {"GET", "/admin/webhooks", DG_ROLE_ADMIN, hooks_list, 0, NULL},
    {"DELETE", "/admin/webhooks/:id", DG_ROLE_ADMIN, hooks_delete, 0, NULL},
    {"GET", "/admin/webhooks/:id/deliveries", DG_ROLE_ADMIN, hooks_deliveries, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
