/*
 * webhook.h -- outgoing webhooks: every update object POSTed to the URLs an
 * admin registered (POST /admin/webhooks), signed, in order, retried.
 * Design note: src/webhook/webhook.c. Routes: src/http/webhooks.c.
 */
#ifndef DG_WEBHOOK_H
#define DG_WEBHOOK_H

#include <stddef.h>

#include "dg/app.h"

typedef struct dg_webhook_s dg_webhook_t;

/** Most hooks one deployment holds: each costs the delivery thread a few
 *  Redis round trips per pass. */
#define DG_WEBHOOK_MAX 100
/** Longest URL accepted. */
#define DG_WEBHOOK_URL_MAX 2048
/** Attempts kept per hook for GET /admin/webhooks/{id}/deliveries. */
#define DG_WEBHOOK_KEEP 50
/** Characters of a hook id (lowercase hex). */
#define DG_WEBHOOK_ID_LEN 16

/**
 * Checks a destination URL: http:// or https://, no user info, a host name
 * or IP literal, an optional port, and a host (and port) that matches the
 * allow-list DUCKGRID_WEBHOOK_ALLOW (comma-separated host or host:port;
 * default 127.0.0.1, ::1, localhost). 0, or DG_EINVAL with a reason in err.
 * Resolves nothing: the addresses are checked at every delivery.
 */
int dg_webhook_url_check(const char *url, char *err, size_t errcap);

/**
 * Checks a host name against the allow-list at delivery time: every
 * address it resolves to must be allowed (see webhook.c). 0, or DG_EINVAL
 * with a reason. Exposed for the unit test.
 */
int dg_webhook_url_resolve_check(const char *url, char *err, size_t errcap);

struct sockaddr;

/**
 * Checks one address a delivery to url is about to connect to, by the rule
 * of dg_webhook_url_resolve_check (called for every socket the HTTP client
 * opens, so the address checked is the one connected). 0, or DG_EINVAL
 * with a reason (also for a malformed url or an address neither IPv4 nor
 * IPv6). Exposed for the unit test.
 */
int dg_webhook_addr_check(const char *url, const struct sockaddr *sa, char *err, size_t errcap);

/** Checks DUCKGRID_WEBHOOK_ALLOW at start: 0, or DG_EINVAL with the first
 *  malformed item (or too many) in err. */
int dg_webhook_allow_valid(char *err, size_t errcap);

/** A Redis key of the webhooks: "<prefix>webhooks" (id NULL) or
 *  "<prefix>webhook:<id>:<what>" (what "cursor" or "deliveries"). */
void dg_webhook_key(const dg_app_t *app, const char *id, const char *what, char *out, size_t cap);

/*
 * What the delivery thread is given, and all of the process it touches.
 * Borrowed: each must outlive dg_webhook_stop.
 */
typedef struct {
  const char *prefix;               /* of its keys (dg_webhook_key); NULL: none */
  struct dg_redis_pool_s *redis;    /* connections, taken for each pass     */
  const dg_streams_t *streams;      /* response_duck, the signing key       */
  dg_node_status_t *status;         /* it reads manager_state (delivers only
                                       while this process leads) and writes
                                       stream_rejected (entry_mac.h)        */
} dg_webhook_deps_t;

/** Starts the delivery thread (it delivers only while this process leads).
 *  deps is copied. */
dg_webhook_t *dg_webhook_start(const dg_webhook_deps_t *deps);
/** Stops it (waits up to one HTTP timeout for a delivery under way). NULL: no-op. */
void dg_webhook_stop(dg_webhook_t *w);

#endif
