/*
 * events.c -- GET /events: the update objects of get_updates as
 * Server-Sent Events.
 *
 *   id: <update id>
 *   event: update
 *   data: <update object>
 *
 * Resume with Last-Event-ID (or ?since=): the stream first replays what
 * response_duck holds after that id (XRANGE), then follows live outcomes
 * from the hub. The subscription is made *before* the replay is read, and
 * live events at or below the last replayed id are skipped, so nothing falls
 * in the gap and nothing comes twice. A comment line every 15 s keeps
 * proxies and clients from timing out (DUCKGRID_HEARTBEAT_MS). When the resume point is older than
 * what is retained: `event: gone` and the stream ends (the client reloads).
 * A client that falls more than DUCKGRID_CLIENT_BUFFER bytes behind gets `event: dropped`
 * with the reason and the stream ends; it can resume with Last-Event-ID.
 *
 * Redis (the gone check, the replay's XRANGE pages, the newest id) is the
 * update service's (service_updates.h); this file keeps the stream's state,
 * the filters, the SSE text and the hub subscription.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dg/alive.h"
#include "dg/buf.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/hub.h"
#include "dg/wire.h"
#include "dg/redis.h" /* dg_redis_xid_*: the update-id format, no connection */
#include "dg/service_updates.h"

/* Entries replayed per XRANGE round trip: one page is all a replay holds
 * in memory, fetched when the client has taken the previous one. Outcomes
 * can be large (a 1 MiB text cell, a long id list), so the count adapts to
 * the sizes just read: about REPLAY_PAGE_BYTES a page, between 1 and
 * REPLAY_PAGE_MAX entries, starting at REPLAY_PAGE_FIRST. */
#define REPLAY_PAGE_MAX 100
#define REPLAY_PAGE_FIRST 10
#define REPLAY_PAGE_BYTES ((size_t)1 << 20)

typedef struct {
  dg_app_t *app;
  dg_sub_t *sub;
  char table[DG_NAME_MAX + 1];   /* "" = every table */
  dg_buf_t out;                  /* bytes ready to send */
  size_t sent;                   /* of out */
  dg_redis_xid_t last;           /* last id sent (replay or live) */
  int ended;
  int replaying;                 /* pages of response_duck still to send */
  size_t replay_entries;         /* sent (scanned) by the replay so far  */
  size_t replay_bytes;           /* sent, plus what ?table= passed over  */
  size_t page_count;             /* entries the next XRANGE asks for     */
  dg_principal_t who;            /* the caller, checked again every second */
  int64_t alive_ms;              /* monotonic ms of the last check         */
  int64_t beat_ms;               /* monotonic ms of the last heartbeat/event */
} sse_t;

/* Revocation reaches the stream: at most a second after the caller's key
 * is deleted or its token expires, the stream ends with `event: revoked`. */
static int still_allowed(sse_t *s) {
  int64_t now = dg_mono_us() / 1000;
  if (now - s->alive_ms < 1000) return 1;
  s->alive_ms = now;
  char why[120];
  if (dg_alive_peek(s->app->alive, &s->who, why, sizeof why) == 0) return 1;
  dg_buf_printf(&s->out, "event: revoked\ndata: {\"status\":401,\"code\":\"unauthorized\",\"reason\":\"%s\"}\n\n",
                why);
  s->ended = 1;
  return 0;
}

static int replay_page(sse_t *s);

static void sse_event(sse_t *s, const char *id, const char *res, size_t len) {
  dg_buf_printf(&s->out, "id: %s\nevent: update\ndata: ", id);
  dg_buf_append(&s->out, res, len);
  dg_buf_puts(&s->out, "\n\n");
}

/* Does the update concern table? Its own "table" or any change's. */
static int table_matches(const char *table, const char *res, size_t len) {
  if (table[0] == '\0') return 1;
  return dg_wire_out_concerns(res, len, table);
}

/* Pulled by the event loop (can_block 0), or once on a worker (can_block
 * 1) when a replay page must be read from Redis. Never waits for events:
 * the hub's notify wakes the stream (sse_attach), and the loop's tick calls
 * again every second for the revocation check and the heartbeat. */
static ssize_t sse_read(void *arg, char *buf, size_t max, int can_block) {
  sse_t *s = arg;
  int dry = 0; /* the hub has nothing more right now */
  for (;;) {
    /* Live events queued for this client go out together, up to max bytes
     * a read (one send for many events when the client is behind), not
     * one send and one trip through the loop each. */
    size_t pending = s->out.len - s->sent;
    if (pending > 0 && (dry || pending >= max || s->ended || s->replaying)) {
      size_t n = pending;
      if (n > max) n = max;
      memcpy(buf, s->out.data + s->sent, n);
      s->sent += n;
      if (s->sent == s->out.len) {
        dg_buf_reset(&s->out);
        s->sent = 0;
      }
      return (ssize_t)n;
    }
    if (s->ended) return DG_STREAM_END;
    if (!still_allowed(s)) continue;
    if (s->replaying) {
      if (!can_block) return DG_STREAM_BLOCK;
      /* The next page only once the client took the last: the backlog is
       * never held here, however far behind the client resumes. */
      if (replay_page(s) != 0) {
        dg_buf_puts(&s->out, "event: unavailable\ndata: {\"reason\":\"the update stream (Redis) is "
                             "unavailable; resume with Last-Event-ID\"}\n\n");
        s->ended = 1;
      }
      continue;
    }
    dg_event_t *ev = NULL;
    int rc = dg_sub_next(s->app->hub, s->sub, 0, &ev);
    if (rc == DG_HUB_TIMEOUT && pending > 0) { /* what was taken goes now */
      dry = 1;
      continue;
    }
    if (rc == DG_HUB_TIMEOUT && dg_mono_us() / 1000 - s->beat_ms < s->app->cfg->heartbeat_ms) return 0;
    s->beat_ms = dg_mono_us() / 1000;
    if (rc == DG_HUB_EVENT) {
      dg_redis_xid_t id;
      if (dg_redis_xid_parse(ev->id, strlen(ev->id), &id) == 0 && dg_redis_xid_cmp(id, s->last) > 0) {
        sse_event(s, ev->id, ev->res, ev->len);
        s->last = id;
      }
      dg_event_release(s->app->hub, ev);
    } else if (rc == DG_HUB_TIMEOUT) {
      dg_buf_puts(&s->out, ": keepalive\n\n");
    } else if (rc == DG_HUB_DROPPED) {
      dg_buf_printf(&s->out,
                    "event: dropped\ndata: {\"reason\":\"the client fell more than %zu bytes behind; "
                    "resume with Last-Event-ID\"}\n\n",
                    s->app->cfg->client_buffer);
      s->ended = 1;
    } else {
      dg_buf_puts(&s->out, "event: shutdown\ndata: {\"reason\":\"the server is stopping\"}\n\n");
      s->ended = 1;
    }
  }
}

static void sse_notify(void *handle) { dg_stream_wake(handle); }

static void sse_attach(void *arg, dg_stream_handle_t *h) {
  sse_t *s = arg;
  dg_sub_set_notify(s->app->hub, s->sub, sse_notify, h);
}

static void sse_free(void *arg) {
  sse_t *s = arg;
  dg_hub_unsubscribe(s->app->hub, s->sub);
  dg_buf_dispose(&s->out);
  dg_free(s);
}

/* Replays response_duck after `since` into s->out. 0, DG_EGONE, DG_EUNAVAIL. */
static int replay(sse_t *s, const char *since_text) {
  int rc = 0;
  /* Gone: something was trimmed and the resume point is before what is left. */
  if (s->last.ms || s->last.seq) {
    int gone = 0;
    if (dg_service_replay_gone(s->app, s->last, &gone) != 0) return DG_EUNAVAIL;
    if (gone) rc = DG_EGONE;
  }
  (void)since_text;
  if (rc == 0) {
    s->replaying = 1;
    rc = replay_page(s); /* the first page now: Redis down is a 503 */
  }
  return rc;
}

/* A page being replayed: the stream, and the entries and bytes seen. */
typedef struct {
  sse_t *s;
  size_t n, bytes;
} page_t;

static int replay_entry(void *arg, const char *id, const char *text, size_t len, size_t entry_bytes) {
  page_t *pg = arg;
  sse_t *s = pg->s;
  dg_app_t *app = s->app;
  if (s->replay_entries >= app->cfg->replay_max || s->replay_bytes >= app->cfg->replay_bytes) {
    char last[DG_REDIS_XID_BUFSZ];
    dg_redis_xid_format(s->last, last, sizeof last);
    dg_buf_printf(&s->out,
                  "id: %s\nevent: replay_limit\ndata: {\"reason\":\"a replay sends at most %zu updates "
                  "or %zu bytes; resume with Last-Event-ID\",\"last_event_id\":\"%s\"}\n\n",
                  last, app->cfg->replay_max, app->cfg->replay_bytes, last);
    s->replaying = 0;
    s->ended = 1;
    return 1;
  }
  pg->n++;
  pg->bytes += entry_bytes;
  dg_redis_xid_parse(id, strlen(id), &s->last);
  s->replay_entries++;
  if (text && table_matches(s->table, text, len) && dg_update_within(text, len, s->who.tables)) {
    sse_event(s, id, text, len);
    s->replay_bytes += len;
  } else {
    /* Read and passed over counts too: a filtered replay must not read
     * gigabytes of other tables' outcomes to send a few. */
    s->replay_bytes += entry_bytes;
  }
  return 0;
}

/* One XRANGE page of the replay after s->last into s->out. At the end of
 * the stream the replay is over (live events follow); past the caps
 * (DUCKGRID_REPLAY_MAX entries, DUCKGRID_REPLAY_BYTES) the stream ends with
 * `event: replay_limit`, whose id is the last entry scanned, so the client
 * resumes right there (EventSource sends it as Last-Event-ID). 0 or
 * DG_EUNAVAIL. */
static int replay_page(sse_t *s) {
  if (s->page_count == 0) s->page_count = REPLAY_PAGE_FIRST;
  page_t pg = {s, 0, 0};
  if (dg_service_replay_page(s->app, s->last, s->page_count, replay_entry, &pg) != 0) return DG_EUNAVAIL;
  size_t n = pg.n, bytes = pg.bytes;
  if (n == 0) s->replaying = 0; /* caught up: live from here */
  /* The next page: as many entries of the sizes just seen as fit in
   * REPLAY_PAGE_BYTES (never more than double this one, so a run of
   * small entries before a big one costs at most one big page). */
  if (n > 0) {
    size_t fit = bytes ? REPLAY_PAGE_BYTES / (bytes / n + 1) : REPLAY_PAGE_MAX;
    if (fit > 2 * n) fit = 2 * n;
    s->page_count = fit < 1 ? 1 : fit > REPLAY_PAGE_MAX ? REPLAY_PAGE_MAX : fit;
  }
  return 0;
}

static int events_get(dg_req_t *r) {
  dg_app_t *app = r->app;
  const char *table = dg_query(r, "table");
  const char *since = dg_header(r, "Last-Event-ID");
  if (since == NULL) since = dg_query(r, "since");
  if (table && *table && !dg_name_valid(table)) {
    dg_problem(r, 400, NULL, "'%.80s' is not a valid table name", table);
    return 0;
  }
  if (table && *table && !dg_principal_can(&r->who, table)) {
    dg_problem(r, 403, NULL, "this key is limited to other tables than '%s'", table);
    return 0;
  }
  dg_redis_xid_t last = {0, 0};
  int do_replay = 0;
  if (since && *since && strcmp(since, "$") != 0) {
    if (strcmp(since, "0") == 0) {
      do_replay = 1;
    } else if (dg_redis_xid_parse(since, strlen(since), &last) == 0) {
      do_replay = 1;
    } else {
      dg_problem(r, 400, NULL, "since / Last-Event-ID must be an update id (ms-seq), 0 or $");
      return 0;
    }
  }
  sse_t *s = dg_calloc(1, sizeof *s);
  s->app = app;
  s->who = r->who;
  s->alive_ms = s->beat_ms = dg_mono_us() / 1000;
  snprintf(s->table, sizeof s->table, "%s", table && *table ? table : "");
  const char *filter[1] = {s->table};
  s->sub = dg_hub_subscribe_scoped(app->hub, s->table[0] ? filter : NULL, s->table[0] ? 1 : 0,
                                   app->cfg->client_buffer, s->who.tables);
  dg_buf_init(&s->out);
  dg_buf_puts(&s->out, "retry: 2000\n\n");
  if (do_replay) {
    char text[DG_REDIS_XID_BUFSZ];
    dg_redis_xid_format(last, text, sizeof text);
    s->last = last;
    int rc = replay(s, text);
    if (rc == DG_EUNAVAIL) {
      sse_free(s);
      dg_problem(r, 503, NULL, "the update stream (Redis) is unavailable");
      return 0;
    }
    if (rc == DG_EGONE) {
      dg_buf_reset(&s->out);
      dg_buf_puts(&s->out, "retry: 2000\n\nevent: gone\ndata: {\"status\":410,\"code\":\"gone\",\"title\":\"Gone\","
                           "\"detail\":\"the resume point is older than what is retained; reload the tables\"}\n\n");
      s->ended = 1;
    }
  } else {
    /* Live only: start after the newest retained entry. */
    if (dg_service_stream_newest(app, &s->last) != 0) {
      sse_free(s);
      dg_problem(r, 503, NULL, "the update stream (Redis) is unavailable");
      return 0;
    }
  }
  int tick = app->cfg->heartbeat_ms < 1000 ? app->cfg->heartbeat_ms : 1000;
  dg_stream_t stream = {.read = sse_read, .free = sse_free, .attach = sse_attach, .arg = s, .length = -1,
                        .tick_ms = tick};
  dg_reply_stream(r, 200, "text/event-stream", &stream);
  dg_set_header(r, "Cache-Control", "no-cache");
  dg_set_header(r, "X-Accel-Buffering", "no");
  return 0;
}

const dg_route_t dg_routes_events[] = {
    {"GET", "/events", DG_ROLE_READ, events_get, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
