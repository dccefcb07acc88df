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
 * more than DUCKGRID_CLIENT_BUFFER bytes behind gets {"type":"dropped",
 * "reason":"slow consumer…"} and the socket is closed (it can reconnect and
 * catch up via get_updates or /events with Last-Event-ID).
 *
 * Threads (ulfius): incoming messages are handled on the connection's
 * thread, the updates are pushed by the manager thread of the socket;
 * ulfius serialises writes, and frees nothing before both have finished,
 * when onclose frees our state.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <ulfius.h>

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

typedef struct {
  dg_app_t *app;
  dg_principal_t who;
  dg_sub_t *sub;
  atomic_int revoked;     /* the caller lost its right: closing         */
} ws_t;

/* The caller still allowed? If not, says why and closes the socket: a
 * deleted key or an expired token ends the stream within a second (the
 * manage loop asks every second) and before any further message is
 * handled. ulfius sends a close frame without a status code, so the
 * reason travels as a last message before it. */
static int still_allowed(ws_t *w, struct _websocket_manager *wsm) {
  char why[120];
  if (!atomic_load(&w->revoked) && dg_alive_check(w->app->alive, &w->who, why, sizeof why) == 0) return 1;
  if (atomic_exchange(&w->revoked, 1) == 0) {
    char msg[200];
    snprintf(msg, sizeof msg, "{\"type\":\"revoked\",\"status\":401,\"reason\":\"%s\"}", why);
    ulfius_websocket_send_message(wsm, U_WEBSOCKET_OPCODE_TEXT, strlen(msg), msg);
    ulfius_websocket_send_message(wsm, U_WEBSOCKET_OPCODE_CLOSE, 0, NULL);
  }
  return 0;
}

static void send_json(struct _websocket_manager *wsm, json_t *msg) {
  char *text = json_dumps(msg, JSON_COMPACT);
  json_decref(msg);
  if (text) ulfius_websocket_send_message(wsm, U_WEBSOCKET_OPCODE_TEXT, strlen(text), text);
  free(text);
}

/* Sends raw pre-encoded JSON `body` wrapped as {"type":type,key:body,...}. */
static void send_wrapped(struct _websocket_manager *wsm, const char *prefix, const char *body,
                         size_t len) {
  dg_buf_t b;
  dg_buf_init(&b);
  dg_buf_puts(&b, prefix);
  dg_buf_append(&b, body, len);
  dg_buf_putc(&b, '}');
  ulfius_websocket_send_message(wsm, U_WEBSOCKET_OPCODE_TEXT, b.len, b.data);
  dg_buf_dispose(&b);
}

static void send_error(struct _websocket_manager *wsm, int status, const char *detail) {
  json_t *p = json_pack("{s:i,s:s,s:s,s:s}", "status", status, "code",
                        status == 403 ? "forbidden" : "bad_request", "title",
                        status == 403 ? "Forbidden" : "Bad Request", "detail", detail);
  send_json(wsm, json_pack("{s:s,s:i,s:o}", "type", "error", "status", status, "body", p));
}

static void subscribe(ws_t *w, struct _websocket_manager *wsm, json_t *msg) {
  json_t *tables = json_object_get(msg, "tables");
  if (tables == NULL || json_is_null(tables)) {
    dg_sub_set_tables(w->app->hub, w->sub, NULL, 0, 1);
    send_json(wsm, json_pack("{s:s,s:s}", "type", "subscribed", "tables", "*"));
    return;
  }
  if (!json_is_array(tables) || json_array_size(tables) > MAX_SUB_TABLES) {
    send_error(wsm, 400, "tables must be an array of at most 64 table names, or absent for all");
    return;
  }
  const char *names[MAX_SUB_TABLES];
  for (size_t i = 0; i < json_array_size(tables); i++) {
    names[i] = json_string_value(json_array_get(tables, i));
    if (!dg_name_valid(names[i])) {
      send_error(wsm, 400, "tables holds an invalid table name");
      return;
    }
    if (!dg_principal_can(&w->who, names[i])) {
      send_error(wsm, 403, "tables holds a table outside this key's scope");
      return;
    }
  }
  dg_sub_set_tables(w->app->hub, w->sub, names, json_array_size(tables), 0);
  send_json(wsm, json_pack("{s:s,s:O}", "type", "subscribed", "tables", tables));
}

/* Runs POST /update_cell's handler for one message and sends its answer. */
static void update_cell(ws_t *w, const struct _u_request *upgrade, struct _websocket_manager *wsm,
                        json_t *msg) {
  if (w->who.role < DG_ROLE_WRITE) {
    send_error(wsm, 403, "update_cell needs the 'write' role");
    return;
  }
  /* The same per-caller bucket as POST /update_cell. */
  char caller[80];
  dg_principal_id(&w->who, caller, sizeof caller);
  int wait = dg_ratelimit_take(w->app->ratelimit, caller);
  if (wait > 0) {
    json_t *p = json_pack("{s:i,s:s,s:s,s:s,s:i}", "status", 429, "code", "too_many_requests", "title",
                          "Too Many Requests", "detail", "rate limit exceeded; retry later", "retry_after", wait);
    send_json(wsm, json_pack("{s:s,s:i,s:O?,s:o}", "type", "result", "status", 429, "id",
                             json_object_get(msg, "id"), "body", p));
    return;
  }
  struct _u_request req;
  struct _u_response resp;
  ulfius_init_request(&req);
  ulfius_init_response(&resp);
  req.http_verb = o_strdup("POST");
  if (json_is_true(json_object_get(msg, "async"))) u_map_put(req.map_url, "async", "true");
  (void)upgrade;
  dg_req_t r;
  memset(&r, 0, sizeof r);
  r.u = &req;
  r.resp = &resp;
  r.app = w->app;
  r.who = w->who;
  json_t *body = json_deep_copy(msg);
  json_object_del(body, "type");
  json_object_del(body, "id");
  json_object_del(body, "async");
  r.body = body;
  dg_write_update_cell(&r);
  dg_buf_t b;
  dg_buf_init(&b);
  dg_buf_printf(&b, "{\"type\":\"result\",\"status\":%d,\"id\":", r.status);
  json_t *id = json_object_get(msg, "id");
  char *idtext = id ? json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  dg_buf_puts(&b, idtext ? idtext : "null");
  free(idtext);
  dg_buf_puts(&b, ",\"body\":");
  if (resp.binary_body_length) dg_buf_append(&b, resp.binary_body, resp.binary_body_length);
  else dg_buf_puts(&b, "null");
  dg_buf_putc(&b, '}');
  ulfius_websocket_send_message(wsm, U_WEBSOCKET_OPCODE_TEXT, b.len, b.data);
  dg_buf_dispose(&b);
  json_decref(body);
  ulfius_clean_request(&req);
  ulfius_clean_response(&resp);
}

static void on_message(const struct _u_request *upgrade, struct _websocket_manager *wsm,
                       const struct _websocket_message *m, void *arg) {
  ws_t *w = arg;
  if (!still_allowed(w, wsm)) return;
  if (m->opcode != U_WEBSOCKET_OPCODE_TEXT) {
    send_error(wsm, 400, "send JSON text frames");
    return;
  }
  if (m->data_len > MAX_MESSAGE) {
    send_error(wsm, 400, "the message is larger than 64 KiB");
    return;
  }
  json_error_t jerr;
  json_t *msg = json_loadb(m->data, m->data_len, JSON_REJECT_DUPLICATES, &jerr);
  const char *type = json_string_value(json_object_get(msg, "type"));
  if (!json_is_object(msg) || type == NULL) {
    send_error(wsm, 400, "a message is a JSON object with a \"type\"");
  } else if (strcmp(type, "subscribe") == 0) {
    subscribe(w, wsm, msg);
  } else if (strcmp(type, "unsubscribe") == 0) {
    dg_sub_set_tables(w->app->hub, w->sub, NULL, 0, 0);
    send_json(wsm, json_pack("{s:s}", "type", "unsubscribed"));
  } else if (strcmp(type, "update_cell") == 0) {
    update_cell(w, upgrade, wsm, msg);
  } else if (strcmp(type, "ping") == 0) {
    send_json(wsm, json_pack("{s:s}", "type", "pong"));
  } else {
    send_error(wsm, 400, "type must be subscribe, unsubscribe, update_cell or ping");
  }
  json_decref(msg);
}

atomic_int dg_ws_opened;

static void manage(const struct _u_request *upgrade, struct _websocket_manager *wsm, void *arg) {
  ws_t *w = arg;
  (void)upgrade;
  int64_t checked = dg_mono_us() / 1000;
  while (ulfius_websocket_status(wsm) == U_WEBSOCKET_STATUS_OPEN) {
    int64_t now = dg_mono_us() / 1000;
    if (now - checked >= 1000) {
      checked = now;
      if (!still_allowed(w, wsm)) break;
    }
    dg_event_t *ev = NULL;
    int rc = dg_sub_next(w->app->hub, w->sub, 500, &ev);
    if (rc == DG_HUB_EVENT) {
      send_wrapped(wsm, "{\"type\":\"update\",\"update\":", ev->res, ev->len);
      dg_event_release(w->app->hub, ev);
    } else if (rc == DG_HUB_DROPPED || rc == DG_HUB_CLOSED) {
      /* ulfius sends a close frame without a status code, so the reason
       * travels as a last message before it. */
      char msg[200];
      snprintf(msg, sizeof msg, "{\"type\":\"%s\",\"reason\":\"%s\"}",
               rc == DG_HUB_DROPPED ? "dropped" : "closing",
               rc == DG_HUB_DROPPED ? "slow consumer: more updates pending than the client buffer holds"
                                    : "the server is stopping");
      ulfius_websocket_send_message(wsm, U_WEBSOCKET_OPCODE_TEXT, strlen(msg), msg);
      ulfius_websocket_send_message(wsm, U_WEBSOCKET_OPCODE_CLOSE, 0, NULL);
      break;
    }
  }
}

static void on_close(const struct _u_request *upgrade, struct _websocket_manager *wsm, void *arg) {
  ws_t *w = arg;
  (void)upgrade;
  (void)wsm;
  dg_hub_unsubscribe(w->app->hub, w->sub);
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
  if (ulfius_set_websocket_response(r->resp, NULL, NULL, manage, w, on_message, w, on_close, w) != U_OK) {
    dg_hub_unsubscribe(r->app->hub, w->sub);
    dg_free(w);
    dg_problem(r, 400, NULL, "a WebSocket upgrade request is required (Connection: Upgrade, Upgrade: websocket)");
    return 0;
  }
  atomic_store(&dg_ws_opened, 1);
  r->status = 101;
  return 0;
}

const dg_route_t dg_routes_ws[] = {
    {"GET", "/ws", DG_ROLE_READ, ws_get, 0},
    {NULL, NULL, DG_ROLE_NONE, NULL, 0},
};
