/*
 * entry_mac.c -- HMACs on the entries of request_duck and response_duck.
 *
 * Why. Redis sits between the API and the manager and between the manager
 * and every API process. Before this module, anything that could XADD to
 * Redis was trusted completely: a forged request was applied as if an
 * admin had sent it, and a forged outcome went into the API's catalog and
 * to every client. The MAC's key is derived from the pepper file (which
 * lives beside the database and never goes to Redis), so an attacker with
 * only Redis access can read entries but not make or alter them.
 *
 * What is bound, and replay. An outcome is published under an explicit
 * stream id (its request's id), known before the XADD: its MAC covers that
 * id and the text, so a copy of an old outcome XADDed again (which must
 * get a new, higher id) does not verify. A request's id is chosen by
 * Redis at XADD time ("*"; several API processes write the same stream),
 * so the MAC cannot cover it. It covers instead the request text (which
 * carries the request_id and the user) and the signer's clock, `t`: the
 * manager accepts an entry only when the time of its stream id lies within
 * DG_ENTRY_MAX_SKEW_MS of t. A replay made later than that is stale; one
 * made sooner repeats a request_id the manager still remembers and is a
 * duplicate, which applies nothing. Both checks depend only on the entry,
 * never on the manager's clock, so recovery reading the same entry again
 * reaches the same verdict.
 *
 * What happens to a bad entry. A request entry without a valid MAC is
 * logged, counted (duckgrid_stream_entries_rejected_total) and applied as
 * DG_ENTRY_REJECT_REQ: it gets a rejected outcome under its own stream id,
 * so "exactly one outcome per entry" and the manager's recovery stay as
 * they are, and no part of the forged content (request_id, user) is used,
 * so it cannot wake or answer anyone's waiting write. An outcome entry
 * without a valid MAC is logged, counted and skipped like a damaged one.
 * Entries written before this scheme (no mac field) count as forged:
 * drain request_duck before upgrading.
 */
#include "dg/entry_mac.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dg/app.h"
#include "dg/common.h"
#include "dg/hmac.h"
#include "dg/log.h"

static const char REQ_LABEL[] = "dg-req-v1";
static const char RES_LABEL[] = "dg-res-v1";

const char *dg_entry_verdict_name(dg_entry_verdict_t v) {
  switch (v) {
    case DG_ENTRY_OK: return "ok";
    case DG_ENTRY_NO_PAYLOAD: return "no payload";
    case DG_ENTRY_NO_MAC: return "no MAC";
    case DG_ENTRY_BAD_MAC: return "bad MAC";
    case DG_ENTRY_STALE: return "stale (replayed?)";
  }
  return "?";
}

/* The thread's kept context (hmac.h): fetching HMAC and setting up a
 * context cost more than hashing a request (~2 us of ~3 us per entry in a
 * restore's profile). */
_Static_assert(DG_ENTRY_KEY_LEN == DG_HMAC_KEY_LEN, "the stream key is an HMAC key");
/* HMAC(key, label 0 a 0 b) as hex. */
static void mac3(const unsigned char key[DG_ENTRY_KEY_LEN], const char *label, const char *a, size_t alen,
                 const char *b, size_t blen, char hex[DG_ENTRY_MAC_HEX + 1]) {
  static const char digits[] = "0123456789abcdef";
  static const unsigned char zero = 0;
  unsigned char d[EVP_MAX_MD_SIZE];
  size_t n = 0;
  /* EVP_MAC (OpenSSL 3): the HMAC_CTX calls are deprecated. A streaming
   * MAC, so a large outcome is not copied to be signed. */
  EVP_MAC_CTX *c = dg_hmac_ctx(key);
  EVP_MAC_update(c, (const unsigned char *)label, strlen(label));
  EVP_MAC_update(c, &zero, 1);
  EVP_MAC_update(c, (const unsigned char *)a, alen);
  EVP_MAC_update(c, &zero, 1);
  EVP_MAC_update(c, (const unsigned char *)b, blen);
  DG_ASSERT(EVP_MAC_final(c, d, &n, sizeof d) == 1 && n == 32);
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[d[i] >> 4];
    hex[2 * i + 1] = digits[d[i] & 15];
  }
  hex[64] = '\0';
}

void dg_entry_caller_tag(const unsigned char key[DG_ENTRY_KEY_LEN], const char *caller, char tag[DG_CALLER_TAG_LEN + 1]) {
  char hex[DG_ENTRY_MAC_HEX + 1];
  mac3(key, "duckgrid caller tag", caller, strlen(caller), "", 0, hex);
  memcpy(tag, hex, DG_CALLER_TAG_LEN);
  tag[DG_CALLER_TAG_LEN] = '\0';
}

void dg_entry_mac_req(const unsigned char key[DG_ENTRY_KEY_LEN], const char *t, size_t tlen, const char *req,
                      size_t len, char hex[DG_ENTRY_MAC_HEX + 1]) {
  mac3(key, REQ_LABEL, t, tlen, req, len, hex);
}

void dg_entry_mac_res(const unsigned char key[DG_ENTRY_KEY_LEN], const char *sid, size_t sidlen,
                      const char *res, size_t len, char hex[DG_ENTRY_MAC_HEX + 1]) {
  mac3(key, RES_LABEL, sid, sidlen, res, len, hex);
}

/* Constant-time comparison of a received MAC with the expected one. */
static int mac_equal(const dg_redis_str_t *got, const char want[DG_ENTRY_MAC_HEX + 1]) {
  return got->len == DG_ENTRY_MAC_HEX && CRYPTO_memcmp(got->ptr, want, DG_ENTRY_MAC_HEX) == 0;
}

/* Strict decimal milliseconds: 1..19 digits, no sign, no overflow. */
static int parse_ms(const dg_redis_str_t *s, uint64_t *out) {
  if (s->len == 0 || s->len > 19) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < s->len; i++) {
    if (s->ptr[i] < '0' || s->ptr[i] > '9') return -1;
    v = v * 10 + (uint64_t)(s->ptr[i] - '0');
  }
  *out = v;
  return 0;
}

dg_entry_verdict_t dg_entry_check_req(const unsigned char key[DG_ENTRY_KEY_LEN], const dg_redis_xentry_t *x,
                                      dg_redis_str_t *req) {
  dg_redis_str_t body, t, mac;
  if (dg_redis_xentry_get(x, "req", 3, &body) != 0) return DG_ENTRY_NO_PAYLOAD;
  if (dg_redis_xentry_get(x, "t", 1, &t) != 0 || dg_redis_xentry_get(x, "mac", 3, &mac) != 0 ||
      mac.len != DG_ENTRY_MAC_HEX)
    return DG_ENTRY_NO_MAC;
  char want[DG_ENTRY_MAC_HEX + 1];
  dg_entry_mac_req(key, t.ptr, t.len, body.ptr, body.len, want);
  if (!mac_equal(&mac, want)) return DG_ENTRY_BAD_MAC;
  uint64_t signed_ms;
  dg_redis_xid_t id;
  if (parse_ms(&t, &signed_ms) != 0 || dg_redis_xid_parse(x->id.ptr, x->id.len, &id) != 0)
    return DG_ENTRY_BAD_MAC; /* signed, so ours: cannot happen short of a bug */
  uint64_t d = id.ms > signed_ms ? id.ms - signed_ms : signed_ms - id.ms;
  if (d > DG_ENTRY_MAX_SKEW_MS) return DG_ENTRY_STALE;
  *req = body;
  return DG_ENTRY_OK;
}

dg_entry_verdict_t dg_entry_check_res(const unsigned char key[DG_ENTRY_KEY_LEN], const dg_redis_xentry_t *x,
                                      dg_redis_str_t *res) {
  dg_redis_str_t body, mac;
  if (dg_redis_xentry_get(x, "res", 3, &body) != 0) return DG_ENTRY_NO_PAYLOAD;
  if (dg_redis_xentry_get(x, "mac", 3, &mac) != 0 || mac.len != DG_ENTRY_MAC_HEX) return DG_ENTRY_NO_MAC;
  char want[DG_ENTRY_MAC_HEX + 1];
  dg_entry_mac_res(key, x->id.ptr, x->id.len, body.ptr, body.len, want);
  if (!mac_equal(&mac, want)) return DG_ENTRY_BAD_MAC;
  *res = body;
  return DG_ENTRY_OK;
}

/* Logs a refused entry: the first few, then one in a thousand, so a flood
 * of forged entries cannot flood the log (the counter has them all). */
static void refused(const dg_streams_t *streams, dg_node_status_t *status, int which, const dg_redis_xentry_t *x,
                    dg_entry_verdict_t v) {
  long n = atomic_fetch_add(&status->stream_rejected[which], 1) + 1;
  if (n <= 10 || n % 1000 == 0)
    dg_log_warn("%s: entry %.*s refused: %s (%ld refused so far); it is not applied", 
                which ? streams->res : streams->req, (int)(x->id.len < 41 ? x->id.len : 41), x->id.ptr,
                dg_entry_verdict_name(v), n);
}

int dg_entry_open_req_with(const dg_streams_t *streams, dg_node_status_t *status, const dg_redis_xentry_t *x,
                           dg_redis_str_t *req) {
  dg_entry_verdict_t v = dg_entry_check_req(streams->mac_key, x, req);
  if (v == DG_ENTRY_OK) return 0;
  if (v == DG_ENTRY_NO_PAYLOAD) return DG_ENOTFOUND;
  refused(streams, status, 0, x, v);
  *req = (dg_redis_str_t){DG_ENTRY_REJECT_REQ, sizeof DG_ENTRY_REJECT_REQ - 1};
  return 0;
}

int dg_entry_open_res_with(const dg_streams_t *streams, dg_node_status_t *status, const dg_redis_xentry_t *x,
                           dg_redis_str_t *res) {
  dg_entry_verdict_t v = dg_entry_check_res(streams->mac_key, x, res);
  if (v == DG_ENTRY_OK) return 0;
  if (v != DG_ENTRY_NO_PAYLOAD) refused(streams, status, 1, x, v);
  return DG_ENOTFOUND;
}

int dg_entry_open_req(struct dg_app_s *app, const dg_redis_xentry_t *x, dg_redis_str_t *req) {
  return dg_entry_open_req_with(&app->streams, &app->status, x, req);
}

int dg_entry_open_res(struct dg_app_s *app, const dg_redis_xentry_t *x, dg_redis_str_t *res) {
  return dg_entry_open_res_with(&app->streams, &app->status, x, res);
}

void dg_entry_sign_req(const struct dg_app_s *app, const char *req, size_t len, char t[24],
                       char hex[DG_ENTRY_MAC_HEX + 1]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int n = snprintf(t, 24, "%" PRId64, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
  dg_entry_mac_req(app->streams.mac_key, t, (size_t)n, req, len, hex);
}
