/*
 * redis_xstream.c -- reading stream replies (XREAD, XREADGROUP, XRANGE)
 * without copying, and stream entry ids.
 *
 * The manager reads request_duck with XREADGROUP and every API process reads
 * response_duck with XREAD, so both walk the same nested reply:
 *
 *   XREAD / XREADGROUP                      XRANGE / XREVRANGE
 *   [ [ "stream-key",                       [ [ "id", [f1, v1, f2, v2 ...] ],
 *       [ [ "id", [f1, v1, ...] ],            ... ]
 *         [ "id", nil ],        <- entry deleted while pending
 *         ... ] ],                             (history read of XREADGROUP)
 *     ... ]                      or nil when BLOCK timed out
 *
 * dg_redis_xiter_init_* check the whole shape once, so the iterator and the
 * field accessors can hand out pointer + length views into the reply with no
 * further checks, and a malformed reply is one error at one place.
 */
#include "dg/redis.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stream/redis_internal.h"

/* ---- ids ------------------------------------------------------------------ */

int dg_redis_xid_parse(const char *s, size_t len, dg_redis_xid_t *out) {
  if (s == NULL) return DG_EINVAL;
  const char *dash = memchr(s, '-', len);
  if (dash == NULL) return DG_EINVAL;
  size_t mlen = (size_t)(dash - s);
  uint64_t ms, seq;
  if (dg__redis_parse_uint(s, mlen, UINT64_MAX, &ms) != 0) return DG_EINVAL;
  if (dg__redis_parse_uint(dash + 1, len - mlen - 1, UINT64_MAX, &seq) != 0) return DG_EINVAL;
  out->ms = ms;
  out->seq = seq;
  return 0;
}

int dg_redis_xid_cmp(dg_redis_xid_t a, dg_redis_xid_t b) {
  if (a.ms != b.ms) return a.ms < b.ms ? -1 : 1;
  if (a.seq != b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

int dg_redis_xid_format(dg_redis_xid_t id, char *buf, size_t cap) {
  if (buf == NULL || cap == 0) return DG_ETOOBIG;
  int n = snprintf(buf, cap, "%" PRIu64 "-%" PRIu64, id.ms, id.seq);
  if (n < 0 || (size_t)n >= cap) return DG_ETOOBIG;
  return 0;
}

/* ---- shape checks ------------------------------------------------------- */

/* [ "id", [f, v, ...] ] or [ "id", nil ] */
static int entry_ok(const redisReply *e) {
  if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2) return 0;
  if (e->element[0]->type != REDIS_REPLY_STRING) return 0;
  const redisReply *fv = e->element[1];
  if (fv->type == REDIS_REPLY_NIL) return 1;
  if (fv->type != REDIS_REPLY_ARRAY || fv->elements % 2 != 0) return 0;
  for (size_t i = 0; i < fv->elements; i++)
    if (fv->element[i]->type != REDIS_REPLY_STRING) return 0;
  return 1;
}

static int entries_ok(const redisReply *a) {
  if (a == NULL || a->type != REDIS_REPLY_ARRAY) return 0;
  for (size_t i = 0; i < a->elements; i++)
    if (!entry_ok(a->element[i])) return 0;
  return 1;
}

int dg_redis_xiter_init_xread(dg_redis_xiter_t *it, const redisReply *reply) {
  if (it == NULL || reply == NULL) return DG_EIO;
  if (reply->type == REDIS_REPLY_NIL) {
    *it = (dg_redis_xiter_t){0};
    return 0;
  }
  if (reply->type != REDIS_REPLY_ARRAY) return DG_EIO;
  for (size_t i = 0; i < reply->elements; i++) {
    const redisReply *s = reply->element[i];
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2) return DG_EIO;
    if (s->element[0]->type != REDIS_REPLY_STRING) return DG_EIO;
    if (!entries_ok(s->element[1])) return DG_EIO;
  }
  *it = (dg_redis_xiter_t){._streams = reply};
  return 0;
}

int dg_redis_xiter_init_xrange(dg_redis_xiter_t *it, const redisReply *reply) {
  if (it == NULL || !entries_ok(reply)) return DG_EIO;
  *it = (dg_redis_xiter_t){._entries = reply};
  return 0;
}

/* ---- iteration ------------------------------------------------------------ */

int dg_redis_xiter_next(dg_redis_xiter_t *it, dg_redis_xentry_t *e) {
  const redisReply *key = NULL;
  for (;;) {
    if (it->_streams != NULL) {
      if (it->_s >= it->_streams->elements) return 0;
      const redisReply *s = it->_streams->element[it->_s];
      key = s->element[0];
      it->_entries = s->element[1];
    } else if (it->_entries == NULL) {
      return 0;
    }
    if (it->_e < it->_entries->elements) break;
    if (it->_streams == NULL) return 0; /* XRANGE: one array only */
    it->_s++;
    it->_e = 0;
  }
  const redisReply *ent = it->_entries->element[it->_e++];
  const redisReply *fv = ent->element[1];
  e->stream.ptr = key ? key->str : "";
  e->stream.len = key ? key->len : 0;
  e->id.ptr = ent->element[0]->str;
  e->id.len = ent->element[0]->len;
  e->deleted = fv->type == REDIS_REPLY_NIL;
  e->nfields = e->deleted ? 0 : fv->elements / 2;
  e->_fv = e->deleted ? NULL : fv;
  return 1;
}

int dg_redis_xentry_field(const dg_redis_xentry_t *e, size_t i, dg_redis_str_t *field,
                          dg_redis_str_t *value) {
  if (e == NULL || i >= e->nfields || e->_fv == NULL) return DG_EINVAL;
  const redisReply *f = e->_fv->element[2 * i], *v = e->_fv->element[2 * i + 1];
  if (field) *field = (dg_redis_str_t){f->str, f->len};
  if (value) *value = (dg_redis_str_t){v->str, v->len};
  return 0;
}

size_t dg_redis_xentry_bytes(const dg_redis_xentry_t *e) {
  size_t n = e ? e->id.len : 0;
  for (size_t i = 0; e && e->_fv && i < e->nfields; i++)
    n += e->_fv->element[2 * i]->len + e->_fv->element[2 * i + 1]->len;
  return n;
}

int dg_redis_xentry_get(const dg_redis_xentry_t *e, const char *name, size_t namelen,
                        dg_redis_str_t *value) {
  if (e == NULL || e->_fv == NULL) return DG_ENOTFOUND;
  for (size_t i = 0; i < e->nfields; i++) {
    const redisReply *f = e->_fv->element[2 * i];
    if (f->len == namelen && (namelen == 0 || memcmp(f->str, name, namelen) == 0)) {
      const redisReply *v = e->_fv->element[2 * i + 1];
      if (value) *value = (dg_redis_str_t){v->str, v->len};
      return 0;
    }
  }
  return DG_ENOTFOUND;
}
