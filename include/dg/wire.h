/*
 * wire.h -- the request/outcome wire format: the contract between the front
 * end (src/http, src/api) and the manager (src/manager).
 *
 * Two kinds of JSON text travel through Redis. This module is the one place
 * that knows their member names and shapes; every writer and reader goes
 * through the constants and functions below.
 *
 * ---- a request: one entry of request_duck, field "req" -----------------------
 *
 *   {"op":"update_cells","user":"ana","caller":"key:7","caller_tag":"3f…",
 *    "table":"sales", <op-specific members>, "request_id":"r-…"}
 *
 *   member       type    written by                 read by
 *   op           string  write.c (first, always)    apply.c (dispatch), manager.c
 *                                                   (DDL barrier, reject_with),
 *                                                   undo.c (compact revert)
 *   user         string  write.c                    apply.c (audit, outcome)
 *   caller       string  write.c: "key:<id>" or     apply.c: scopes request_id
 *                        "jwt:<sub>"                (older requests: "user:<user>")
 *   caller_tag   string  write.c: 16 lowercase hex  apply.c: copied into the
 *                        (entry_mac.h)              outcome for the waiter
 *   table        string  write.c, for the ops on    apply.c
 *                        one table (absent else)
 *   request_id   string  write.c (last): 1..128     apply.c: idempotency key;
 *                        printable ASCII            an invalid one is replaced
 *                                                   by the stream id
 *   …            any     write.c, per op            apply.c walks the body
 *
 * The order above is the byte order the API writes (dg__mgr_is_ddl and
 * dg__mgr_revert_target read "op" without decoding when it comes first).
 * Imports write the same opening as text (dg_wire_req_open) and the rows
 * after it. The manager decodes with duplicate members rejected, so a text
 * that repeats "op" is no request at all (400 "not valid JSON").
 *
 * ---- an outcome: one entry of response_duck, field "res" ---------------------
 *
 *   {"update_id":"1732…-0","stream_id":"1732…-0","request_id":"r-…",
 *    "user":"ana","caller_tag":"3f…","op":"update_cells","table":"sales",
 *    "status":"applied","error":null,"ts":"2026-…Z", <effects>,
 *    <op-specific results>, "changes":[…]}
 *
 *   member              written by apply.c (manager.c reject_with: a 500)
 *                       read by
 *   update_id, stream_id  the entry id of the request; the two are equal.
 *                       write.c (error answers), the API's replies
 *   request_id          the request's, or its stream id. reader.c (waiters)
 *   user                the request's (null when it had none)
 *   caller_tag          only when the request had a valid one. reader.c
 *   op                  the request's ("unknown" when it had none; null in a
 *                       reject_with). reader.c (catalog), write.c (revert)
 *   table               the request's, or null. reader.c, hub.c, events.c,
 *                       service/updates.c, webhook.c (filters), write.c
 *   status              "applied" | "rejected". reader.c, write.c
 *   error               null | {"status":int,"code","title","detail"
 *                       [,"conflicts":[…] of a rejected revert]}. write.c
 *   ts                  ISO-8601 time of the entry id
 *   changes             [{"table","row_id","column","old","new"},…], last.
 *                       hub.c, events.c, service/updates.c, webhook.c
 *                       (table filters: each change's "table")
 * and, only when applied:
 *   inserted, deleted   [row ids] of the request's table (when any). reader.c
 *   <x>_total           count, when the list was cut (DUCKGRID_OUTCOME_IDS_MAX)
 *   <x>_truncated       true, when the list was cut. reader.c
 *   <x>_ranges          [[first,last],…], when cut and the runs are few. reader.c
 *   moved               [{"table","row_id"}] of the rows a request re-parented
 *   reverts             a revert's target update id
 *   rows                insert_rows' rows (unless "echo_rows": false). write.c
 *   rows_inserted       the count instead (an import). write.c
 *   row                 update_row's row. write.c
 *   table_def           create_table's definition. write.c, reader.c (catalog)
 *   view, view_def      create_view / delete_view. write.c, reader.c (catalog)
 *   changes_total,      when the changes list was cut
 *   changes_truncated   (DUCKGRID_OUTCOME_CHANGES_MAX); "changes" is then []
 *
 * Small members come first, so readers find what they need by scanning
 * (dg_wire_out_raw) without decoding an outcome that can be megabytes.
 */
#ifndef DG_WIRE_H
#define DG_WIRE_H

#include <jansson.h>
#include <stddef.h>

#include "dg/buf.h"
#include "dg/jsonw.h"

/* ---- ops ------------------------------------------------------------------ */

/* What a request's "op" names: written by write.c (and demo.c, undo.c's
 * compact revert, import's text opening), dispatched by apply.c, read by
 * reader.c (the catalog) and webhook.c. The HTTP API's own names (a
 * WebSocket message's "type", the routes) are the API's, not these. */
#define DG_OP_UPDATE_CELL "update_cell"
#define DG_OP_UPDATE_CELLS "update_cells"
#define DG_OP_UPDATE_ROW "update_row"
#define DG_OP_INSERT_ROWS "insert_rows"
#define DG_OP_DELETE_ROW "delete_row"
#define DG_OP_CREATE_TABLE "create_table"
#define DG_OP_DELETE_TABLE "delete_table"
#define DG_OP_CREATE_VIEW "create_view"
#define DG_OP_DELETE_VIEW "delete_view"
#define DG_OP_HOLD "hold"
#define DG_OP_RELEASE "release"
#define DG_OP_REVERT "revert"

/* ---- member names --------------------------------------------------------- */

/* Request envelope. */
#define DG_WIRE_OP "op"
#define DG_WIRE_REQUEST_ID "request_id"
#define DG_WIRE_USER "user"
#define DG_WIRE_CALLER "caller"
#define DG_WIRE_CALLER_TAG "caller_tag"
#define DG_WIRE_TABLE "table"
/* Outcome (also op, request_id, user, caller_tag, table). */
#define DG_WIRE_UPDATE_ID "update_id"
#define DG_WIRE_STREAM_ID "stream_id"
#define DG_WIRE_STATUS "status"
#define DG_WIRE_ERROR "error"
#define DG_WIRE_TS "ts"
#define DG_WIRE_INSERTED "inserted"
#define DG_WIRE_DELETED "deleted"
#define DG_WIRE_TOTAL_SUFFIX "_total"
#define DG_WIRE_TRUNCATED_SUFFIX "_truncated"
#define DG_WIRE_RANGES_SUFFIX "_ranges"
#define DG_WIRE_MOVED "moved"
#define DG_WIRE_REVERTS "reverts"
#define DG_WIRE_ROWS "rows"
#define DG_WIRE_ROWS_INSERTED "rows_inserted"
#define DG_WIRE_ROW "row"
#define DG_WIRE_TABLE_DEF "table_def"
#define DG_WIRE_VIEW "view"
#define DG_WIRE_VIEW_DEF "view_def"
#define DG_WIRE_CHANGES "changes"
#define DG_WIRE_CHANGES_TOTAL "changes_total"
#define DG_WIRE_CHANGES_TRUNCATED "changes_truncated"
/* Inside "error". */
#define DG_WIRE_ERR_STATUS "status"
#define DG_WIRE_ERR_CODE "code"
#define DG_WIRE_ERR_TITLE "title"
#define DG_WIRE_ERR_DETAIL "detail"
#define DG_WIRE_ERR_CONFLICTS "conflicts"
/* "status" values. */
#define DG_WIRE_APPLIED "applied"
#define DG_WIRE_REJECTED "rejected"

/* A request_id is an opaque client token; 128 bytes hold any UUID or ULID
 * with room for a prefix, and keep the waiter table's keys small. */
#define DG_WIRE_REQUEST_ID_MAX 128
/* A caller tag is 64 bits as lowercase hex (entry_mac.h DG_CALLER_TAG_LEN). */
#define DG_WIRE_CALLER_TAG_LEN 16

/** 1 if s[0..n) is a valid request_id: 1..DG_WIRE_REQUEST_ID_MAX bytes,
 *  each printable ASCII (0x21..0x7e). */
int dg_wire_request_id_valid(const char *s, size_t n);

/* ---- requests ------------------------------------------------------------- */

/*
 * A request's envelope. Building: the caller fills op, user, caller,
 * caller_tag and table (NULL: none); request_id and body are not used.
 * Decoding: every string borrows from body, which the struct owns.
 */
typedef struct {
  const char *op;         /* NULL when missing or not a string              */
  const char *request_id; /* NULL when missing or not valid (dg_wire_request_id_valid) */
  const char *user;       /* NULL when missing or not a string              */
  const char *caller;     /* NULL when missing or not a string              */
  const char *caller_tag; /* NULL unless DG_WIRE_CALLER_TAG_LEN lowercase hex */
  const char *table;      /* NULL when missing or not a string              */
  json_t *body;           /* decoding: the whole request (owned), or NULL   */
} dg_wire_req_t;

/** A new request object with the envelope's members in wire order (op,
 *  user, caller, caller_tag, table; each of the last three left out when
 *  NULL: the server's own requests have no caller). The caller adds the
 *  op-specific members, then dg_wire_req_finish. json_decref frees it. */
json_t *dg_wire_req_new(const dg_wire_req_t *env);

/** Adds the request_id, the last member, to a request from dg_wire_req_new. */
void dg_wire_req_finish(json_t *req, const char *request_id);

/** The same opening written as text into an object dg_jsonw_obj has not
 *  yet opened: w is initialised on out and left inside the object, for the
 *  caller to append members (an import's rows). */
void dg_wire_req_open(dg_jsonw_t *w, dg_buf_t *out, const dg_wire_req_t *env);

/** Closes a request text from dg_wire_req_open (after its members) with
 *  its request_id. */
void dg_wire_req_close(dg_buf_t *out, const char *request_id);

/* dg_wire_req_decode flags. */
#define DG_WIRE_DUPLICATES_OK 0x1 /* accept repeated members (the last wins) */

/**
 * Decodes a request text. out is always filled and must be disposed
 * (dg_wire_req_dispose), even on failure: the manager answers a request
 * it cannot apply under whatever request_id and user it could read. No
 * allocation but jansson's DOM of the text.
 *   0            a JSON object with a string "op"
 *   DG_EINVAL    not a JSON object, or a member repeated (unless
 *                DG_WIRE_DUPLICATES_OK): out->body is NULL, all members NULL
 *   DG_ENOTFOUND an object without a string "op": out->body is set
 */
int dg_wire_req_decode(const char *text, size_t len, int flags, dg_wire_req_t *out);

/** Frees what dg_wire_req_decode kept (the DOM); out's strings die with it. */
void dg_wire_req_dispose(dg_wire_req_t *req);

/* ---- outcomes: reading ---------------------------------------------------- */

/** The top-level outcome members readers look up. */
typedef enum {
  DG_WIRE_O_UPDATE_ID,
  DG_WIRE_O_STREAM_ID,
  DG_WIRE_O_REQUEST_ID,
  DG_WIRE_O_USER,
  DG_WIRE_O_CALLER_TAG,
  DG_WIRE_O_OP,
  DG_WIRE_O_TABLE,
  DG_WIRE_O_STATUS,
  DG_WIRE_O_ERROR,
  DG_WIRE_O_TS,
  DG_WIRE_O_INSERTED,
  DG_WIRE_O_INSERTED_TOTAL,
  DG_WIRE_O_INSERTED_TRUNCATED,
  DG_WIRE_O_INSERTED_RANGES,
  DG_WIRE_O_DELETED,
  DG_WIRE_O_DELETED_TOTAL,
  DG_WIRE_O_DELETED_TRUNCATED,
  DG_WIRE_O_DELETED_RANGES,
  DG_WIRE_O_MOVED,
  DG_WIRE_O_REVERTS,
  DG_WIRE_O_ROWS,
  DG_WIRE_O_ROWS_INSERTED,
  DG_WIRE_O_ROW,
  DG_WIRE_O_TABLE_DEF,
  DG_WIRE_O_VIEW,
  DG_WIRE_O_VIEW_DEF,
  DG_WIRE_O_CHANGES_TOTAL,
  DG_WIRE_O_CHANGES_TRUNCATED,
  DG_WIRE_O_CHANGES,
  DG_WIRE_O__COUNT
} dg_wire_out_t;

/** The member's name ("update_id" ...), or NULL for a value out of range. */
const char *dg_wire_out_name(dg_wire_out_t m);

/** The raw text of member m of the outcome res[0..len), found by scanning
 *  (no decoding, no allocation). 0 and *v, *n set; DG_ENOTFOUND when
 *  absent; DG_EINVAL when res is no object. */
int dg_wire_out_raw(const char *res, size_t len, dg_wire_out_t m, const char **v, size_t *n);

/** Member m, a string, copied into out[0..cap) with its NUL: 1, or 0 when
 *  absent, null, not a string, or cap too small (out then undefined). Only
 *  a string with escapes is decoded (one allocation). */
int dg_wire_out_str(const char *res, size_t len, dg_wire_out_t m, char *out, size_t cap);

/** Member m decoded on its own (any JSON value, a new reference the caller
 *  json_decrefs), or NULL when absent or malformed. */
json_t *dg_wire_out_get(const char *res, size_t len, dg_wire_out_t m);

/** 1 if member m is the literal true. */
int dg_wire_out_true(const char *res, size_t len, dg_wire_out_t m);

/** 1 if the outcome's status is "applied". */
int dg_wire_out_applied(const char *res, size_t len);

/** The inserted (add != 0) or deleted members' names, for readers that
 *  handle both sides alike. */
dg_wire_out_t dg_wire_out_ids(int add);
dg_wire_out_t dg_wire_out_ids_truncated(int add);
dg_wire_out_t dg_wire_out_ids_ranges(int add);

/**
 * Calls each(table, arg) for the outcome's "table" and then for the
 * "table" of each of its changes, skipping those that are absent or not a
 * string, until each returns nonzero. Decodes the whole outcome (its
 * changes can be long): for the filters that must look at every change.
 * 0, or DG_EINVAL when res is not valid JSON (each is then never called).
 */
int dg_wire_out_tables(const char *res, size_t len, int (*each)(const char *table, void *arg), void *arg);
/** Whether the outcome concerns table: its own "table" or any change's
 *  (dg_wire_out_tables). */
int dg_wire_out_concerns(const char *res, size_t len, const char *table);

/* ---- outcomes: writing ---------------------------------------------------- */

/** Opens an outcome: "{" then update_id and stream_id (both update_id),
 *  request_id, user (null when NULL), caller_tag (only when a valid tag),
 *  op and table (null when NULL). w is initialised on out. */
void dg_wire_out_open(dg_jsonw_t *w, dg_buf_t *out, const char *update_id, const char *request_id,
                      const char *user, const char *caller_tag, const char *op, const char *table);

/** Writes a rejection's members after dg_wire_out_open: status
 *  "rejected", error {status, code, title, detail[, conflicts (raw JSON,
 *  when conflicts is not NULL)]}, ts, and an empty changes list. The
 *  caller closes the object. */
void dg_wire_out_rejected(dg_jsonw_t *w, int status, const char *detail, const char *conflicts, const char *ts);

#endif
