/*
 * updates.c -- GET /get_updates: the seed's notification flow, read from the
 * response stream (app->streams.res, "response_duck").
 *
 *   GET /get_updates?since=<update id>|0|$&limit=100&wait_ms=0&table=
 *     -> {"updates":[update…],"next":"<update id>"}
 *
 * Every entry of the stream has one field, `res`, holding a complete update
 * object as JSON text. It is passed through byte for byte (never decoded and
 * re-encoded), so a client sees exactly what the manager published.
 *
 * Who does what. This file parses the parameters, serves from the hub's
 * ring, parks long polls on the event loop and writes the page; whatever
 * speaks Redis (XINFO, XREAD, the retention rule) or DuckDB (the audit log
 * behind /updates/{id}/changes) is the update service's
 * (service_updates.h, src/service/updates.c), which the "Redis path"
 * below names.
 *
 * Cursor. `since` names the last update the client has; it gets the ones
 * strictly after it, and `next` is the id to pass as `since` next time:
 *
 *   since omitted or 0   from the oldest retained entry
 *   since $              only entries newer than now: resolved first to the
 *                        stream's last-generated-id (XINFO STREAM), then read
 *                        after that
 *   since ms-seq         entries after that id
 *
 *   next = id of the last entry returned or scanned, or the resolved `since`
 *          when there was nothing.
 *
 * Gone (410). The stream is capped (XADD MAXLEN ~), so an old cursor may point
 * before what is retained, and the client must reload instead of silently
 * missing updates. Redis 7.0 does not record trimmed entries in
 * max-deleted-entry-id (DESIGN.md), so we decide from XINFO STREAM, read right
 * AFTER the XREAD in the same pipeline (trimming only moves the head forward,
 * so reading the head late can only err towards 410, never hide a gap):
 *
 *   gone  iff  since is an explicit id > 0-0
 *         and  something was trimmed: entries-added > length
 *              (or entries-added is unknown, on a Redis before 7.0)
 *         and  since < first retained id        (stream not empty)
 *              since < last-generated-id        (stream empty)
 *
 * The one imprecision: a cursor equal to the id just before the first
 * retained entry has missed nothing but is told 410; with only the head's id
 * we cannot prove it was the predecessor. Reloading is always correct.
 *
 * Two sources. The process's response reader appends every entry it reads,
 * in order, to the hub's ring of recent outcomes (hub.h). A request whose
 * cursor the ring covers -- since >= the ring's floor, so no entry after
 * since can be missing from it -- is served from memory:
 *
 *   ring read ──▶ something to answer ──────────────────────────────┐
 *       │ nothing yet: wait_ms = 0 ──▶ the Redis path (below)       │
 *       ▼                                                           ▼
 *   retention check (since=<id> only) ──▶ 410 as below ──▶ else answer
 *       │ nothing yet, wait_ms > 0
 *       ▼
 *   wait on the ring's condition variable (no Redis, no polling) until a
 *   newer entry, the deadline or shutdown; read again; loop
 *
 * A thousand long polls thus cost one XREAD (the reader's) instead of a
 * thousand blocked Redis clients each woken for every entry. Under the HTTP
 * front end a waiting poll is parked on its event loop, not on the
 * condition variable, and when the reader's batch wakes it the loop itself
 * looks at the ring (updates_try): the parked polls of one wake-up that ask
 * the same thing share one rendered page. Under the
 * ring's lock a request only takes references to its entries; it writes its
 * page after letting the lock go, once, at its exact size, into the buffer
 * the response sends (reply_hits), so the reader is not kept from appending
 * by a thousand copies. The ring may
 * lag Redis by a moment, which a long poll does not notice (it waits for the
 * reader) but a poll with wait_ms=0 that finds nothing new might: that one
 * reads Redis, so a client that wrote asynchronously and polls at once still
 * sees what Redis has. A cursor the ring does not cover (since=0, older than
 * the ring, or before the reader started) takes the Redis path, and so does
 * a long poll whose cursor the ring's eviction overtakes while it waits.
 *
 * The retention check keeps 410 exactly as on the Redis path even when the
 * stream is trimmed behind the ring's back (XTRIM by hand): an XINFO STREAM
 * that Redis ran after the ring was read, judged by the same rule. It is
 * shared: concurrent requests wait for one XINFO that began after they
 * arrived (dg_hub_shared_run), so a thousand polls cost a handful of XINFOs.
 * It also covers an entry the reader missed because it was trimmed before
 * the reader got to it: trimming goes from the head, so such an entry after
 * since means since is before the first retained entry, which is a 410.
 *
 * Long poll on the Redis path. With wait_ms > 0 and nothing to return, the
 * request blocks in XREAD BLOCK (server-side, no polling loop) until an
 * entry arrives or the time is up. The block is taken in slices of
 * BLOCK_SLICE_MS so a server shutting down is not held up by idle long
 * polls for 30 s. A wait on the ring ends at once on shutdown.
 *
 * Table filter. With table=<name>, an update is kept when its top-level
 * "table" is that name or any of its "changes" has that "table" (jansson
 * parses each entry, for the decision only; the text sent is the original).
 * The read continues past non-matching entries until `limit` matches, the
 * end of the stream, or DG_UPDATES_SCAN_MAX entries scanned; `next` then still advances
 * past everything scanned, so the client never scans the same entries twice.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/hub.h"
#include "dg/jsonw.h"
#include "dg/metrics.h"
#include "dg/redis.h" /* dg_redis_xid_*: the update-id format, no connection */
#include "dg/service_updates.h"

/* Updates per response unless the client asks otherwise. */
#define LIMIT_DEFAULT 100
/* Most updates per response: bounds the reply held in memory. */
#define LIMIT_MAX 10000
/* Longest long poll; proxies commonly cut idle requests at 60 s. */
#define WAIT_MAX_MS 30000
/* Bytes of update text one page holds at most: DUCKGRID_PAGE_BYTES (plus
 * the one update that crosses the line, so a page always moves the
 * cursor): a limit of 10,000 large outcomes must not build a response of
 * gigabytes. The client pages on with `next`. */
/* Ring matches a request keeps on its stack: the default limit (100) fits,
 * in 1 KiB; a bigger limit allocates its array. */
#define HITS_LOCAL 128


/* ======================================================================= */
/* Parameters                                                                */
/* ======================================================================= */

/* Plain decimal in 0..max (no sign, no leading zeros). 0 or DG_EINVAL. */
static int parse_bounded(const char *s, int64_t max, int64_t *out) {
  if (s == NULL || *s < '0' || *s > '9' || (s[0] == '0' && s[1] != '\0')) return DG_EINVAL;
  int64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return DG_EINVAL;
    v = v * 10 + (*p - '0');
    if (v > max) return DG_EINVAL;
  }
  *out = v;
  return 0;
}

typedef enum { SINCE_OLDEST, SINCE_NOW, SINCE_ID } since_kind_t;

typedef struct {
  since_kind_t since_kind;
  dg_redis_xid_t since; /* SINCE_ID: the cursor                     */
  int64_t limit;        /* 1..LIMIT_MAX                             */
  int64_t wait_ms;      /* 0..WAIT_MAX_MS                           */
  const char *table;    /* filter, or NULL (borrowed from the query) */
  const char *scope;    /* a scoped key's ",a,b,", or NULL (borrowed) */
  int filtering;        /* table or scope: entries may be skipped     */
} params_t;

static int params_or_problem(dg_req_t *r, params_t *p) {
  memset(p, 0, sizeof *p);
  const char *s = dg_query(r, "limit");
  p->limit = LIMIT_DEFAULT;
  if (s && (parse_bounded(s, LIMIT_MAX, &p->limit) != 0 || p->limit < 1)) {
    dg_problem(r, 400, NULL, "limit must be an integer from 1 to %d", LIMIT_MAX);
    return DG_EINVAL;
  }
  s = dg_query(r, "wait_ms");
  if (s && parse_bounded(s, WAIT_MAX_MS, &p->wait_ms) != 0) {
    dg_problem(r, 400, NULL, "wait_ms must be an integer from 0 to %d", WAIT_MAX_MS);
    return DG_EINVAL;
  }
  p->table = dg_query(r, "table");
  if (p->table && *p->table == '\0') p->table = NULL; /* table= means no filter */
  if (p->table && !dg_name_valid(p->table)) {
    dg_problem(r, 400, NULL, "'%.80s' is not a valid table name", p->table);
    return DG_EINVAL;
  }
  /* A key limited to some tables sees only the updates within them. */
  p->scope = r->who.tables[0] ? r->who.tables : NULL;
  if (p->table && !dg_principal_can(&r->who, p->table)) {
    dg_problem(r, 403, NULL, "this key is limited to other tables than '%s'", p->table);
    return DG_EINVAL;
  }
  p->filtering = p->table != NULL || p->scope != NULL;
  s = dg_query(r, "since");
  if (s == NULL || *s == '\0' || strcmp(s, "0") == 0) {
    p->since_kind = SINCE_OLDEST;
  } else if (strcmp(s, "$") == 0) {
    p->since_kind = SINCE_NOW;
  } else if (dg_redis_xid_parse(s, strlen(s), &p->since) == 0) {
    p->since_kind = p->since.ms == 0 && p->since.seq == 0 ? SINCE_OLDEST : SINCE_ID;
  } else {
    dg_problem(r, 400, NULL,
               "since must be an update id like \"1732870000000-0\", 0 or $; got '%.60s'", s);
    return DG_EINVAL;
  }
  return 0;
}

/* ======================================================================= */
/* Retention                                                                 */
/* ======================================================================= */

/* The retention rule (dg_service_stream_gone) for an explicit cursor. */
static int is_gone(const params_t *p, const dg_stream_state_t *x) {
  return p->since_kind == SINCE_ID && dg_service_stream_gone(x, p->since);
}

/* ======================================================================= */
/* Reading                                                                   */
/* ======================================================================= */

typedef struct {
  dg_req_t *r;
  const params_t *p;
  dg_redis_xid_t cursor;  /* last entry consumed (or the resolved since) */
  dg_jsonw_t w;           /* writes into body (the Redis path)           */
  dg_buf_t body;
  int64_t matched;        /* updates held in hits (the ring path)        */
  int64_t scanned;        /* entries consumed (the ring path)            */
  const dg_event_t **hits; /* the ring's matches, referenced (room for
                            * limit); dg_ring_release them              */
  size_t nhits;
  int need_check;         /* the retention check is still to be made     */
} scan_t;

/* An update the read service hands on (the Redis path): into the page as
 * it is; a page past DUCKGRID_PAGE_BYTES ends after it. */
static int update_written(void *arg, const char *text, size_t len) {
  scan_t *s = arg;
  dg_jsonw_raw(&s->w, text, len);
  return s->body.len >= s->r->app->cfg->page_bytes;
}

/* The 410 answer for a cursor that is_gone() condemned. */
static void gone_problem(dg_req_t *r, const params_t *p, const dg_stream_state_t *x) {
  char idbuf[DG_REDIS_XID_BUFSZ], firstbuf[DG_REDIS_XID_BUFSZ];
  dg_redis_xid_format(p->since, idbuf, sizeof idbuf);
  dg_redis_xid_format(x->length > 0 ? x->first : x->last, firstbuf, sizeof firstbuf);
  json_t *extra = json_pack("{s:s?}", "oldest", x->length > 0 ? firstbuf : NULL);
  dg_problem(r, 410, extra,
             "updates after %s are no longer retained (oldest is %s); reload the tables "
             "and continue from since=$",
             idbuf, x->length > 0 ? firstbuf : "none");
}

/* ======================================================================= */
/* The ring path                                                             */
/* ======================================================================= */

/* XINFO STREAM for dg_hub_shared_run: result is a dg_stream_state_t. */
static int xinfo_run(void *arg, void *result) { return dg_service_stream_state(arg, result); }

/* Is the page complete? The same stopping points as scan(): unfiltered, any
 * entry (one batch is the answer); filtered, the first match or the scan
 * budget; either, the limit. */
static int ring_done(const params_t *p, const dg_ring_read_t *rd) {
  return rd->matched > 0 || (!p->filtering && rd->scanned > 0) || rd->scanned >= rd->scan_max;
}

/* Outcome of serve_from_ring. */
enum { RING_ANSWERED = 0, RING_FALLBACK = 1, RING_CONTINUE = 2, RING_DEFERRED = 3 };

static int updates_try(dg_req_t *r, dg_defer_pass_t *pass);

/* What a parked long poll keeps across its runs (r->defer_state). */
typedef struct {
  dg_redis_xid_t cursor;  /* resolved: `$` or the id, moved past what was scanned */
  uint64_t ticket;        /* !checked: the shared XINFO it waits for          */
  int checked;            /* the retention check passed (or was not needed)   */
} parked_t;

/*
 * Serves the request from the ring when it covers s->cursor (see the header
 * comment). RING_ANSWERED: s->hits holds the page (or *rc an error, after
 * which nothing is written unless it is DG_EGONE, whose problem is written).
 * RING_FALLBACK: nothing was consumed; the Redis path starts afresh.
 * RING_CONTINUE: the ring's eviction overtook the cursor while waiting;
 * s->cursor/scanned/matched/hits hold the progress and *wait_left the time
 * left, for the Redis path to carry on from (the retention check has been
 * made). In every case s->hits[0 .. s->nhits) are the caller's to release.
 */
static int serve_from_ring(scan_t *s, int *rc, int64_t *wait_left) {
  const params_t *p = s->p;
  dg_app_t *app = s->r->app;
  dg_ring_read_t rd;
  memset(&rd, 0, sizeof rd);
  rd.cursor = s->cursor;
  rd.table = p->table;
  rd.scope = p->scope;
  rd.limit = (size_t)p->limit;
  rd.scan_max = p->filtering ? DG_UPDATES_SCAN_MAX : (size_t)p->limit;
  rd.any_entry = !p->filtering; /* ring_done's rule */
  rd.max_bytes = app->cfg->page_bytes;
  rd.out = s->hits;
  *rc = 0;
  int64_t deadline = (dg_mono_us() / 1000) + p->wait_ms;
  /* Before the look: an append after it moves the generation, so parking
   * cannot miss it (dg_req_defer). */
  s->r->defer_gen = dg_req_wake_gen();
  if (dg_ring_read(app->hub, &rd, NULL) != DG_RING_COVERED) return RING_FALLBACK;
  if (!ring_done(p, &rd) && p->wait_ms == 0) {
    /* Nothing in the ring, but the reader may not have read what Redis
     * already holds (an asynchronous write answered a moment ago). Only
     * non-matching entries can have been scanned, so nothing is held. */
    DG_ASSERT(rd.matched == 0);
    return RING_FALLBACK;
  }
  s->nhits = rd.matched;
  if (s->need_check) {
    /* After the ring read, as the Redis path reads XINFO after XREAD (once:
     * a parked poll's later runs carry on from a checked cursor). */
    dg_stream_state_t x;
    *rc = dg_hub_shared_run(app->hub, xinfo_run, app, &x, sizeof x);
    if (*rc == 0 && is_gone(p, &x)) {
      gone_problem(s->r, p, &x);
      *rc = DG_EGONE;
    }
    if (*rc != 0) return RING_ANSWERED;
  }
  int out = RING_ANSWERED;
  if (!ring_done(p, &rd) && s->r->can_defer && !s->r->defer_expired) {
    /* Nothing yet: parked on the event loop, no thread waits; the handler
     * runs again after the reader's next batch or at the deadline. Only
     * non-matching entries were scanned, so nothing is held. */
    DG_ASSERT(rd.matched == 0);
    parked_t k = {rd.cursor, 0, 1};
    memcpy(s->r->defer_state, &k, sizeof k);
    dg_req_defer(s->r, deadline);
    s->r->defer_try = updates_try;
    return RING_DEFERRED;
  }
  if (!ring_done(p, &rd) && !s->r->defer_expired) {
    /* Waits on the ring for the reader's next batches; time up or shutdown
     * answer with what there is. */
    struct timespec until;
    dg_deadline_after_ms(&until, (int)p->wait_ms);
    if (dg_ring_read(app->hub, &rd, &until) == DG_RING_NOT_COVERED) {
      *wait_left = deadline - (dg_mono_us() / 1000);
      out = RING_CONTINUE;
    }
  }
  s->cursor = rd.cursor;
  s->scanned = (int64_t)rd.scanned;
  s->matched = (int64_t)rd.matched;
  s->nhits = rd.matched;
  return out;
}

/* The prefix, separator and suffix dg_jsonw writes around the page of the
 * Redis path; reply_hits writes the same bytes without it. */
#define PAGE_OPEN "{\"updates\":["
#define PAGE_NEXT "],\"next\":\""
#define PAGE_CLOSE "\"}"

/* The page of the ring's matches hits[0 .. n) with `next` = cursor: its
 * exact size, then the bytes. The texts are read without the ring's lock;
 * the references keep them alive even if the ring has evicted them since. */
static size_t page_size(const dg_event_t *const *hits, size_t n, const char *idbuf) {
  size_t size = sizeof PAGE_OPEN - 1 + sizeof PAGE_NEXT - 1 + strlen(idbuf) + sizeof PAGE_CLOSE - 1;
  for (size_t i = 0; i < n; i++) size += hits[i]->len + (i > 0);
  return size;
}

static void page_write(char *body, size_t size, const dg_event_t *const *hits, size_t n, const char *idbuf) {
  size_t idlen = strlen(idbuf); /* digits and '-': nothing to escape */
  char *p = body;
  memcpy(p, PAGE_OPEN, sizeof PAGE_OPEN - 1);
  p += sizeof PAGE_OPEN - 1;
  for (size_t i = 0; i < n; i++) {
    if (i > 0) *p++ = ',';
    memcpy(p, hits[i]->res, hits[i]->len);
    p += hits[i]->len;
  }
  memcpy(p, PAGE_NEXT, sizeof PAGE_NEXT - 1);
  p += sizeof PAGE_NEXT - 1;
  memcpy(p, idbuf, idlen);
  p += idlen;
  memcpy(p, PAGE_CLOSE, sizeof PAGE_CLOSE - 1);
  p += sizeof PAGE_CLOSE - 1;
  DG_ASSERT((size_t)(p - body) == size);
  (void)size;
}

/*
 * Answers with the ring's matches: the exact size first, then one buffer,
 * written once and handed to the response without another copy
 * (dg_reply_body_alloc).
 */
static void reply_hits(dg_req_t *r, const scan_t *s) {
  char idbuf[DG_REDIS_XID_BUFSZ];
  dg_redis_xid_format(s->cursor, idbuf, sizeof idbuf);
  size_t size = page_size(s->hits, s->nhits, idbuf);
  char *body = dg_reply_body_alloc(r, 200, size);
  if (body == NULL) {
    dg_problem(r, 503, NULL, "out of memory for a page of %zu bytes", size);
    return;
  }
  page_write(body, size, s->hits, s->nhits, idbuf);
}

/*
 * A parked long poll woken by the ring, on its loop (http.h, defer_try):
 * the same look as a rerun's serve_from_ring, without blocking. Every poll
 * of one wake-up at the same cursor with the same filter, scope and limit
 * gets the same page, so the pass renders it once and the polls share it
 * (dg_reply_shared): a thousand long polls at one cursor cost one page
 * and one ring read per batch, not a thousand. A page made a moment ago
 * for the same cursor is what this poll's own read would have answered
 * then; what came since is the next poll's. Anything else (the ring no
 * longer covers the cursor, the deadline) goes to a worker as before.
 */

/* Pages one pass keeps: the distinct (cursor, filter, scope, limit) of the
 * polls of one wake-up, in practice one or a few. */
#define PASS_PAGES 16

typedef struct {
  dg_redis_xid_t cursor;
  int64_t limit;
  char *table;            /* NULL: none */
  char *scope;            /* NULL: none */
  dg_shared_body_t *body;
} pass_page_t;

typedef struct {
  size_t n;
  pass_page_t pages[PASS_PAGES];
} pass_pages_t;

static void pass_free(void *items) {
  pass_pages_t *pp = items;
  for (size_t i = 0; i < pp->n; i++) {
    dg_free(pp->pages[i].table);
    dg_free(pp->pages[i].scope);
    dg_shared_body_unref(pp->pages[i].body);
  }
  dg_free(pp);
}

static int same_str(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static int updates_try(dg_req_t *r, dg_defer_pass_t *pass) {
  params_t p;
  if (params_or_problem(r, &p) != 0) return DG_TRY_ANSWERED; /* passed at the first run */
  parked_t k;
  memcpy(&k, r->defer_state, sizeof k);
  if (!k.checked) {
    /* Parked by the loop (get_updates_loop) until the shared XINFO that
     * began after it arrived: the retention check, then the look below. */
    r->defer_gen = dg_req_wake_gen(); /* before the look: the serve's hook runs after the result */
    dg_stream_state_t x;
    int rc = 0;
    if (!dg_hub_shared_result(r->app->hub, k.ticket, &rc, &x, sizeof x)) return DG_TRY_PARKED;
    if (rc != 0) return DG_TRY_WORKER; /* its run checks again, and answers the 503 */
    if (is_gone(&p, &x)) {
      gone_problem(r, &p, &x);
      return DG_TRY_ANSWERED;
    }
    k.checked = 1;
    memcpy(r->defer_state, &k, sizeof k);
  }
  pass_pages_t *pp = pass->items;
  if (pp) {
    for (size_t i = 0; i < pp->n; i++) {
      pass_page_t *g = &pp->pages[i];
      if (dg_redis_xid_cmp(g->cursor, k.cursor) == 0 && g->limit == p.limit && same_str(g->table, p.table) &&
          same_str(g->scope, p.scope)) {
        dg_reply_shared(r, 200, g->body);
        return DG_TRY_ANSWERED;
      }
    }
  }
  const dg_event_t *hits_local[HITS_LOCAL];
  dg_ring_read_t rd;
  memset(&rd, 0, sizeof rd);
  rd.cursor = k.cursor;
  rd.table = p.table;
  rd.scope = p.scope;
  rd.limit = (size_t)p.limit;
  rd.scan_max = p.filtering ? DG_UPDATES_SCAN_MAX : (size_t)p.limit;
  rd.any_entry = !p.filtering;
  rd.max_bytes = r->app->cfg->page_bytes;
  rd.out = p.limit <= HITS_LOCAL ? hits_local : dg_malloc((size_t)p.limit * sizeof *rd.out);
  /* Before the look, as serve_from_ring: an append after it moves the
   * generation, and the front end looks again. */
  r->defer_gen = dg_req_wake_gen();
  int out;
  if (dg_ring_read(r->app->hub, &rd, NULL) != DG_RING_COVERED) {
    out = DG_TRY_WORKER; /* the Redis path, on a worker */
  } else if (!ring_done(&p, &rd)) {
    /* Only entries that did not match were scanned: the cursor moves past
     * them, as a parked poll's would. */
    DG_ASSERT(rd.matched == 0);
    k.cursor = rd.cursor;
    memcpy(r->defer_state, &k, sizeof k);
    out = DG_TRY_PARKED;
  } else {
    char idbuf[DG_REDIS_XID_BUFSZ];
    dg_redis_xid_format(rd.cursor, idbuf, sizeof idbuf);
    size_t size = page_size(rd.out, rd.matched, idbuf);
    dg_shared_body_t *b = dg_shared_body_new(size);
    page_write(b->data, size, rd.out, rd.matched, idbuf);
    dg_reply_shared(r, 200, b);
    if (pp == NULL) {
      pp = dg_calloc(1, sizeof *pp);
      pass->items = pp;
      pass->free = pass_free;
    }
    if (pp->n < PASS_PAGES) {
      pass_page_t *g = &pp->pages[pp->n++];
      g->cursor = k.cursor;
      g->limit = p.limit;
      g->table = p.table ? dg_strdup(p.table) : NULL;
      g->scope = p.scope ? dg_strdup(p.scope) : NULL;
      g->body = b; /* the pass's reference */
    } else {
      dg_shared_body_unref(b);
    }
    out = DG_TRY_ANSWERED;
  }
  dg_ring_release(rd.out, rd.matched);
  if (rd.out != hits_local) dg_free((void *)rd.out);
  return out;
}

/* ======================================================================= */
/* The route                                                                 */
/* ======================================================================= */

static int get_updates(dg_req_t *r) {
  params_t p;
  if (params_or_problem(r, &p) != 0) return 0;
  dg_app_t *app = r->app;
  scan_t s;
  memset(&s, 0, sizeof s);
  s.r = r;
  s.p = &p;
  dg_buf_init(&s.body);
  dg_jsonw_init(&s.w, &s.body);
  const dg_event_t *hits_local[HITS_LOCAL];

  char idbuf[DG_REDIS_XID_BUFSZ];
  int rc = 0;
  s.need_check = p.since_kind == SINCE_ID;
  if (r->defer_runs == 0 && p.wait_ms > 0) dg_metrics_long_poll(app->metrics, 0);
  if (r->defer_runs > 0) {
    /* A parked poll run again: from its cursor (resolved and checked on the
     * first run, unless the loop parked it before its check), for the time
     * left. */
    parked_t k;
    memcpy(&k, r->defer_state, sizeof k);
    s.need_check = !k.checked;
    p.since = k.cursor;
    p.since_kind = SINCE_ID;
    int64_t left = r->defer_deadline_ms - dg_mono_us() / 1000;
    p.wait_ms = left > 0 && !r->defer_expired ? left : 0;
  }
  if (p.since_kind == SINCE_NOW) {
    /* Resolve `$` to the stream's last id; then as any other cursor. */
    dg_stream_state_t x;
    rc = dg_service_stream_state(app, &x);
    if (rc == 0) s.cursor = x.last;
  } else if (p.since_kind == SINCE_ID) {
    s.cursor = p.since;
  }

  /* The ring first; the Redis path when it cannot serve. */
  int path = RING_FALLBACK;
  int64_t wait_ms = p.wait_ms; /* what the Redis path carries on with */
  if (rc == 0 && p.since_kind != SINCE_OLDEST) {
    int64_t left = 0;
    s.hits = p.limit <= HITS_LOCAL ? hits_local : dg_malloc((size_t)p.limit * sizeof *s.hits);
    path = serve_from_ring(&s, &rc, &left);
    if (path == RING_CONTINUE) wait_ms = left > 0 ? left : 0;
    if (path == RING_DEFERRED) {
      if (s.hits != hits_local) dg_free(s.hits);
      dg_buf_dispose(&s.body);
      return 0;
    }
  }

  if (rc == 0 && path != RING_ANSWERED) {
    dg_jsonw_obj(&s.w);
    dg_jsonw_key(&s.w, "updates");
    dg_jsonw_arr(&s.w);
    /* What the ring matched before its eviction overtook the cursor comes
     * first (in practice nothing: a wait starts only before the first match). */
    for (size_t i = 0; i < s.nhits; i++) dg_jsonw_raw(&s.w, s.hits[i]->res, s.hits[i]->len);
    dg_updates_read_t q;
    memset(&q, 0, sizeof q);
    q.cursor = s.cursor;
    q.table = p.table;
    q.scope = p.scope;
    q.limit = p.limit;
    q.wait_ms = wait_ms;
    /* A cursor the ring did not look at: check 410 with the first batch. */
    q.check_gone = path == RING_FALLBACK && p.since_kind == SINCE_ID;
    q.matched = s.matched;
    q.scanned = s.scanned;
    rc = dg_service_updates_read(app, &q, update_written, &s);
    if (rc == DG_EGONE) gone_problem(r, &p, &q.state);
    s.cursor = q.cursor;
  }

  if (rc == 0 && path == RING_ANSWERED) {
    reply_hits(r, &s);
  } else if (rc == 0) {
    dg_jsonw_end(&s.w);
    dg_jsonw_key(&s.w, "next");
    dg_redis_xid_format(s.cursor, idbuf, sizeof idbuf);
    dg_jsonw_str(&s.w, idbuf);
    dg_jsonw_end(&s.w);
    dg_reply_buf(r, 200, &s.body);
  } else if (rc == DG_EINTERNAL) {
    dg_problem(r, 500, NULL, "reading the update stream failed");
  } else if (rc != DG_EGONE) {
    dg_problem(r, 503, NULL, "the update stream is unavailable (redis: %s)", dg_strerror(rc));
  }
  dg_ring_release(s.hits, s.nhits);
  if (s.hits != hits_local) dg_free(s.hits);
  dg_buf_dispose(&s.body);
  return 0;
}


/* The shared XINFO the loop's polls wait for, on a worker. */
static void xinfo_serve(void *arg) {
  dg_app_t *app = arg;
  dg_hub_shared_serve(app->hub, xinfo_run, app, sizeof(dg_stream_state_t));
}

/*
 * A new long poll on its loop (dg_http_dispatch_loop), the common case of a
 * client that polls again with the `next` it was given: a cursor the ring
 * covers, wait_ms > 0. It needs the retention check (an XINFO that begins
 * after it arrived) before anything is answered, which blocks; instead of a
 * worker each, the polls of a moment ask for one shared XINFO
 * (dg_hub_shared_ask), which one worker runs, and wait parked on the loop.
 * The serve's hook wakes the loops; updates_try then makes the check and
 * looks at the ring as for any parked poll. Whatever else (since=0 or $, a
 * cursor the ring does not cover, wait_ms=0) goes to a worker as before.
 * After the check a poll is answered from the ring as a parked poll is: the
 * same rule as get_updates, whose check is made once and whose later
 * looks carry on from the checked cursor.
 */
static int get_updates_loop(dg_req_t *r) {
  params_t p;
  if (params_or_problem(r, &p) != 0) return 1; /* its 400 or 403 answered */
  if (p.since_kind != SINCE_ID || p.wait_ms == 0 || !r->can_defer) return 0;
  if (!dg_ring_covers(r->app->hub, p.since)) return 0;
  r->defer_gen = dg_req_wake_gen(); /* before the ask: the serve's hook moves it */
  int serve = 0;
  parked_t k = {p.since, dg_hub_shared_ask(r->app->hub, &serve), 0};
  if (serve) dg_http_submit(xinfo_serve, r->app);
  memcpy(r->defer_state, &k, sizeof k);
  dg_req_defer(r, dg_mono_us() / 1000 + p.wait_ms);
  r->defer_try = updates_try;
  dg_metrics_long_poll(r->app->metrics, 1);
  return 1;
}

/* ======================================================================= */
/* GET /updates/{update_id}/changes: a compact outcome's full list           */
/* ======================================================================= */

/* Changes per page unless the client asks otherwise, and at most. */
#define CHANGES_LIMIT_DEFAULT 1000
#define CHANGES_LIMIT_MAX 10000
/* How long it waits for DuckDB to hold the update (it is written behind). */
#define CHANGES_WAIT_MS 5000

/* One change of the page: {"table","row_id","column","old","new"}. */
static void change_written(void *arg, const dg_audit_change_t *c) {
  dg_jsonw_t *w = arg;
  dg_jsonw_obj(w);
  dg_jsonw_key(w, "table");
  dg_jsonw_str(w, c->table);
  dg_jsonw_key(w, "row_id");
  dg_jsonw_id(w, c->row_id);
  dg_jsonw_key(w, "column");
  dg_jsonw_str(w, c->column);
  for (int k = 0; k < 2; k++) {
    dg_jsonw_key(w, k ? "new" : "old");
    if (k ? c->new_null : c->old_null) dg_jsonw_null(w);
    else if (c->numeric) dg_jsonw_dec(w, k ? c->new_num : c->old_num, c->scale);
    else dg_jsonw_str(w, k ? c->new_text : c->old_text);
  }
  dg_jsonw_end(w);
}

/* Counts the changes written (for "next") as it writes them. */
typedef struct {
  dg_jsonw_t *w;
  int64_t n;
} changes_out_t;

static void change_counted(void *arg, const dg_audit_change_t *c) {
  changes_out_t *o = arg;
  change_written(o->w, c);
  o->n++;
}

/* The cell changes of one update from the audit log, in (table, row_id,
 * column) order, a page at a time: {"update_id","changes":[…],
 * "changes_total":N,"next":offset|null}. Row records (insert, delete, move)
 * and holds are not cell changes and are left out, as in outcomes. */
static int update_changes(dg_req_t *r) {
  dg_app_t *app = r->app;
  dg_redis_xid_t id;
  const char *uid = r->params[0];
  if (uid == NULL || dg_redis_xid_parse(uid, strlen(uid), &id) != 0) {
    dg_problem(r, 400, NULL, "'%.60s' is not an update id", uid ? uid : "");
    return 0;
  }
  int64_t offset = 0, limit = CHANGES_LIMIT_DEFAULT;
  const char *s = dg_query(r, "offset");
  if (s && parse_bounded(s, INT32_MAX, &offset) != 0) {
    dg_problem(r, 400, NULL, "offset must be a non-negative integer");
    return 0;
  }
  s = dg_query(r, "limit");
  if (s && (parse_bounded(s, CHANGES_LIMIT_MAX, &limit) != 0 || limit < 1)) {
    dg_problem(r, 400, NULL, "limit must be an integer from 1 to %d", CHANGES_LIMIT_MAX);
    return 0;
  }
  dg_service_await_update(app, id, CHANGES_WAIT_MS); /* not there yet: the answer says so below */
  if (r->who.tables[0] != '\0') {
    /* A scoped key sees an update's changes only when they are all within
     * its tables, as with its events. */
    int in = dg_service_update_in_scope(app, id, r->who.tables);
    if (in != 1) {
      if (in == DG_EUNAVAIL) dg_problem(r, 503, NULL, "the database is unavailable");
      else if (in < 0) dg_problem(r, 503, NULL, "the audit log cannot be read");
      else dg_problem(r, 403, NULL, "update %s also changes tables outside this key's scope", uid);
      return 0;
    }
  }
  dg_buf_t buf;
  dg_buf_init(&buf);
  dg_jsonw_t w;
  dg_jsonw_init(&w, &buf);
  dg_jsonw_obj(&w);
  dg_jsonw_key(&w, "update_id");
  dg_jsonw_str(&w, uid);
  dg_jsonw_key(&w, "changes");
  dg_jsonw_arr(&w);
  changes_out_t o = {&w, 0};
  int64_t n_total = 0;
  int rc = dg_service_update_changes(app, id, offset, limit, change_counted, &o, &n_total);
  if (rc == DG_EUNAVAIL) {
    dg_problem(r, 503, NULL, "the database is unavailable");
  } else if (rc != 0) {
    dg_problem(r, 503, NULL, "the audit log cannot be read");
  } else if (n_total == 0) {
    dg_problem(r, 404, NULL, "update %s has no cell changes on this node", uid);
  } else {
    dg_jsonw_end(&w);
    dg_jsonw_key(&w, "changes_total");
    dg_jsonw_int(&w, n_total);
    dg_jsonw_key(&w, "next");
    if (offset + o.n < n_total) dg_jsonw_int(&w, offset + o.n);
    else dg_jsonw_null(&w);
    dg_jsonw_end(&w);
    dg_reply_buf(r, 200, &buf);
  }
  dg_buf_dispose(&buf);
  return 0;
}

const dg_route_t dg_routes_updates[] = {
    {"GET", "/get_updates", DG_ROLE_READ, get_updates, 0, get_updates_loop},
    {"GET", "/updates/:update_id/changes", DG_ROLE_READ, update_changes, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
