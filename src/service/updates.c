/*
 * updates.c (service) -- the update stream and the audit log as the update
 * routes see them (service_updates.h): the only place GET /get_updates and
 * GET /updates/{id}/changes speak Redis or DuckDB.
 *
 * Every entry of the response stream has one field, `res`, holding a
 * complete update object as JSON text, signed (entry_mac.h). It is handed
 * on byte for byte (never decoded and re-encoded), so a client sees exactly
 * what the manager published.
 *
 * Gone. The stream is capped (XADD MAXLEN ~), so an old cursor may point
 * before what is retained. Redis 7.0 does not record trimmed entries in
 * max-deleted-entry-id (DESIGN.md), so the decision comes from XINFO
 * STREAM, read right AFTER the XREAD in the same pipeline (trimming only
 * moves the head forward, so reading the head late can only err towards
 * "gone", never hide a gap); dg_service_stream_gone has the rule.
 *
 * The read loop (dg_service_updates_read), starting with the first batch
 * when the gone check fetched it:
 *
 *   XREAD (non-blocking) ──▶ consume ──▶ limit reached, or SCAN_MAX ──▶ done
 *        ▲                     │ unfiltered and got some ─────────────▶ done
 *        │ full batch          │ filtered: full batch ──▶ read on
 *        └─────────────────────┤ fewer than a batch or none:
 *                              ▼
 *             matched > 0, wait_ms = 0, time up, or stopping ──▶ done
 *                              │ else
 *                              ▼
 *             XREAD BLOCK min(time left, slice) ──▶ consume ──▶ (as above)
 *
 * Table filter. With a table, an update is kept when its top-level "table"
 * is that name or any of its "changes" has that "table" (jansson parses
 * each entry, for the decision only; the text handed on is the original).
 * The read continues past non-matching entries until `limit` matches, the
 * end of the stream, or DG_UPDATES_SCAN_MAX entries scanned; the cursor
 * then still advances past everything scanned, so the client never scans
 * the same entries twice.
 */
#include "dg/dgsql.h"
#include "dg/service_updates.h"

#include <duckdb.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "dg/common.h"
#include "dg/db.h"
#include "dg/entry_mac.h"
#include "dg/hub.h"
#include "dg/log.h"
#include "dg/progress.h"
#include "dg/redis_pool.h"
#include "dg/wire.h"

/* One XREAD BLOCK at most this long, so shutdown waits at most this for a
 * long poll; 30 round trips per idle 30 s poll cost Redis nothing. */
#define BLOCK_SLICE_MS 1000
/* Socket timeout beyond the BLOCK time, for the reply's trip back. */
#define BLOCK_MARGIN_MS 2000
/* Entries read per XREAD when filtering by table. */
#define FILTER_BATCH 1000
/* Entries per XREAD: bounds the reply hiredis holds in memory; a page takes
 * several reads. Outcomes can be large (a 1 MiB text cell, a long id
 * list), so the count adapts to the sizes just read: about
 * REDIS_BATCH_BYTES a read, between 1 and REDIS_BATCH entries, starting at
 * REDIS_BATCH_FIRST (next_batch). */
#define REDIS_BATCH 100
#define REDIS_BATCH_FIRST 16
#define REDIS_BATCH_BYTES ((size_t)1 << 20)

/* ======================================================================= */
/* Stream state                                                              */
/* ======================================================================= */

static int reply_xid(const redisReply *v, dg_redis_xid_t *out) {
  if (v == NULL || (v->type != REDIS_REPLY_STRING && v->type != REDIS_REPLY_STATUS)) return DG_EIO;
  return dg_redis_xid_parse(v->str, v->len, out) == 0 ? 0 : DG_EIO;
}

/* Reads an XINFO STREAM reply (RESP2: a flat array of name/value pairs). A
 * missing key is an empty stream. DG_EIO on any other error or shape. */
static int parse_xinfo(const redisReply *rep, dg_stream_state_t *out) {
  dg_stream_state_t x = {0, -1, {0, 0}, {0, 0}};
  if (rep->type == REDIS_REPLY_ERROR) {
    if (strstr(rep->str, "no such key") == NULL) return DG_EIO;
    x.entries_added = 0;
    *out = x;
    return 0;
  }
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2 != 0) return DG_EIO;
  int have_len = 0, have_last = 0, have_first = 0;
  for (size_t i = 0; i < rep->elements; i += 2) {
    const redisReply *k = rep->element[i], *v = rep->element[i + 1];
    if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS) return DG_EIO;
    if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER) {
      x.length = v->integer;
      have_len = 1;
    } else if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER) {
      x.entries_added = v->integer;
    } else if (strcmp(k->str, "last-generated-id") == 0) {
      if (reply_xid(v, &x.last) != 0) return DG_EIO;
      have_last = 1;
    } else if (strcmp(k->str, "first-entry") == 0 && v->type == REDIS_REPLY_ARRAY && v->elements >= 1) {
      if (reply_xid(v->element[0], &x.first) != 0) return DG_EIO;
      have_first = 1;
    }
  }
  if (!have_len || !have_last || (x.length > 0 && !have_first)) return DG_EIO;
  *out = x;
  return 0;
}

/* The text of an error reply, for the log. */
static const char *reply_error(const redisReply *rep) {
  return rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply shape";
}

int dg_service_stream_state(dg_app_t *app, dg_stream_state_t *out) {
  dg_redis_t *conn = dg_redis_pool_get(app->redis);
  const char *argv[] = {"XINFO", "STREAM", app->streams.res};
  redisReply *rep = NULL;
  int rc = dg_redis_command(conn, 3, argv, NULL, &rep);
  if (rc == 0 && parse_xinfo(rep, out) != 0) {
    dg_log_error("get_updates: unexpected XINFO reply from %s: %s", app->streams.res, reply_error(rep));
    rc = DG_EINTERNAL;
  }
  if (rep) freeReplyObject(rep);
  dg_redis_pool_put(app->redis, conn);
  return rc;
}

int dg_service_stream_gone(const dg_stream_state_t *x, dg_redis_xid_t since) {
  int trimmed = x->entries_added < 0 || x->entries_added > x->length;
  if (!trimmed) return 0;
  if (x->length > 0) return dg_redis_xid_cmp(since, x->first) < 0;
  return dg_redis_xid_cmp(since, x->last) < 0;
}

/* ======================================================================= */
/* Reading                                                                   */
/* ======================================================================= */

typedef struct {
  dg_app_t *app;
  dg_updates_read_t *q;
  dg_update_fn fn;
  void *arg;
  dg_redis_t *conn;
  int filtering;          /* table or scope: entries may be skipped      */
  size_t scanned_bytes;   /* bytes of the entries consumed, matched or not */
  size_t batch_bytes;     /* bytes of the entries the last consume saw   */
  int stop;               /* limit or a byte cap reached                 */
} scan_t;

/* Is the text a JSON object, at a glance? (A full parse is left to the
 * filter; the manager writes these, this only keeps a damaged entry from
 * breaking the whole response.) */
static int looks_like_object(const char *s, size_t n) {
  while (n && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\t')) n--;
  return n >= 2 && s[0] == '{' && s[n - 1] == '}';
}

static int matches_table(const char *text, size_t n, const char *table) {
  return dg_wire_out_concerns(text, n, table);
}

/* Consumes the entries of an XREAD reply (checked by check_reply); returns
 * how many it saw. */
static size_t consume(scan_t *s, const redisReply *rep) {
  dg_updates_read_t *q = s->q;
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  size_t seen = 0;
  s->batch_bytes = 0;
  if (dg_redis_xiter_init_xread(&it, rep) != 0) return 0;
  while (!s->stop && dg_redis_xiter_next(&it, &e)) {
    dg_redis_xid_t id;
    if (dg_redis_xid_parse(e.id.ptr, e.id.len, &id) != 0) continue;
    q->cursor = id;
    q->scanned++;
    seen++;
    size_t eb = dg_redis_xentry_bytes(&e);
    s->batch_bytes += eb;
    s->scanned_bytes += eb;
    /* A filtered page that matches little must not read gigabytes of
     * other tables' outcomes either: past DUCKGRID_PAGE_BYTES scanned it
     * ends here, and the cursor continues after this entry. */
    if (s->scanned_bytes >= s->app->cfg->page_bytes) s->stop = 1;
    dg_redis_str_t res;
    if (dg_entry_open_res(s->app, &e, &res) != 0 || !looks_like_object(res.ptr, res.len)) {
      dg_log_warn("get_updates: entry %.*s of %s has no valid 'res'; skipped", (int)e.id.len, e.id.ptr,
                  s->app->streams.res);
      continue;
    }
    if (q->table && !matches_table(res.ptr, res.len, q->table)) continue;
    if (q->scope && !dg_update_within(res.ptr, res.len, q->scope)) continue;
    int full = s->fn(s->arg, res.ptr, res.len);
    if (++q->matched == q->limit || full) s->stop = 1;
  }
  return seen;
}

/* The count of the next XREAD after one that returned n entries of
 * `bytes`: as many of that size as fit in REDIS_BATCH_BYTES, at most four
 * times n (a run of small entries before a big one costs one big read at
 * most), within 1..max. */
static int64_t next_batch(int64_t max, size_t n, size_t bytes) {
  if (n == 0) return max < REDIS_BATCH_FIRST ? max : REDIS_BATCH_FIRST;
  size_t fit = REDIS_BATCH_BYTES / (bytes / n + 1);
  if (fit > 4 * n) fit = 4 * n;
  if (fit < 1) fit = 1;
  return (int64_t)fit < max ? (int64_t)fit : max;
}

/* XREAD [BLOCK block_ms] COUNT count STREAMS key <cursor>. */
static int xread(scan_t *s, int64_t count, int64_t block_ms, redisReply **rep) {
  char idbuf[DG_REDIS_XID_BUFSZ], cnt[24], blk[24];
  dg_redis_xid_format(s->q->cursor, idbuf, sizeof idbuf);
  snprintf(cnt, sizeof cnt, "%lld", (long long)count);
  const char *key = s->app->streams.res;
  if (block_ms <= 0) {
    const char *argv[] = {"XREAD", "COUNT", cnt, "STREAMS", key, idbuf};
    return dg_redis_command(s->conn, 6, argv, NULL, rep);
  }
  snprintf(blk, sizeof blk, "%lld", (long long)block_ms);
  const char *argv[] = {"XREAD", "BLOCK", blk, "COUNT", cnt, "STREAMS", key, idbuf};
  return dg_redis_command_timeout(s->conn, (int)block_ms + BLOCK_MARGIN_MS, 8, argv, NULL, rep);
}

/* An XREAD reply that is an error (wrong key type) or not shaped like one is a
 * bug or a misconfiguration: DG_EINTERNAL. consume() relies on this check. */
static int check_reply(const redisReply *rep) {
  dg_redis_xiter_t it;
  return dg_redis_xiter_init_xread(&it, rep) == 0 ? 0 : DG_EINTERNAL;
}

/* The read loop in the top comment, from the first batch when the caller
 * already has it (first, may be NULL; freed here; it was read with a count
 * of first_batch). 0, or a DG_E* code when Redis fails before anything was
 * consumed. */
static int scan(scan_t *s, redisReply *first, int64_t first_batch) {
  dg_updates_read_t *q = s->q;
  int64_t deadline = (dg_mono_us() / 1000) + q->wait_ms;
  int64_t batch_max = s->filtering ? FILTER_BATCH : q->limit;
  if (batch_max > REDIS_BATCH) batch_max = REDIS_BATCH;
  int64_t batch = first_batch ? first_batch : next_batch(batch_max, 0, 0);
  redisReply *rep = first;
  int may_block = 0; /* the stream had nothing more: the next read blocks */
  for (;;) {
    if (rep == NULL) {
      int64_t block = 0;
      if (may_block) {
        int64_t left = deadline - (dg_mono_us() / 1000);
        block = left < BLOCK_SLICE_MS ? left : BLOCK_SLICE_MS;
        if (block < 1) return 0;
      }
      int rc = xread(s, batch, block, &rep);
      if (rc == 0 && check_reply(rep) != 0) {
        dg_log_error("get_updates: XREAD %s: %s", s->app->streams.res, reply_error(rep));
        freeReplyObject(rep);
        rep = NULL;
        rc = DG_EINTERNAL;
      }
      if (rc != 0) return q->scanned > 0 ? 0 : rc; /* keep what was consumed */
    }
    size_t seen = consume(s, rep);
    freeReplyObject(rep);
    rep = NULL;
    if (s->stop || q->scanned >= DG_UPDATES_SCAN_MAX) return 0;
    /* Unfiltered: what came is the answer, unless a full batch says more
     * may follow right behind (a limit above REDIS_BATCH). */
    if (seen > 0 && !s->filtering && (int64_t)seen < batch) return 0;
    if ((int64_t)seen == batch) {
      may_block = 0; /* filtered: there may be more right behind */
      batch = next_batch(batch_max, seen, s->batch_bytes);
      continue;
    }
    /* The stream has nothing more now. Wait only for the first update. */
    if (q->matched > 0 || q->wait_ms == 0 || (dg_mono_us() / 1000) >= deadline || atomic_load(&s->app->status.stopping))
      return 0;
    may_block = 1;
  }
}

int dg_service_updates_read(dg_app_t *app, dg_updates_read_t *q, dg_update_fn fn, void *arg) {
  scan_t s;
  memset(&s, 0, sizeof s);
  s.app = app;
  s.q = q;
  s.fn = fn;
  s.arg = arg;
  s.filtering = q->table != NULL || q->scope != NULL;
  s.conn = dg_redis_pool_get(app->redis);
  const char *key = app->streams.res;
  redisReply *first = NULL;
  int64_t first_batch = 0;
  int rc = 0;
  if (q->check_gone) {
    /* First round trip: read the first batch and the state to check it. */
    int64_t batch = s.filtering ? FILTER_BATCH : q->limit;
    if (batch > REDIS_BATCH) batch = REDIS_BATCH;
    batch = next_batch(batch, 0, 0); /* as scan() reads on */
    first_batch = batch;
    char idbuf[DG_REDIS_XID_BUFSZ], cnt[24];
    dg_redis_xid_format(q->cursor, idbuf, sizeof idbuf);
    snprintf(cnt, sizeof cnt, "%lld", (long long)batch);
    const char *xread_argv[] = {"XREAD", "COUNT", cnt, "STREAMS", key, idbuf};
    const char *xinfo[] = {"XINFO", "STREAM", key};
    /* XREAD first, XINFO second: see "Gone" above for why this order. */
    dg_redis_cmd_t cmds[2] = {{6, xread_argv, NULL}, {3, xinfo, NULL}};
    redisReply *reps[2] = {NULL, NULL};
    dg_stream_state_t x;
    rc = dg_redis_pipeline(s.conn, 2, cmds, reps);
    if (rc == 0 && (check_reply(reps[0]) != 0 || parse_xinfo(reps[1], &x) != 0)) {
      dg_log_error("get_updates: unexpected reply from %s: %s / %s", key, reply_error(reps[0]),
                   reply_error(reps[1]));
      rc = DG_EINTERNAL;
    }
    if (rc == 0 && dg_service_stream_gone(&x, q->cursor)) {
      q->state = x;
      rc = DG_EGONE;
    }
    if (rc == 0) first = reps[0];
    else if (reps[0]) freeReplyObject(reps[0]);
    if (reps[1]) freeReplyObject(reps[1]);
  }
  if (rc == 0) rc = scan(&s, first, first_batch);
  dg_redis_pool_put(app->redis, s.conn);
  return rc;
}

/* ======================================================================= */
/* GET /events: replay and resume                                            */
/* ======================================================================= */

/* XINFO read leniently, as the replay always has: a reply missing a field
 * is not a gap (the replay then finds what is there). */
int dg_service_replay_gone(dg_app_t *app, dg_redis_xid_t after, int *gone) {
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  const char *argv[] = {"XINFO", "STREAM", app->streams.res};
  redisReply *rep;
  if (dg_redis_command(c, 3, argv, NULL, &rep) != 0) {
    dg_redis_pool_put(app->redis, c);
    return DG_EUNAVAIL;
  }
  long long added = -1, length = -1;
  dg_redis_xid_t first = {0, 0};
  int have_first = 0;
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
    redisReply *k = rep->element[i], *v = rep->element[i + 1];
    if (k->type != REDIS_REPLY_STRING) continue;
    if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER) added = v->integer;
    if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER) length = v->integer;
    if (strcmp(k->str, "first-entry") == 0 && v->type == REDIS_REPLY_ARRAY && v->elements >= 1 &&
        v->element[0]->type == REDIS_REPLY_STRING)
      have_first = dg_redis_xid_parse(v->element[0]->str, v->element[0]->len, &first) == 0;
  }
  freeReplyObject(rep);
  dg_redis_pool_put(app->redis, c);
  *gone = added > length && have_first && dg_redis_xid_cmp(after, first) < 0;
  return 0;
}

int dg_service_replay_page(dg_app_t *app, dg_redis_xid_t after, size_t count, dg_replay_fn fn, void *arg) {
  char cursor[DG_REDIS_XID_BUFSZ + 1] = "("; /* exclusive */
  dg_redis_xid_format(after, cursor + 1, sizeof cursor - 1);
  char cnt[24];
  snprintf(cnt, sizeof cnt, "%zu", count);
  const char *argv[] = {"XRANGE", app->streams.res, cursor, "+", "COUNT", cnt};
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  redisReply *rep;
  int rc = dg_redis_command(c, 6, argv, NULL, &rep);
  dg_redis_pool_put(app->redis, c);
  if (rc != 0) return DG_EUNAVAIL;
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  if (dg_redis_xiter_init_xrange(&it, rep) == 0) {
    while (dg_redis_xiter_next(&it, &e)) {
      dg_redis_str_t v;
      char id[DG_REDIS_XID_BUFSZ];
      snprintf(id, sizeof id, "%.*s", (int)e.id.len, e.id.ptr);
      int ok = dg_entry_open_res(app, &e, &v) == 0; /* MAC checked: entry_mac.h */
      if (fn(arg, id, ok ? v.ptr : NULL, ok ? v.len : 0, dg_redis_xentry_bytes(&e)) != 0) break;
    }
  }
  freeReplyObject(rep);
  return 0;
}

int dg_service_stream_newest(dg_app_t *app, dg_redis_xid_t *last) {
  dg_redis_t *c = dg_redis_pool_get(app->redis);
  const char *argv[] = {"XREVRANGE", app->streams.res, "+", "-", "COUNT", "1"};
  redisReply *rep;
  if (dg_redis_command(c, 6, argv, NULL, &rep) != 0) {
    dg_redis_pool_put(app->redis, c);
    return DG_EUNAVAIL;
  }
  dg_redis_xiter_t it;
  dg_redis_xentry_t e;
  if (dg_redis_xiter_init_xrange(&it, rep) == 0 && dg_redis_xiter_next(&it, &e))
    dg_redis_xid_parse(e.id.ptr, e.id.len, last);
  freeReplyObject(rep);
  dg_redis_pool_put(app->redis, c);
  return 0;
}

/* ======================================================================= */
/* The audit log                                                             */
/* ======================================================================= */

int dg_service_await_update(dg_app_t *app, dg_redis_xid_t id, int wait_ms) {
  dg_redis_xid_t reached;
  if (app->progress == NULL) return 0;
  return dg_progress_wait(app->progress, id, wait_ms, &reached);
}

int dg_service_update_in_scope(dg_app_t *app, dg_redis_xid_t id, const char *scope) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  char ssql[768];
  snprintf(ssql, sizeof ssql, "SELECT count(*)%s AND strpos($3, ',' || c.table_name || ',') = 0", dg_sql_update_changes_from);
  duckdb_prepared_statement sc = NULL;
  duckdb_result sres;
  int64_t outside = -1;
  if (duckdb_prepare(c, ssql, &sc) == DuckDBSuccess) {
    duckdb_bind_int64(sc, 1, (int64_t)id.ms);
    duckdb_bind_int64(sc, 2, (int64_t)id.seq);
    duckdb_bind_varchar(sc, 3, scope);
    if (duckdb_execute_prepared(sc, &sres) == DuckDBSuccess) outside = duckdb_value_int64(&sres, 0, 0);
    duckdb_destroy_result(&sres);
  }
  duckdb_destroy_prepare(&sc);
  return outside < 0 ? DG_EIO : outside == 0;
}

int dg_service_update_changes(dg_app_t *app, dg_redis_xid_t id, int64_t offset, int64_t limit,
                              dg_audit_change_fn fn, void *arg, int64_t *total_out) {
  duckdb_connection c = dg_db_conn(app->db);
  if (c == NULL) return DG_EUNAVAIL;
  char sql[1024];
  duckdb_prepared_statement st = NULL, cnt = NULL;
  duckdb_result res, total;
  memset(&res, 0, sizeof res);
  memset(&total, 0, sizeof total);
  snprintf(sql, sizeof sql,
           "SELECT c.table_name, l.row_id, c.column_name, l.old_num, l.new_num, l.old_text, l.new_text, c.scale%s"
           " ORDER BY c.table_name, l.row_id, c.column_name LIMIT $3 OFFSET $4",
           dg_sql_update_changes_from);
  char csql[768];
  snprintf(csql, sizeof csql, "SELECT count(*)%s", dg_sql_update_changes_from);
  int ok = duckdb_prepare(c, sql, &st) == DuckDBSuccess && duckdb_prepare(c, csql, &cnt) == DuckDBSuccess;
  if (ok) {
    duckdb_bind_int64(st, 1, (int64_t)id.ms);
    duckdb_bind_int64(st, 2, (int64_t)id.seq);
    duckdb_bind_int64(st, 3, limit);
    duckdb_bind_int64(st, 4, offset);
    duckdb_bind_int64(cnt, 1, (int64_t)id.ms);
    duckdb_bind_int64(cnt, 2, (int64_t)id.seq);
    ok = duckdb_execute_prepared(cnt, &total) == DuckDBSuccess && duckdb_execute_prepared(st, &res) == DuckDBSuccess;
  }
  if (ok) {
    *total_out = duckdb_value_int64(&total, 0, 0);
    idx_t n = duckdb_row_count(&res);
    for (idx_t i = 0; i < n; i++) {
      char *tn = duckdb_value_varchar(&res, 0, i), *cn = duckdb_value_varchar(&res, 2, i);
      dg_audit_change_t ch;
      memset(&ch, 0, sizeof ch);
      ch.table = tn ? tn : "";
      ch.row_id = duckdb_value_int64(&res, 1, i);
      ch.column = cn ? cn : "";
      ch.scale = duckdb_value_int32(&res, 7, i);
      ch.numeric = !duckdb_value_is_null(&res, 4, i);
      idx_t oc = ch.numeric ? 3 : 5;
      ch.old_null = duckdb_value_is_null(&res, oc, i);
      ch.new_null = duckdb_value_is_null(&res, oc + 1, i);
      char *ot = NULL, *nt = NULL;
      if (ch.numeric) {
        if (!ch.old_null) ch.old_num = duckdb_value_int64(&res, oc, i);
        if (!ch.new_null) ch.new_num = duckdb_value_int64(&res, oc + 1, i);
      } else {
        if (!ch.old_null) ot = duckdb_value_varchar(&res, oc, i);
        if (!ch.new_null) nt = duckdb_value_varchar(&res, oc + 1, i);
        ch.old_text = ot ? ot : "";
        ch.new_text = nt ? nt : "";
      }
      fn(arg, &ch);
      duckdb_free(ot);
      duckdb_free(nt);
      duckdb_free(tn);
      duckdb_free(cn);
    }
  }
  duckdb_destroy_result(&res);
  duckdb_destroy_result(&total);
  if (st) duckdb_destroy_prepare(&st);
  if (cnt) duckdb_destroy_prepare(&cnt);
  return ok ? 0 : DG_EIO;
}
