/*
 * fuzz_stream_reply.c -- libFuzzer harness for the stream-entry decoder
 * (src/stream/redis_xstream.c): dg_redis_xiter_init_xread/_xrange,
 * dg_redis_xiter_next, dg_redis_xentry_field/_get, and the entry ids
 * (dg_redis_xid_parse/_format/_cmp).
 *
 * The input is raw RESP2, as a server (or anything posing as one) could
 * send: hiredis 0.14's own reader turns it into reply trees exactly as the
 * client does, and every complete reply goes through both iterators.
 * Checks:
 *   - init accepts exactly the documented shapes (an independent shape check
 *     written here) and leaves the iterator untouched on failure;
 *   - iteration yields exactly the entries of the tree, in order, with views
 *     that point into the reply's own strings; field access agrees with the
 *     tree, out-of-range indexes fail, _get returns the first match;
 *   - an id that parses formats back to the same bytes (the parser takes
 *     only canonical decimals), and compares equal to itself.
 * Inputs whose arrays claim more than 100000 elements are skipped: hiredis
 * allocates the element table up front, which is hiredis's own business.
 */
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/redis.h"

#include "fuzz_check.h"

/* ---- a reference shape check ------------------------------------------------ */

static int is_str(const redisReply *r) { return r->type == REDIS_REPLY_STRING; }

/* [ "id", [f, v, ...] ] or [ "id", nil ] */
static int ref_entry(const redisReply *e) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !is_str(e->element[0])) return 0;
  const redisReply *fv = e->element[1];
  if (fv->type == REDIS_REPLY_NIL) return 1;
  if (fv->type != REDIS_REPLY_ARRAY || fv->elements % 2) return 0;
  for (size_t i = 0; i < fv->elements; i++)
    if (!is_str(fv->element[i])) return 0;
  return 1;
}

static int ref_entries(const redisReply *a) {
  if (a->type != REDIS_REPLY_ARRAY) return 0;
  for (size_t i = 0; i < a->elements; i++)
    if (!ref_entry(a->element[i])) return 0;
  return 1;
}

static int ref_xread(const redisReply *r) {
  if (r->type == REDIS_REPLY_NIL) return 1;
  if (r->type != REDIS_REPLY_ARRAY) return 0;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *s = r->element[i];
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || !is_str(s->element[0]) ||
        !ref_entries(s->element[1]))
      return 0;
  }
  return 1;
}

/* ---- ids ------------------------------------------------------------------------ */

static void check_id(const char *s, size_t len) {
  dg_redis_xid_t id = {12345, 678};
  int rc = dg_redis_xid_parse(s, len, &id);
  if (rc != 0) {
    CHECK(rc == DG_EINVAL && id.ms == 12345 && id.seq == 678, "failed parse wrote or rc %d", rc);
    return;
  }
  char buf[DG_REDIS_XID_BUFSZ];
  CHECK(dg_redis_xid_format(id, buf, sizeof buf) == 0, "format");
  CHECK(strlen(buf) == len && memcmp(buf, s, len) == 0, "id '%.*s' formats as '%s'", (int)len, s,
        buf);
  CHECK(dg_redis_xid_cmp(id, id) == 0, "cmp(id, id)");
  dg_redis_xid_t succ = id;
  if (++succ.seq == 0) succ.ms++;
  if (succ.ms != 0 || succ.seq != 0)
    CHECK(dg_redis_xid_cmp(id, succ) < 0 && dg_redis_xid_cmp(succ, id) > 0, "cmp order");
  /* A buffer one byte short is refused and stays NUL-terminated. */
  char small[DG_REDIS_XID_BUFSZ];
  CHECK(dg_redis_xid_format(id, small, len) == DG_ETOOBIG, "format into %zu bytes", len);
  CHECK(memchr(small, '\0', len) != NULL || len == 0, "short format not terminated");
}

/* ---- iteration ------------------------------------------------------------------ */

static int view_in(dg_redis_str_t v, const redisReply *r) {
  return v.ptr == r->str && v.len == r->len;
}

static void check_entry(const dg_redis_xentry_t *e, const redisReply *ent, const redisReply *key) {
  CHECK(view_in(e->id, ent->element[0]), "entry id view");
  if (key) CHECK(view_in(e->stream, key), "stream key view");
  else CHECK(e->stream.len == 0, "XRANGE entry with a stream key");
  const redisReply *fv = ent->element[1];
  int deleted = fv->type == REDIS_REPLY_NIL;
  CHECK(e->deleted == deleted, "deleted flag");
  CHECK(e->nfields == (deleted ? 0 : fv->elements / 2), "nfields %zu", e->nfields);
  check_id(e->id.ptr, e->id.len);
  for (size_t i = 0; i < e->nfields; i++) {
    dg_redis_str_t f, v;
    CHECK(dg_redis_xentry_field(e, i, &f, &v) == 0, "field %zu", i);
    CHECK(view_in(f, fv->element[2 * i]) && view_in(v, fv->element[2 * i + 1]), "field %zu views", i);
    /* _get finds the first field of that name. */
    dg_redis_str_t g = {NULL, 0};
    CHECK(dg_redis_xentry_get(e, f.ptr, f.len, &g) == 0, "get of a present field");
    size_t first = 0;
    while (fv->element[2 * first]->len != f.len ||
           (f.len && memcmp(fv->element[2 * first]->str, f.ptr, f.len) != 0))
      first++;
    CHECK(view_in(g, fv->element[2 * first + 1]), "get returned field %zu's value, not the first's",
          i);
  }
  dg_redis_str_t f = {"x", 1}, v = {"y", 1};
  CHECK(dg_redis_xentry_field(e, e->nfields, &f, &v) == DG_EINVAL && f.len == 1 && v.len == 1,
        "field index nfields");
  CHECK(dg_redis_xentry_field(e, SIZE_MAX, NULL, NULL) == DG_EINVAL, "field index SIZE_MAX");
  static const char *const names[] = {"req", "res", ""};
  for (size_t k = 0; k < 3; k++) {
    dg_redis_str_t g = {"unchanged", 9};
    int rc = dg_redis_xentry_get(e, names[k], strlen(names[k]), &g);
    int present = 0;
    for (size_t i = 0; i < e->nfields && !present; i++)
      present = fv->element[2 * i]->len == strlen(names[k]) &&
                memcmp(fv->element[2 * i]->str, names[k], strlen(names[k])) == 0;
    CHECK(rc == (present ? 0 : DG_ENOTFOUND), "get('%s') = %d", names[k], rc);
    if (rc != 0) CHECK(g.len == 9, "failed get wrote");
  }
}

static void check_reply(const redisReply *r) {
  /* XREAD / XREADGROUP */
  dg_redis_xiter_t it;
  memset(&it, 0x5a, sizeof it);
  int rc = dg_redis_xiter_init_xread(&it, r);
  CHECK((rc == 0) == ref_xread(r), "init_xread %d, reference says %d", rc, ref_xread(r));
  if (rc == 0) {
    dg_redis_xentry_t e;
    size_t seen = 0;
    if (r->type == REDIS_REPLY_ARRAY) {
      for (size_t s = 0; s < r->elements; s++) {
        const redisReply *st = r->element[s];
        for (size_t k = 0; k < st->element[1]->elements; k++) {
          CHECK(dg_redis_xiter_next(&it, &e) == 1, "xread ended early at stream %zu entry %zu", s, k);
          check_entry(&e, st->element[1]->element[k], st->element[0]);
          seen++;
        }
      }
    }
    CHECK(dg_redis_xiter_next(&it, &e) == 0, "xread yields more than %zu entries", seen);
    CHECK(dg_redis_xiter_next(&it, &e) == 0, "xread restarts after its end");
  } else {
    CHECK(rc == DG_EIO, "init_xread rc %d", rc);
    unsigned char b[sizeof it];
    memset(b, 0x5a, sizeof b);
    CHECK(memcmp(&it, b, sizeof it) == 0, "failed init_xread wrote the iterator");
  }
  /* XRANGE / XREVRANGE */
  memset(&it, 0x5a, sizeof it);
  rc = dg_redis_xiter_init_xrange(&it, r);
  CHECK((rc == 0) == ref_entries(r), "init_xrange %d", rc);
  if (rc == 0) {
    dg_redis_xentry_t e;
    for (size_t k = 0; k < r->elements; k++) {
      CHECK(dg_redis_xiter_next(&it, &e) == 1, "xrange ended early at %zu", k);
      check_entry(&e, r->element[k], NULL);
    }
    CHECK(dg_redis_xiter_next(&it, &e) == 0, "xrange yields too much");
  } else {
    CHECK(rc == DG_EIO, "init_xrange rc %d", rc);
  }
}

/* Any "*<n>" with n > 100000 anywhere: hiredis would allocate n pointers. */
static int huge_array(const uint8_t *d, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (d[i] != '*') continue;
    size_t j = i + 1;
    if (j < n && d[j] == '-') continue;
    unsigned long long v = 0;
    int digits = 0;
    while (j < n && d[j] >= '0' && d[j] <= '9' && digits < 20) v = v * 10 + (d[j++] - '0'), digits++;
    if (digits >= 7 && v > 100000) return 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The id parser on the raw bytes too (any length, any content). */
  check_id((const char *)data, size < 64 ? size : 64);
  check_id(NULL, 0) ;
  if (huge_array(data, size)) return 0;
  redisReader *rd = redisReaderCreate();
  CHECK(rd != NULL, "redisReaderCreate");
  /* Feed in two pieces: the split point comes from the input. */
  size_t cut = size ? data[0] % (size + 1) : 0;
  int ok = redisReaderFeed(rd, (const char *)data, cut) == REDIS_OK &&
           redisReaderFeed(rd, (const char *)data + cut, size - cut) == REDIS_OK;
  for (int k = 0; ok && k < 64; k++) {
    void *reply = NULL;
    if (redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL) break;
    check_reply(reply);
    freeReplyObject(reply);
  }
  redisReaderFree(rd);
  return 0;
}
