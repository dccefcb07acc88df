/*
 * fuzz_stream_entry.c -- libFuzzer harness for the stream entry decoder:
 * the MAC checks of src/stream/entry_mac.c on request_duck and
 * response_duck entries, with and without a valid MAC, and what the API
 * decodes from an accepted outcome (dg_tabledef_from_json, the names).
 *
 * Input: byte 0 is flags
 *   bit 0  sign the entry with the real key (else the MAC is taken from the
 *          input, or is missing when bit 3 is set)
 *   bit 1  after signing, flip one bit of the MAC (a tampered entry)
 *   bit 2  the entry is an outcome (res) rather than a request (req)
 *   bit 3  leave out the mac field (and for a request the t field too)
 * then three parts separated by '\n': the stream id, the signed time t
 * (requests only; ignored for outcomes) and the payload (the rest, any bytes).
 * When the MAC comes from the input, it is the first 64 bytes of the payload.
 *
 * Checks:
 *   - a validly signed entry is accepted exactly when its id parses and (for a
 *     request) t is a plain decimal within DG_ENTRY_MAX_SKEW_MS of the id's
 *     time, and then the payload handed back is the entry's own bytes;
 *   - a tampered or unsigned entry is never accepted (unless the input
 *     happens to carry the true MAC, checked by computing it);
 *   - dg_entry_open_req always yields a payload: the entry's when accepted,
 *     DG_ENTRY_REJECT_REQ otherwise, and counts every refusal;
 *     dg_entry_open_res yields one only when accepted;
 *   - from an accepted outcome, dg_tabledef_from_json on "table_def" gives
 *     NULL or a definition whose every name passes dg_name_valid.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dg/app.h"
#include "dg/catalog.h"
#include "dg/entry_mac.h"
#include "dg/log.h"
#include "fuzz_check.h"

static dg_app_t APP;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  for (int i = 0; i < DG_ENTRY_KEY_LEN; i++) APP.streams.mac_key[i] = (unsigned char)(i * 7 + 1);
  snprintf(APP.streams.req, sizeof APP.streams.req, "request_duck");
  snprintf(APP.streams.res, sizeof APP.streams.res, "response_duck");
  dg_log_setup(DG_LOG_ERROR, 0); /* refusals log at warn: keep the run quiet */
  return 0;
}

/* Splits off the part up to the next '\n'. */
static const uint8_t *part(const uint8_t *p, const uint8_t *end, size_t *len) {
  const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
  *len = (size_t)((nl ? nl : end) - p);
  return nl ? nl + 1 : end;
}

static int plain_ms(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 19) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return 1;
}

/* What the API does with an accepted outcome's names. */
static void decode_outcome(const char *res, size_t len) {
  json_t *o = json_loadb(res, len, 0, NULL);
  json_t *def = json_object_get(o, "table_def");
  dg_tabledef_t *t = def ? dg_tabledef_from_json(def) : NULL;
  if (t) {
    CHECK(dg_name_valid(t->name), "a table name that fails the whitelist was decoded: %s", t->name);
    CHECK(t->ncols >= 0 && t->ncols <= DG_MAX_COLUMNS, "%d columns", t->ncols);
    for (int i = 0; i < t->ncols; i++) {
      CHECK(dg_name_valid(t->cols[i].name), "column name %s", t->cols[i].name);
      CHECK(t->cols[i].scale >= 0 && t->cols[i].scale <= 6, "scale %d", t->cols[i].scale);
    }
    dg_tabledef_unref(t);
  }
  json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int flags = data[0];
  const uint8_t *p = data + 1, *end = data + size;
  size_t idlen, tlen;
  const uint8_t *id = p;
  p = part(p, end, &idlen);
  const uint8_t *t = p;
  p = part(p, end, &tlen);
  const char *payload = (const char *)p;
  size_t plen = (size_t)(end - p);
  int is_res = flags & 4, sign = flags & 1, omit = flags & 8;

  char mac[DG_ENTRY_MAC_HEX + 1], truth[DG_ENTRY_MAC_HEX + 1];
  if (is_res) dg_entry_mac_res(APP.streams.mac_key, (const char *)id, idlen, payload, plen, truth);
  else dg_entry_mac_req(APP.streams.mac_key, (const char *)t, tlen, payload, plen, truth);
  if (sign) {
    memcpy(mac, truth, sizeof mac);
    if (flags & 2) {
      size_t at = plen ? (unsigned char)payload[0] % DG_ENTRY_MAC_HEX : 0;
      mac[at] = mac[at] == '0' ? '1' : '0'; /* still hex, now wrong */
    }
  } else {
    size_t n = plen < DG_ENTRY_MAC_HEX ? plen : DG_ENTRY_MAC_HEX;
    memset(mac, 0, sizeof mac);
    memcpy(mac, payload, n);
  }
  size_t maclen = sign ? DG_ENTRY_MAC_HEX : strnlen(mac, DG_ENTRY_MAC_HEX);

  /* The entry as hiredis would hand it over: a field/value array. */
  redisReply f[6], *fv[6], arr;
  const char *names[3] = {is_res ? "res" : "req", "t", "mac"};
  const char *vals[3] = {payload, (const char *)t, mac};
  size_t lens[3] = {plen, tlen, maclen};
  size_t nf = 0;
  for (int i = 0; i < 3; i++) {
    if ((is_res || omit) && i == 1) continue;
    if (omit && i == 2) continue;
    memset(&f[2 * nf], 0, sizeof f[0] * 2);
    f[2 * nf].type = f[2 * nf + 1].type = REDIS_REPLY_STRING;
    f[2 * nf].str = (char *)names[i];
    f[2 * nf].len = strlen(names[i]);
    f[2 * nf + 1].str = (char *)vals[i];
    f[2 * nf + 1].len = lens[i];
    fv[2 * nf] = &f[2 * nf];
    fv[2 * nf + 1] = &f[2 * nf + 1];
    nf++;
  }
  memset(&arr, 0, sizeof arr);
  arr.type = REDIS_REPLY_ARRAY;
  arr.elements = 2 * nf;
  arr.element = fv;
  dg_redis_xentry_t x = {{"", 0}, {(const char *)id, idlen}, nf, 0, &arr};

  int true_mac = maclen == DG_ENTRY_MAC_HEX && memcmp(mac, truth, DG_ENTRY_MAC_HEX) == 0 && !omit;
  dg_redis_xid_t xid;
  int id_ok = dg_redis_xid_parse((const char *)id, idlen, &xid) == 0;
  dg_redis_str_t got = {NULL, 0};
  long refused_before = atomic_load(&APP.status.stream_rejected[is_res ? 1 : 0]);
  if (is_res) {
    dg_entry_verdict_t v = dg_entry_check_res(APP.streams.mac_key, &x, &got);
    CHECK((v == DG_ENTRY_OK) == true_mac, "outcome verdict %s, true MAC %d", dg_entry_verdict_name(v), true_mac);
    if (v == DG_ENTRY_OK) {
      CHECK(got.ptr == payload && got.len == plen, "accepted outcome is not the entry's bytes");
      decode_outcome(got.ptr, got.len);
    }
    dg_redis_str_t o = {NULL, 0};
    int rc = dg_entry_open_res(&APP, &x, &o);
    CHECK((rc == 0) == (v == DG_ENTRY_OK), "open_res %d against verdict %s", rc, dg_entry_verdict_name(v));
    CHECK(atomic_load(&APP.status.stream_rejected[1]) == refused_before + (v != DG_ENTRY_OK), "refusal not counted");
  } else {
    uint64_t tms;
    int fresh = 0;
    if (plain_ms((const char *)t, tlen, &tms) && id_ok)
      fresh = (xid.ms > tms ? xid.ms - tms : tms - xid.ms) <= DG_ENTRY_MAX_SKEW_MS;
    dg_entry_verdict_t v = dg_entry_check_req(APP.streams.mac_key, &x, &got);
    CHECK((v == DG_ENTRY_OK) == (true_mac && fresh), "request verdict %s, true MAC %d, fresh %d",
          dg_entry_verdict_name(v), true_mac, fresh);
    if (true_mac && !fresh) CHECK(v == DG_ENTRY_STALE || !id_ok || !plain_ms((const char *)t, tlen, &tms), "verdict %s", dg_entry_verdict_name(v));
    if (v == DG_ENTRY_OK) CHECK(got.ptr == payload && got.len == plen, "accepted request is not the entry's bytes");
    dg_redis_str_t o = {NULL, 0};
    int rc = dg_entry_open_req(&APP, &x, &o);
    CHECK(rc == 0, "open_req failed on an entry with a req field");
    if (v == DG_ENTRY_OK) CHECK(o.ptr == payload, "open_req changed an authentic request");
    else CHECK(o.len == strlen(DG_ENTRY_REJECT_REQ) && memcmp(o.ptr, DG_ENTRY_REJECT_REQ, o.len) == 0,
               "a refused request was not replaced by the rejection marker");
    CHECK(atomic_load(&APP.status.stream_rejected[0]) == refused_before + (v != DG_ENTRY_OK), "refusal not counted");
  }
  return 0;
}
