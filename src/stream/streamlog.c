/*
 * streamlog.c -- does request_duck still hold the log after a point
 * (streamlog.h)?
 */
#include "dg/streamlog.h"

#include <stdio.h>
#include <string.h>

#include "dg/common.h"

int dg_streamlog_covers(dg_redis_t *r, const char *stream, dg_redis_xid_t from, char *err, size_t errcap) {
  const char *argv[] = {"XINFO", "STREAM", stream};
  redisReply *rep = NULL;
  if (dg_redis_command(r, 3, argv, NULL, &rep) != 0) {
    snprintf(err, errcap, "redis: %s", dg_redis_last_error(r));
    return DG_EUNAVAIL;
  }
  long long length = -1, added = -1;
  dg_redis_xid_t del = {0, 0}, first = {0, 0}, top = {0, 0};
  int have_del = 0, have_first = 0, have_top = 0;
  if (rep->type == REDIS_REPLY_ARRAY) {
    for (size_t k = 0; k + 1 < rep->elements; k += 2) {
      redisReply *key = rep->element[k], *val = rep->element[k + 1];
      if (key->type != REDIS_REPLY_STRING && key->type != REDIS_REPLY_STATUS) continue;
      if (strcmp(key->str, "length") == 0 && val->type == REDIS_REPLY_INTEGER) length = val->integer;
      if (strcmp(key->str, "entries-added") == 0 && val->type == REDIS_REPLY_INTEGER) added = val->integer;
      if (strcmp(key->str, "last-generated-id") == 0 && val->type == REDIS_REPLY_STRING)
        have_top = dg_redis_xid_parse(val->str, val->len, &top) == 0;
      if (strcmp(key->str, "max-deleted-entry-id") == 0 && val->type == REDIS_REPLY_STRING)
        have_del = dg_redis_xid_parse(val->str, val->len, &del) == 0;
      if (strcmp(key->str, "first-entry") == 0 && val->type == REDIS_REPLY_ARRAY && val->elements >= 1 &&
          val->element[0]->type == REDIS_REPLY_STRING)
        have_first = dg_redis_xid_parse(val->element[0]->str, val->element[0]->len, &first) == 0;
    }
  }
  int is_error = rep->type == REDIS_REPLY_ERROR; /* no such stream */
  freeReplyObject(rep);
  if (is_error) return 0;
  char fid[DG_REDIS_XID_BUFSZ];
  dg_redis_xid_format(from, fid, sizeof fid);
  int deleted_after = have_del && dg_redis_xid_cmp(del, from) > 0;
  if (!deleted_after) {
    if (length >= 0 && added == length) return 0;
    /* Nothing was ever added after it (a stream trimmed to empty). */
    if (have_top && dg_redis_xid_cmp(top, from) == 0) return 0;
    /* The floor a leader set after Redis lost its data: gone up to here. */
    if (have_del && (from.ms || from.seq) && dg_redis_xid_cmp(del, from) == 0) return 0;
    const char *av[] = {"XRANGE", stream, fid, fid};
    int present = 0;
    if (dg_redis_command(r, 4, av, NULL, &rep) == 0) {
      present = rep->type == REDIS_REPLY_ARRAY && rep->elements == 1;
      freeReplyObject(rep);
    }
    if (present) return 0;
  }
  char fst[DG_REDIS_XID_BUFSZ] = "?";
  if (have_first) dg_redis_xid_format(first, fst, sizeof fst);
  snprintf(err, errcap, "%s no longer holds every entry after %s (%s; its oldest entry is %s)", stream, fid,
           deleted_after ? "entries after it were deleted" : "it was trimmed past it", fst);
  return DG_EGONE;
}
