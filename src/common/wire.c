/*
 * wire.c -- the request/outcome wire format (see wire.h, which documents
 * both texts member by member).
 *
 * Writers and readers of request_duck and response_duck used to spell the
 * member names where they needed them; they now come from here, so the
 * front end and the manager cannot drift apart. The decoders sit on the
 * manager's hot path: a request costs jansson's DOM and nothing more (the
 * envelope borrows from it), and outcome members are found by scanning.
 */
#include "dg/wire.h"

#include <string.h>

#include "dg/common.h"

int dg_wire_request_id_valid(const char *s, size_t n) {
  if (s == NULL || n < 1 || n > DG_WIRE_REQUEST_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return 0;
  return 1;
}

static int caller_tag_valid(const char *tag) {
  if (tag == NULL || strlen(tag) != DG_WIRE_CALLER_TAG_LEN) return 0;
  for (const char *p = tag; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
  return 1;
}

/* ---- requests ------------------------------------------------------------------ */

json_t *dg_wire_req_new(const dg_wire_req_t *env) {
  json_t *req = json_pack("{s:s,s:s}", DG_WIRE_OP, env->op, DG_WIRE_USER, env->user);
  if (req == NULL) return NULL;
  /* No caller (the server's own requests: the demo data): no scope, no tag. */
  if (env->caller) json_object_set_new(req, DG_WIRE_CALLER, json_string(env->caller));
  if (env->caller_tag) json_object_set_new(req, DG_WIRE_CALLER_TAG, json_string(env->caller_tag));
  if (env->table) json_object_set_new(req, DG_WIRE_TABLE, json_string(env->table));
  return req;
}

void dg_wire_req_finish(json_t *req, const char *request_id) {
  json_object_set_new(req, DG_WIRE_REQUEST_ID, json_string(request_id));
}

void dg_wire_req_open(dg_jsonw_t *w, dg_buf_t *out, const dg_wire_req_t *env) {
  dg_jsonw_init(w, out);
  dg_jsonw_obj(w);
  dg_jsonw_key(w, DG_WIRE_OP);
  dg_jsonw_str(w, env->op);
  dg_jsonw_key(w, DG_WIRE_USER);
  dg_jsonw_str(w, env->user);
  dg_jsonw_key(w, DG_WIRE_CALLER);
  dg_jsonw_str(w, env->caller);
  dg_jsonw_key(w, DG_WIRE_CALLER_TAG);
  dg_jsonw_str(w, env->caller_tag);
  if (env->table) {
    dg_jsonw_key(w, DG_WIRE_TABLE);
    dg_jsonw_str(w, env->table);
  }
}

void dg_wire_req_close(dg_buf_t *out, const char *request_id) {
  dg_jsonw_t w;
  dg_jsonw_resume_obj(&w, out); /* inside the request object, after its other members */
  dg_jsonw_key(&w, DG_WIRE_REQUEST_ID);
  dg_jsonw_str(&w, request_id);
  dg_jsonw_end(&w);
}

/* A string member of o, borrowed, or NULL. */
static const char *str_of(const json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

int dg_wire_req_decode(const char *text, size_t len, int flags, dg_wire_req_t *out) {
  memset(out, 0, sizeof *out);
  size_t jflags = (flags & DG_WIRE_DUPLICATES_OK) ? 0 : JSON_REJECT_DUPLICATES;
  json_t *o = text ? json_loadb(text, len, jflags, NULL) : NULL;
  if (!json_is_object(o)) {
    json_decref(o);
    return DG_EINVAL;
  }
  out->body = o;
  out->op = str_of(o, DG_WIRE_OP);
  out->user = str_of(o, DG_WIRE_USER);
  out->caller = str_of(o, DG_WIRE_CALLER);
  out->table = str_of(o, DG_WIRE_TABLE);
  /* Judged as a C string, as the manager always has (an escaped NUL ends it). */
  const char *rid = str_of(o, DG_WIRE_REQUEST_ID);
  if (rid && dg_wire_request_id_valid(rid, strlen(rid))) out->request_id = rid;
  const char *tag = str_of(o, DG_WIRE_CALLER_TAG);
  if (caller_tag_valid(tag)) out->caller_tag = tag;
  return out->op ? 0 : DG_ENOTFOUND;
}

void dg_wire_req_dispose(dg_wire_req_t *req) {
  json_decref(req->body);
  memset(req, 0, sizeof *req);
}

/* ---- outcomes: reading ------------------------------------------------------- */

static const char *const out_names[DG_WIRE_O__COUNT] = {
    [DG_WIRE_O_UPDATE_ID] = DG_WIRE_UPDATE_ID,
    [DG_WIRE_O_STREAM_ID] = DG_WIRE_STREAM_ID,
    [DG_WIRE_O_REQUEST_ID] = DG_WIRE_REQUEST_ID,
    [DG_WIRE_O_USER] = DG_WIRE_USER,
    [DG_WIRE_O_CALLER_TAG] = DG_WIRE_CALLER_TAG,
    [DG_WIRE_O_OP] = DG_WIRE_OP,
    [DG_WIRE_O_TABLE] = DG_WIRE_TABLE,
    [DG_WIRE_O_STATUS] = DG_WIRE_STATUS,
    [DG_WIRE_O_ERROR] = DG_WIRE_ERROR,
    [DG_WIRE_O_TS] = DG_WIRE_TS,
    [DG_WIRE_O_INSERTED] = DG_WIRE_INSERTED,
    [DG_WIRE_O_INSERTED_TOTAL] = DG_WIRE_INSERTED DG_WIRE_TOTAL_SUFFIX,
    [DG_WIRE_O_INSERTED_TRUNCATED] = DG_WIRE_INSERTED DG_WIRE_TRUNCATED_SUFFIX,
    [DG_WIRE_O_INSERTED_RANGES] = DG_WIRE_INSERTED DG_WIRE_RANGES_SUFFIX,
    [DG_WIRE_O_DELETED] = DG_WIRE_DELETED,
    [DG_WIRE_O_DELETED_TOTAL] = DG_WIRE_DELETED DG_WIRE_TOTAL_SUFFIX,
    [DG_WIRE_O_DELETED_TRUNCATED] = DG_WIRE_DELETED DG_WIRE_TRUNCATED_SUFFIX,
    [DG_WIRE_O_DELETED_RANGES] = DG_WIRE_DELETED DG_WIRE_RANGES_SUFFIX,
    [DG_WIRE_O_MOVED] = DG_WIRE_MOVED,
    [DG_WIRE_O_REVERTS] = DG_WIRE_REVERTS,
    [DG_WIRE_O_ROWS] = DG_WIRE_ROWS,
    [DG_WIRE_O_ROWS_INSERTED] = DG_WIRE_ROWS_INSERTED,
    [DG_WIRE_O_ROW] = DG_WIRE_ROW,
    [DG_WIRE_O_TABLE_DEF] = DG_WIRE_TABLE_DEF,
    [DG_WIRE_O_VIEW] = DG_WIRE_VIEW,
    [DG_WIRE_O_VIEW_DEF] = DG_WIRE_VIEW_DEF,
    [DG_WIRE_O_CHANGES_TOTAL] = DG_WIRE_CHANGES_TOTAL,
    [DG_WIRE_O_CHANGES_TRUNCATED] = DG_WIRE_CHANGES_TRUNCATED,
    [DG_WIRE_O_CHANGES] = DG_WIRE_CHANGES,
};

const char *dg_wire_out_name(dg_wire_out_t m) {
  return (unsigned)m < DG_WIRE_O__COUNT ? out_names[m] : NULL;
}

int dg_wire_out_raw(const char *res, size_t len, dg_wire_out_t m, const char **v, size_t *n) {
  const char *key = dg_wire_out_name(m);
  if (key == NULL) return DG_EINVAL;
  return dg_json_raw_member(res, len, key, v, n);
}

int dg_wire_out_str(const char *res, size_t len, dg_wire_out_t m, char *out, size_t cap) {
  const char *v;
  size_t n;
  if (dg_wire_out_raw(res, len, m, &v, &n) != 0 || n < 2 || v[0] != '"') return 0;
  if (memchr(v, '\\', n) == NULL) {
    if (n - 2 >= cap) return 0;
    memcpy(out, v + 1, n - 2);
    out[n - 2] = '\0';
    return 1;
  }
  json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
  int ok = json_is_string(j) && json_string_length(j) < cap;
  if (ok) memcpy(out, json_string_value(j), json_string_length(j) + 1);
  json_decref(j);
  return ok;
}

json_t *dg_wire_out_get(const char *res, size_t len, dg_wire_out_t m) {
  const char *v;
  size_t n;
  if (dg_wire_out_raw(res, len, m, &v, &n) != 0) return NULL;
  return json_loadb(v, n, JSON_DECODE_ANY, NULL);
}

int dg_wire_out_true(const char *res, size_t len, dg_wire_out_t m) {
  const char *v;
  size_t n;
  return dg_wire_out_raw(res, len, m, &v, &n) == 0 && n == 4 && memcmp(v, "true", 4) == 0;
}

int dg_wire_out_applied(const char *res, size_t len) {
  char st[16];
  return dg_wire_out_str(res, len, DG_WIRE_O_STATUS, st, sizeof st) && strcmp(st, DG_WIRE_APPLIED) == 0;
}

dg_wire_out_t dg_wire_out_ids(int add) { return add ? DG_WIRE_O_INSERTED : DG_WIRE_O_DELETED; }
dg_wire_out_t dg_wire_out_ids_truncated(int add) {
  return add ? DG_WIRE_O_INSERTED_TRUNCATED : DG_WIRE_O_DELETED_TRUNCATED;
}
dg_wire_out_t dg_wire_out_ids_ranges(int add) { return add ? DG_WIRE_O_INSERTED_RANGES : DG_WIRE_O_DELETED_RANGES; }

int dg_wire_out_tables(const char *res, size_t len, int (*each)(const char *table, void *arg), void *arg) {
  json_t *o = json_loadb(res, len, 0, NULL);
  if (o == NULL) return DG_EINVAL;
  const char *t = str_of(o, DG_WIRE_TABLE);
  int stop = t ? each(t, arg) : 0;
  json_t *ch = json_object_get(o, DG_WIRE_CHANGES);
  for (size_t i = 0; !stop && i < json_array_size(ch); i++) {
    const char *ct = str_of(json_array_get(ch, i), DG_WIRE_TABLE);
    if (ct) stop = each(ct, arg);
  }
  json_decref(o);
  return 0;
}

/* ---- outcomes: writing ------------------------------------------------------- */

void dg_wire_out_open(dg_jsonw_t *w, dg_buf_t *out, const char *update_id, const char *request_id,
                      const char *user, const char *caller_tag, const char *op, const char *table) {
  dg_jsonw_init(w, out);
  dg_jsonw_obj(w);
  dg_jsonw_key(w, DG_WIRE_UPDATE_ID);
  dg_jsonw_str(w, update_id);
  dg_jsonw_key(w, DG_WIRE_STREAM_ID);
  dg_jsonw_str(w, update_id);
  dg_jsonw_key(w, DG_WIRE_REQUEST_ID);
  dg_jsonw_str(w, request_id);
  dg_jsonw_key(w, DG_WIRE_USER);
  dg_jsonw_str(w, user);
  if (caller_tag_valid(caller_tag)) {
    dg_jsonw_key(w, DG_WIRE_CALLER_TAG);
    dg_jsonw_str(w, caller_tag);
  }
  dg_jsonw_key(w, DG_WIRE_OP);
  dg_jsonw_str(w, op);
  dg_jsonw_key(w, DG_WIRE_TABLE);
  dg_jsonw_str(w, table);
}

void dg_wire_out_rejected(dg_jsonw_t *w, int status, const char *detail, const char *conflicts, const char *ts) {
  dg_jsonw_key(w, DG_WIRE_STATUS);
  dg_jsonw_str(w, DG_WIRE_REJECTED);
  dg_jsonw_key(w, DG_WIRE_ERROR);
  dg_jsonw_obj(w);
  dg_jsonw_key(w, DG_WIRE_ERR_STATUS);
  dg_jsonw_int(w, status);
  dg_jsonw_key(w, DG_WIRE_ERR_CODE);
  dg_jsonw_str(w, dg_status_code(status));
  dg_jsonw_key(w, DG_WIRE_ERR_TITLE);
  dg_jsonw_str(w, dg_status_reason(status));
  dg_jsonw_key(w, DG_WIRE_ERR_DETAIL);
  dg_jsonw_str(w, detail);
  if (conflicts) {
    dg_jsonw_key(w, DG_WIRE_ERR_CONFLICTS);
    dg_jsonw_raw(w, conflicts, strlen(conflicts));
  }
  dg_jsonw_end(w);
  dg_jsonw_key(w, DG_WIRE_TS);
  dg_jsonw_str(w, ts);
  dg_jsonw_key(w, DG_WIRE_CHANGES);
  dg_jsonw_raw(w, "[]", 2);
}

typedef struct {
  const char *table;
  int yes;
} concerns_t;

static int concerns_each(const char *t, void *arg) {
  concerns_t *c = arg;
  c->yes = strcmp(t, c->table) == 0;
  return c->yes;
}

int dg_wire_out_concerns(const char *res, size_t len, const char *table) {
  concerns_t c = {table, 0};
  (void)dg_wire_out_tables(res, len, concerns_each, &c);
  return c.yes;
}
