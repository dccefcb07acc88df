/*
 * ws.c -- GET /ws: a WebSocket for live updates and writes.
 *
 * Messages are JSON text frames.
 *
 *   client -> server                          server -> client
 *   {"type":"subscribe","tables":["sales"]}   {"type":"subscribed","tables":[...]}
 *   {"type":"subscribe"}   (every table)      {"type":"update","update":{update object}}
 *   {"type":"unsubscribe"} (nothing)          {"type":"unsubscribed"}
 *   {"type":"update_cell", ...the REST body,  {"type":"result","id":…,"status":200,
 *    "id": <echoed>, "async": false}            "body":{outcome or problem}}
 *   {"type":"ping"}                           {"type":"pong"}
 *                                             {"type":"error","status":400,"body":{problem}}
 *
 * update_cell runs the very handler of POST /update_cell on a request made
 * for it, so validation, errors, idempotency and outcomes are identical.
 * Updates come from the process's hub, like /events; a client that falls
 * more than DUCKGRID_CLIENT_BUFFER bytes behind is closed with 1008 "slow
 * consumer" (it can reconnect and catch up via get_updates or /events with
 * Last-Event-ID); {"type":"dropped","reason":"slow consumer…"} comes first
 * only when the hub dropped it (an update larger than the buffer).
 *
 * Threads: every callback runs on the connection's event loop (front.c).
 * Updates arrive through the hub's notify (a wake-up of the loop, which
 * then takes the queued events without waiting). An update_cell runs on a
 * worker (it may wait for its outcome), one at a time per socket so the
 * results come in the order of the messages; at most MAX_INBOX messages
 * (MAX_INBOX_BYTES) may wait behind it, or the socket is closed with 1008.
 * A client that does not read: more than DUCKGRID_CLIENT_BUFFER bytes
 * queued for it (updates or answers), and it is closed; a message over
 * 1 MiB closes with 1009.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dg/alive.h"
#include "dg/buf.h"
#include "dg/ratelimit.h"
#include "dg/catalog.h"
#include "dg/common.h"
#include "dg/http.h"
#include "dg/hub.h"
#include "dg/log.h"

/* A message larger than this is refused (an update_cell body is small). */
#define MAX_MESSAGE (64 * 1024)
/* Tables one socket may subscribe to at once. */
#define MAX_SUB_TABLES 64

/* Messages that may wait behind a running update_cell. */
#define MAX_INBOX 1024
#define MAX_INBOX_BYTES (4u << 20)

typedef struct inbox_s {
  struct inbox_s *next;
  json_t *msg;            /* NULL: not JSON (answered as such)            */
  const char *err;        /* or a message refused as it came (static text) */
  size_t bytes;
} inbox_t;

typedef struct {
  dg_app_t *app;
  dg_principal_t who;
  dg_sub_t *sub;
  dg_ws_conn_t *conn;
  int revoked;            /* the caller lost its right: closing         */
  int busy;               /* an update_cell is on a worker              */
  inbox_t *head, *tail;   /* messages waiting behind it                 */
  size_t nbox, box_bytes;
} ws_t;

/* A client that does not read: more than DUCKGRID_CLIENT_BUFFER bytes
 * queued for it when a message (an update, an answer) is to follow, and it
 * is closed with 1008 "slow consumer" instead. (No {"type":"dropped"}
 * text here: wslay sends a close frame ahead of the queued messages, so
 * it would never go out.) */
static int dropped(ws_t *w) {
  if (dg_ws_pending(w->conn) <= w->app->cfg->client_buffer) return 0;
  dg_ws_close(w->conn, 1008, "slow consumer");
  w->revoked = 1;
  return 1;
}

static void send_text(ws_t *w, const char *text, size_t len) {
  if (!dropped(w)) dg_ws_send(w->conn, text, len);
}

/* The caller still allowed? If not, says why and closes the socket: a
 * deleted key or an expired token ends the stream within a second (the
 * tick asks every second) and before any further message is handled. */
static int still_allowed(ws_t *w) {
  char why[120];
  if (!w->revoked && dg_alive_peek(w->app->alive, &w->who, why, sizeof why) == 0) return 1;
  if (!w->revoked) {
    w->revoked = 1;
    char msg[200];
    snprintf(msg, sizeof msg, "{\"type\":\"revoked\",\"status\":401,\"reason\":\"%s\"}", why);
    send_text(w, msg, strlen(msg));
    dg_ws_close(w->conn, 1008, "revoked");
  }
  return 0;
}

static void send_json(ws_t *w, json_t *msg) {
  char *text = json_dumps(msg, JSON_COMPACT);
  json_decref(msg);
  if (text) send_text(w, text, strlen(text));
  free(text);
}

/* Sends raw pre-encoded JSON `body` wrapped as {"type":type,key:body,...}. */
static void send_wrapped(ws_t *w, const char *prefix, const char *body, size_t len) {
  dg_buf_t b;
  dg_buf_init(&b);
  dg_buf_puts(&b, prefix);
  dg_buf_append(&b, body, len);
  dg_buf_putc(&b, '}');
  send_text(w, b.data, b.len);
  dg_buf_dispose(&b);
}

static void send_error(ws_t *w, int status, const char *detail) {
  json_t *p = json_pack("{s:i,s:s,s:s,s:s}", "status", status, "code", dg_status_code(status), "title",
                        dg_status_reason(status), "detail", detail);
  send_json(w, json_pack("{s:s,s:i,s:o}", "type", "error", "status", status, "body", p));
}

static void subscribe(ws_t *w, json_t *msg) {
  json_t *tables = json_object_get(msg, "tables");
  if (tables == NULL || json_is_null(tables)) {
    dg_sub_set_tables(w->app->hub, w->sub, NULL, 0, 1);
    send_json(w, json_pack("{s:s,s:s}", "type", "subscribed", "tables", "*"));
    return;
  }
  if (!json_is_array(tables) || json_array_size(tables) > MAX_SUB_TABLES) {
    send_error(w, 400, "tables must be an array of at most 64 table names, or absent for all");
    return;
  }
  const char *names[MAX_SUB_TABLES];
  for (size_t i = 0; i < json_array_size(tables); i++) {
    names[i] = json_string_value(json_array_get(tables, i));
    if (!dg_name_valid(names[i])) {
      send_error(w, 400, "tables holds an invalid table name");
      return;
    }
    if (!dg_principal_can(&w->who, names[i])) {
      send_error(w, 403, "tables holds a table outside this key's scope");
      return;
    }
  }
  dg_sub_set_tables(w->app->hub, w->sub, names, json_array_size(tables), 0);
  send_json(w, json_pack("{s:s,s:O}", "type", "subscribed", "tables", tables));
}

/* One update_cell, run on a worker: POST /update_cell's own handler on a
 * request made for it, so validation, errors, idempotency and outcomes are
 * identical. */
typedef struct {
  dg_app_t *app;
  dg_principal_t who;
  json_t *msg;
  dg_buf_t out;           /* the {"type":"result",…} message */
} ucjob_t;

static void uc_run(void *arg) {
  ucjob_t *j = arg;
  dg_req_t r;
  memset(&r, 0, sizeof r);
  r.app = j->app;
  r.who = j->who;
  r.method = "POST";
  r.path = r.target = "/update_cell";
  dg_buf_init(&r.out_headers);
  dg_buf_init(&r.out_body);
  if (json_is_true(json_object_get(j->msg, "async"))) {
    r.query = dg_calloc(1, sizeof *r.query);
    r.query[0].name = dg_strdup("async");
    r.query[0].value = dg_strdup("true");
    r.nquery = 1;
  }
  json_t *body = json_deep_copy(j->msg);
  json_object_del(body, "type");
  json_object_del(body, "id");
  json_object_del(body, "async");
  r.body = body; /* disposed with r */
  dg_write_update_cell(&r);
  dg_buf_printf(&j->out, "{\"type\":\"result\",\"status\":%d,\"id\":", r.status);
  json_t *id = json_object_get(j->msg, "id");
  char *idtext = id ? json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  dg_buf_puts(&j->out, idtext ? idtext : "null");
  free(idtext);
  dg_buf_puts(&j->out, ",\"body\":");
  if (r.out_body.len) dg_buf_append(&j->out, r.out_body.data, r.out_body.len);
  else dg_buf_puts(&j->out, "null");
  dg_buf_putc(&j->out, '}');
  dg_req_dispose(&r);
}

static void handle(ws_t *w, json_t *msg);

static void uc_done(void *arg, void *job) {
  ucjob_t *j = job;
  ws_t *w = arg; /* NULL: the socket closed meanwhile */
  if (w) {
    send_text(w, j->out.data, j->out.len);
    w->busy = 0;
    /* The messages that waited, in order, until the next update_cell. */
    while (!w->busy && w->head && !w->revoked) {
      inbox_t *b = w->head;
      w->head = b->next;
      if (w->head == NULL) w->tail = NULL;
      w->nbox--;
      w->box_bytes -= b->bytes;
      if (b->err) send_error(w, 400, b->err);
      else handle(w, b->msg);
      json_decref(b->msg);
      dg_free(b);
    }
  }
  json_decref(j->msg);
  dg_buf_dispose(&j->out);
  dg_free(j);
}

static void update_cell(ws_t *w, json_t *msg) {
  if (w->who.role < DG_ROLE_WRITE) {
    send_error(w, 403, "update_cell needs the 'write' role");
    return;
  }
  /* The same per-caller bucket as POST /update_cell. */
  char caller[80];
  dg_principal_id(&w->who, caller, sizeof caller);
  int wait = dg_ratelimit_take(w->app->ratelimit, caller);
  if (wait > 0) {
    json_t *p = json_pack("{s:i,s:s,s:s,s:s,s:i}", "status", 429, "code", dg_status_code(429), "title",
                          dg_status_reason(429), "detail", "rate limit exceeded; retry later", "retry_after", wait);
    send_json(w, json_pack("{s:s,s:i,s:O?,s:o}", "type", "result", "status", 429, "id",
                           json_object_get(msg, "id"), "body", p));
    return;
  }
  ucjob_t *j = dg_calloc(1, sizeof *j);
  j->app = w->app;
  j->who = w->who;
  j->msg = json_incref(msg);
  dg_buf_init(&j->out);
  w->busy = 1;
  dg_ws_run(w->conn, uc_run, uc_done, j);
}

static void handle(ws_t *w, json_t *msg) {
  const char *type = json_string_value(json_object_get(msg, "type"));
  if (!json_is_object(msg) || type == NULL) {
    send_error(w, 400, "a message is a JSON object with a \"type\"");
  } else if (strcmp(type, "subscribe") == 0) {
    subscribe(w, msg);
  } else if (strcmp(type, "unsubscribe") == 0) {
    dg_sub_set_tables(w->app->hub, w->sub, NULL, 0, 0);
    send_json(w, json_pack("{s:s}", "type", "unsubscribed"));
  } else if (strcmp(type, "update_cell") == 0) {
    update_cell(w, msg);
  } else if (strcmp(type, "ping") == 0) {
    send_json(w, json_pack("{s:s}", "type", "pong"));
  } else {
    send_error(w, 400, "type must be subscribe, unsubscribe, update_cell or ping");
  }
}

static void on_message(void *arg, const char *data, size_t len, int text) {
  ws_t *w = arg;
  if (!still_allowed(w)) return;
  const char *err = NULL;
  json_t *msg = NULL;
  if (!text) err = "send JSON text frames";
  else if (len > MAX_MESSAGE) err = "the message is larger than 64 KiB";
  else msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
  if (w->busy) {
    /* Behind a running update_cell: kept in order (errors too: every
     * answer comes in the order of the messages), within bounds. */
    if (w->nbox >= MAX_INBOX || w->box_bytes + len > MAX_INBOX_BYTES) {
      json_decref(msg);
      dg_ws_close(w->conn, 1008, "too many messages waiting for an answer");
      return;
    }
    inbox_t *b = dg_calloc(1, sizeof *b);
    b->msg = msg;
    b->err = err;
    b->bytes = len;
    if (w->tail) w->tail->next = b;
    else w->head = b;
    w->tail = b;
    w->nbox++;
    w->box_bytes += len;
    return;
  }
  if (err) send_error(w, 400, err);
  else handle(w, msg);
  json_decref(msg);
}

/* Queued updates go out; a client that does not read is dropped. */
static void on_wake(void *arg) {
  ws_t *w = arg;
  if (w->revoked) return;
  for (;;) {
    if (dropped(w)) return;
    dg_event_t *ev = NULL;
    int rc = dg_sub_next(w->app->hub, w->sub, 0, &ev);
    if (rc == DG_HUB_EVENT) {
      send_wrapped(w, "{\"type\":\"update\",\"update\":", ev->res, ev->len);
      dg_event_release(w->app->hub, ev);
    } else if (rc == DG_HUB_DROPPED || rc == DG_HUB_CLOSED) {
      char msg[200];
      snprintf(msg, sizeof msg, "{\"type\":\"%s\",\"reason\":\"%s\"}",
               rc == DG_HUB_DROPPED ? "dropped" : "closing",
               rc == DG_HUB_DROPPED ? "slow consumer: more updates pending than the client buffer holds"
                                    : "the server is stopping");
      send_text(w, msg, strlen(msg));
      dg_ws_close(w->conn, rc == DG_HUB_DROPPED ? 1008 : 1001, rc == DG_HUB_DROPPED ? "slow consumer" : "stopping");
      w->revoked = 1;
      return;
    } else {
      return;
    }
  }
}

static void on_tick(void *arg) {
  ws_t *w = arg;
  still_allowed(w);
}

static void notify(void *conn) { dg_ws_wake(conn); }

static void on_open(void *arg, dg_ws_conn_t *c) {
  ws_t *w = arg;
  w->conn = c;
  dg_sub_set_notify(w->app->hub, w->sub, notify, c);
}

static void on_close(void *arg) {
  ws_t *w = arg;
  dg_hub_unsubscribe(w->app->hub, w->sub);
  while (w->head) {
    inbox_t *b = w->head;
    w->head = b->next;
    json_decref(b->msg);
    dg_free(b);
  }
  dg_free(w);
}

static int ws_get(dg_req_t *r) {
  const char *up = dg_header(r, "Upgrade"), *conn = dg_header(r, "Connection");
  if (up == NULL || strcasecmp(up, "websocket") != 0 || conn == NULL || strcasestr(conn, "upgrade") == NULL ||
      dg_header(r, "Sec-WebSocket-Key") == NULL) {
    dg_problem(r, 400, NULL, "a WebSocket upgrade request is required (Connection: Upgrade, Upgrade: websocket)");
    return 0;
  }
  ws_t *w = dg_calloc(1, sizeof *w);
  w->app = r->app;
  w->who = r->who;
  /* Nothing until the client subscribes. */
  w->sub = dg_hub_subscribe_scoped(r->app->hub, NULL, 0, r->app->cfg->client_buffer, r->who.tables);
  dg_sub_set_tables(r->app->hub, w->sub, NULL, 0, 0);
  dg_ws_t cb = {.open = on_open, .message = on_message, .wake = on_wake, .tick = on_tick, .close = on_close,
                .arg = w};
  dg_reply_websocket(r, &cb);
  return 0;
}

const dg_route_t dg_routes_ws[] = {
    {"GET", "/ws", DG_ROLE_READ, ws_get, 0, NULL},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0, NULL},
};
