/*
 * entry_mac.h -- authenticity of the entries of request_duck and
 * response_duck (see src/stream/entry_mac.c for the design and the reasons).
 *
 * Redis is a trust boundary: whoever can XADD to it must not become a
 * caller of the manager (request_duck) or a source of truth for the API's
 * catalog and clients (response_duck). Each entry therefore carries an
 * HMAC-SHA256 under a key derived from the pepper file, which Redis never
 * sees:
 *
 *   request_duck  <id> req <json> t <ms> mac <hex>
 *                 mac = HMAC(K, "dg-req-v1" 0x00 <ms> 0x00 <json>)
 *   response_duck <id> res <json> mac <hex>
 *                 mac = HMAC(K, "dg-res-v1" 0x00 <id> 0x00 <json>)
 *   K = HMAC-SHA256(pepper, "duckgrid stream v1")
 */
#ifndef DG_ENTRY_MAC_H
#define DG_ENTRY_MAC_H

#include <stddef.h>
#include <stdint.h>

#include "dg/redis.h"

struct dg_app_s;
struct dg_streams_s;
struct dg_node_status_s;

/** Bytes of the stream key. */
#define DG_ENTRY_KEY_LEN 32
/** Characters of a MAC as sent (lowercase hex), without the NUL. */
#define DG_ENTRY_MAC_HEX 64
/** The label the stream key is derived with from the pepper. */
#define DG_ENTRY_KEY_LABEL "duckgrid stream v1"
/**
 * How far a request entry's signed time may lie from the time of the id
 * Redis gave it (both milliseconds since the epoch). A real entry is
 * stamped a round trip before Redis names it; the bound leaves room for
 * clock skew between the API's host and Redis's, and is far below how
 * long the manager remembers applied request ids (every id whose outcome
 * response_duck still holds), so an entry replayed inside the window is a
 * duplicate and one replayed later is stale. Keep the hosts' clocks in
 * NTP sync.
 */
#define DG_ENTRY_MAX_SKEW_MS (120 * 1000)
/** The op a request entry without a valid MAC is applied as: the manager
 *  answers it with a rejected outcome ("unknown op") under its stream id,
 *  and none of its content (request_id, user, table) is used. */
#define DG_ENTRY_REJECT_REQ "{\"op\":\"unauthenticated_entry\"}"

/** Why an entry was refused. */
typedef enum {
  DG_ENTRY_OK = 0,
  DG_ENTRY_NO_PAYLOAD = 1, /* no req/res field                                */
  DG_ENTRY_NO_MAC = 2,     /* no mac (or no t) field, or not 64 hex characters */
  DG_ENTRY_BAD_MAC = 3,    /* the MAC does not match the content              */
  DG_ENTRY_STALE = 4,      /* signed time too far from the stream id's: replay */
} dg_entry_verdict_t;

/** A static name of a verdict, for logs. */
const char *dg_entry_verdict_name(dg_entry_verdict_t v);

/** Length of a caller tag (hex). */
#define DG_CALLER_TAG_LEN 16
/**
 * The caller tag of a request and its outcome: HMAC(key, "duckgrid caller
 * tag" 0 caller 0), 16 hex characters. The API puts it in every request it
 * queues, the manager copies it into the outcome, and a sync write waits
 * for the outcome of (tag, request_id): a request_id is scoped to its
 * caller ("key:<id>", "jwt:<sub>"), and two callers may share a user name.
 * Opaque to readers of the outcome (no key id shown).
 */
void dg_entry_caller_tag(const unsigned char key[DG_ENTRY_KEY_LEN], const char *caller, char tag[DG_CALLER_TAG_LEN + 1]);

/** HMAC-SHA256 of a request entry as 64 hex characters plus NUL. */
void dg_entry_mac_req(const unsigned char key[DG_ENTRY_KEY_LEN], const char *t, size_t tlen, const char *req,
                      size_t len, char hex[DG_ENTRY_MAC_HEX + 1]);
/** HMAC-SHA256 of an outcome entry published under stream id sid. */
void dg_entry_mac_res(const unsigned char key[DG_ENTRY_KEY_LEN], const char *sid, size_t sidlen,
                      const char *res, size_t len, char hex[DG_ENTRY_MAC_HEX + 1]);

/**
 * Checks a request_duck entry: its req, t and mac fields and its id. On
 * DG_ENTRY_OK *req borrows the req field. Pure: no log, no counter.
 */
dg_entry_verdict_t dg_entry_check_req(const unsigned char key[DG_ENTRY_KEY_LEN], const dg_redis_xentry_t *x,
                                      dg_redis_str_t *req);
/** Checks a response_duck entry: its res and mac fields against its id.
 *  On DG_ENTRY_OK *res borrows the res field. Pure. */
dg_entry_verdict_t dg_entry_check_res(const unsigned char key[DG_ENTRY_KEY_LEN], const dg_redis_xentry_t *x,
                                      dg_redis_str_t *res);

/**
 * The manager's side: the req of an entry, verified. 0 and *req = the req
 * field when the entry is authentic; for an entry that has a req but no
 * valid MAC (forged, damaged or replayed) logs it, counts it in /metrics
 * and sets *req to DG_ENTRY_REJECT_REQ, returning 0 (so it gets a rejected
 * outcome and nothing of it is applied); DG_ENOTFOUND when there is no req.
 */
int dg_entry_open_req(struct dg_app_s *app, const dg_redis_xentry_t *x, dg_redis_str_t *req);
/**
 * The API's side: the res of an entry, verified. 0 and *res when the
 * entry is authentic; otherwise logs and counts an entry that has a res
 * and returns DG_ENOTFOUND (callers skip it as they skip a damaged one).
 */
int dg_entry_open_res(struct dg_app_s *app, const dg_redis_xentry_t *x, dg_redis_str_t *res);
/**
 * The same two for a module given the app's groups rather than the app
 * (app.h): the stream names and key, and the status whose stream_rejected
 * counts a refused entry. dg_entry_open_req/res are these with the app's.
 */
int dg_entry_open_req_with(const struct dg_streams_s *streams, struct dg_node_status_s *status,
                           const dg_redis_xentry_t *x, dg_redis_str_t *req);
int dg_entry_open_res_with(const struct dg_streams_s *streams, struct dg_node_status_s *status,
                           const dg_redis_xentry_t *x, dg_redis_str_t *res);

/** Builds the argv tail "t <ms> mac <hex>" of a request XADD: fills t (at
 *  least 24 bytes) with the current time and hex with the MAC of req. */
void dg_entry_sign_req(const struct dg_app_s *app, const char *req, size_t len, char t[24],
                       char hex[DG_ENTRY_MAC_HEX + 1]);

#endif
