/*
 * service_admin.h -- what the admin routes of keys.c (/admin/keys,
 * /admin/audit, /admin/tokens/revoke) need from DuckDB, without speaking it
 * themselves (issue 13's service seam; service.h is the write side,
 * service_read.h and service_updates.h the read side).
 *
 *   dg_service_audit_write    one entry of the admin audit log (dg.admin_audit)
 *   dg_service_audit_list     its newest entries
 *   dg_service_keys_list      the API keys, without secrets or hashes
 *   dg_service_token_revoke   a JWT id onto dg.revoked_tokens
 *   dg_service_webhook_*      the webhooks of /admin/webhooks (webhooks.c),
 *                             stored in Redis (layout: src/webhook/webhook.c)
 *
 * Creating and deleting keys is the key store's (auth.h). Implemented in
 * src/service/admin.c; every call runs on the calling thread's DuckDB
 * connection and fails with DG_EUNAVAIL when there is none or DuckDB
 * refuses. The webhook calls are src/service/webhooks.c; they run on a
 * Redis pool connection and fail with DG_EUNAVAIL when Redis fails or
 * answers an error.
 */
#ifndef DG_SERVICE_ADMIN_H
#define DG_SERVICE_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "dg/app.h"

/** Appends (actor, action, detail) to the admin audit log; a failure is
 *  logged, never returned (the action it records has happened). */
void dg_service_audit_write(dg_app_t *app, const char *actor, const char *action, const char *detail);

/** An entry of the admin audit log; strings borrowed for the callback,
 *  "" where DuckDB gives none. */
typedef struct dg_audit_entry_s {
  int64_t id;
  const char *at;      /* ISO 8601 UTC with milliseconds */
  const char *actor;
  const char *action;
  const char *detail;
} dg_audit_entry_t;

typedef void (*dg_audit_entry_fn)(void *arg, const dg_audit_entry_t *e);

/** Calls fn for the newest `limit` entries, newest first. 0 or DG_EUNAVAIL
 *  (fn not called). */
int dg_service_audit_list(dg_app_t *app, int64_t limit, dg_audit_entry_fn fn, void *arg);

/** An API key as listed; strings borrowed for the callback, NULL where
 *  DuckDB gives none. */
typedef struct dg_key_info_s {
  int64_t id;
  const char *name;
  const char *role;
  const char *prefix;       /* the secret's first characters, to tell keys apart */
  const char *created_at;   /* ISO 8601 UTC with milliseconds               */
  const char *last_used_at; /* ditto, or NULL when never used               */
  const char *tables;       /* a scoped key's ",a,b,", or NULL               */
  const char *expires_at;   /* ISO 8601 UTC to the second, or NULL           */
} dg_key_info_t;

typedef void (*dg_key_info_fn)(void *arg, const dg_key_info_t *k);

/** Calls fn for every API key in id order. 0 or DG_EUNAVAIL (fn not
 *  called). */
int dg_service_keys_list(dg_app_t *app, dg_key_info_fn fn, void *arg);

/** Records JWT id jti as revoked by `by` (a second time is a no-op). 0 or
 *  DG_EUNAVAIL. */
int dg_service_token_revoke(dg_app_t *app, const char *jti, const char *by);

/* ---- webhooks ------------------------------------------------------------- */

/** Receives one stored text (len bytes, borrowed for the call). */
typedef void (*dg_webhook_text_fn)(void *arg, const char *text, size_t len);

/**
 * Registers hook id with its stored JSON text (secret included), its cursor
 * set first to response_duck's last-generated-id ("0-0" when the stream
 * does not exist yet), so the delivery thread never sees a hook without a
 * cursor. DG_ECONFLICT: DG_WEBHOOK_MAX hooks exist already (nothing
 * written); DG_EUNAVAIL.
 */
int dg_service_webhook_create(dg_app_t *app, const char *id, const char *text);

/** Calls fn with every hook's stored text (secret included, in Redis's
 *  order). 0 or DG_EUNAVAIL (fn not called). */
int dg_service_webhooks_list(dg_app_t *app, dg_webhook_text_fn fn, void *arg);

/** Deletes hook id, its cursor and its deliveries. DG_ENOTFOUND: no such
 *  hook; DG_EUNAVAIL (the hook may be gone when the second step failed). */
int dg_service_webhook_delete(dg_app_t *app, const char *id);

/** Calls fn with each of hook id's last DG_WEBHOOK_KEEP delivery records,
 *  newest first. DG_ENOTFOUND: no such hook; DG_EUNAVAIL (fn not called). */
int dg_service_webhook_deliveries(dg_app_t *app, const char *id, dg_webhook_text_fn fn, void *arg);

#endif
