/* test_wire.c -- the request/outcome wire format (src/common/wire.c):
 * request envelopes built and decoded, decoding errors, and the outcome
 * writers and accessors on outcome texts as the manager writes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dg/buf.h"
#include "dg/common.h"
#include "dg/jsonw.h"
#include "dg/wire.h"

static const char TAG[] = "0123456789abcdef";

/* ---- requests ---------------------------------------------------------------- */

static void test_req_round_trip(void **state) {
  (void)state;
  dg_wire_req_t env = {.op = "update_cells", .user = "ana", .caller = "key:7", .caller_tag = TAG, .table = "sales"};
  json_t *req = dg_wire_req_new(&env);
  assert_non_null(req);
  json_object_set_new(req, "updates", json_array());
  dg_wire_req_finish(req, "r-1");
  char *text = json_dumps(req, JSON_COMPACT);
  /* The byte order the API has always written: envelope, body, request_id. */
  assert_string_equal(text, "{\"op\":\"update_cells\",\"user\":\"ana\",\"caller\":\"key:7\",\"caller_tag\":"
                            "\"0123456789abcdef\",\"table\":\"sales\",\"updates\":[],\"request_id\":\"r-1\"}");
  dg_wire_req_t got;
  assert_int_equal(dg_wire_req_decode(text, strlen(text), 0, &got), 0);
  assert_string_equal(got.op, "update_cells");
  assert_string_equal(got.user, "ana");
  assert_string_equal(got.caller, "key:7");
  assert_string_equal(got.caller_tag, TAG);
  assert_string_equal(got.table, "sales");
  assert_string_equal(got.request_id, "r-1");
  assert_true(json_is_array(json_object_get(got.body, "updates")));
  dg_wire_req_dispose(&got);
  assert_null(got.body);
  free(text);
  json_decref(req);
}

static void test_req_without_table(void **state) {
  (void)state;
  dg_wire_req_t env = {.op = "create_view", .user = "u", .caller = "jwt:u", .caller_tag = TAG};
  json_t *req = dg_wire_req_new(&env);
  dg_wire_req_finish(req, "x");
  char *text = json_dumps(req, JSON_COMPACT);
  assert_string_equal(text,
                      "{\"op\":\"create_view\",\"user\":\"u\",\"caller\":\"jwt:u\",\"caller_tag\":\"0123456789abcdef\","
                      "\"request_id\":\"x\"}");
  dg_wire_req_t got;
  assert_int_equal(dg_wire_req_decode(text, strlen(text), 0, &got), 0);
  assert_null(got.table);
  dg_wire_req_dispose(&got);
  free(text);
  json_decref(req);
}

/* The text builder (an import) writes what the DOM builder writes. */
static void test_req_text_equals_dom(void **state) {
  (void)state;
  dg_wire_req_t env = {.op = "insert_rows", .user = "a\"b", .caller = "key:1", .caller_tag = TAG, .table = "t"};
  json_t *req = dg_wire_req_new(&env);
  json_object_set_new(req, "echo_rows", json_false());
  dg_wire_req_finish(req, "r-9");
  char *want = json_dumps(req, JSON_COMPACT);
  dg_buf_t b;
  dg_buf_init(&b);
  dg_jsonw_t w;
  dg_wire_req_open(&w, &b, &env);
  dg_jsonw_key(&w, "echo_rows");
  dg_jsonw_bool(&w, 0);
  dg_wire_req_close(&b, "r-9");
  assert_int_equal(b.len, strlen(want));
  assert_memory_equal(b.data, want, b.len);
  dg_buf_dispose(&b);
  free(want);
  json_decref(req);
}

static int decode_rc(const char *text, int flags) {
  dg_wire_req_t r;
  int rc = dg_wire_req_decode(text, strlen(text), flags, &r);
  if (rc == DG_EINVAL) assert_null(r.body);
  else assert_non_null(r.body);
  dg_wire_req_dispose(&r);
  return rc;
}

static void test_req_decode_errors(void **state) {
  (void)state;
  assert_int_equal(decode_rc("", 0), DG_EINVAL);
  assert_int_equal(decode_rc("{\"op\":", 0), DG_EINVAL);
  assert_int_equal(decode_rc("[\"op\"]", 0), DG_EINVAL);
  assert_int_equal(decode_rc("\"op\"", 0), DG_EINVAL);
  /* a repeated member makes the text no request (apply.c's rule) ... */
  assert_int_equal(decode_rc("{\"op\":\"update_cell\",\"op\":\"create_table\"}", 0), DG_EINVAL);
  assert_int_equal(decode_rc("{\"op\":\"x\",\"user\":\"a\",\"user\":\"b\"}", 0), DG_EINVAL);
  /* ... unless the caller reads leniently (manager.c reject_with) */
  assert_int_equal(decode_rc("{\"op\":\"update_cell\",\"op\":\"create_table\"}", DG_WIRE_DUPLICATES_OK), 0);
  /* missing or mistyped op: the rest is still read */
  dg_wire_req_t r;
  const char *t = "{\"user\":\"ana\",\"request_id\":\"r-1\",\"table\":\"s\"}";
  assert_int_equal(dg_wire_req_decode(t, strlen(t), 0, &r), DG_ENOTFOUND);
  assert_null(r.op);
  assert_string_equal(r.user, "ana");
  assert_string_equal(r.request_id, "r-1");
  assert_string_equal(r.table, "s");
  dg_wire_req_dispose(&r);
  assert_int_equal(decode_rc("{\"op\":7}", 0), DG_ENOTFOUND);
  assert_int_equal(decode_rc("{\"op\":null}", 0), DG_ENOTFOUND);
  /* wrong types read as absent */
  t = "{\"op\":\"x\",\"user\":1,\"caller\":[],\"table\":{},\"request_id\":5,\"caller_tag\":true}";
  assert_int_equal(dg_wire_req_decode(t, strlen(t), 0, &r), 0);
  assert_null(r.user);
  assert_null(r.caller);
  assert_null(r.table);
  assert_null(r.request_id);
  assert_null(r.caller_tag);
  dg_wire_req_dispose(&r);
}

static const char *rid_of(const char *text) {
  static char out[256];
  dg_wire_req_t r;
  dg_wire_req_decode(text, strlen(text), 0, &r);
  const char *v = r.request_id;
  snprintf(out, sizeof out, "%s", v ? v : "(null)");
  dg_wire_req_dispose(&r);
  return out;
}

static const char *tag_of(const char *text) {
  static char out[64];
  dg_wire_req_t r;
  dg_wire_req_decode(text, strlen(text), 0, &r);
  snprintf(out, sizeof out, "%s", r.caller_tag ? r.caller_tag : "(null)");
  dg_wire_req_dispose(&r);
  return out;
}

static void test_req_ids_checked(void **state) {
  (void)state;
  assert_string_equal(rid_of("{\"op\":\"x\",\"request_id\":\"\"}"), "(null)");
  assert_string_equal(rid_of("{\"op\":\"x\",\"request_id\":\"a b\"}"), "(null)");
  assert_string_equal(rid_of("{\"op\":\"x\",\"request_id\":\"\\u00e9\"}"), "(null)");
  assert_string_equal(rid_of("{\"op\":\"x\",\"request_id\":\"~!\"}"), "~!");
  char t[300], want[200];
  memset(want, 'r', DG_WIRE_REQUEST_ID_MAX);
  want[DG_WIRE_REQUEST_ID_MAX] = '\0';
  snprintf(t, sizeof t, "{\"op\":\"x\",\"request_id\":\"%s\"}", want);
  assert_string_equal(rid_of(t), want);
  snprintf(t, sizeof t, "{\"op\":\"x\",\"request_id\":\"%sr\"}", want);
  assert_string_equal(rid_of(t), "(null)");
  assert_string_equal(tag_of("{\"op\":\"x\",\"caller_tag\":\"0123456789abcdef\"}"), TAG);
  assert_string_equal(tag_of("{\"op\":\"x\",\"caller_tag\":\"0123456789ABCDEF\"}"), "(null)");
  assert_string_equal(tag_of("{\"op\":\"x\",\"caller_tag\":\"0123456789abcde\"}"), "(null)");
  assert_string_equal(tag_of("{\"op\":\"x\",\"caller_tag\":\"0123456789abcdef0\"}"), "(null)");
  assert_true(dg_wire_request_id_valid("a", 1));
  assert_false(dg_wire_request_id_valid("a", 0));
  assert_false(dg_wire_request_id_valid(NULL, 1));
}

/* ---- outcomes ----------------------------------------------------------------- */

/* What apply.c writes for a rejected request, and manager.c's reject_with. */
static void test_out_rejected_text(void **state) {
  (void)state;
  dg_buf_t b;
  dg_buf_init(&b);
  dg_jsonw_t w;
  dg_wire_out_open(&w, &b, "5-0", "r-1", "ana", TAG, "update_cell", "sales");
  dg_wire_out_rejected(&w, 409, "held", "[{\"row_id\":1}]", "1970-01-01T00:00:00.005Z");
  dg_jsonw_end(&w);
  dg_buf_putc(&b, '\0');
  assert_string_equal(b.data, "{\"update_id\":\"5-0\",\"stream_id\":\"5-0\",\"request_id\":\"r-1\",\"user\":\"ana\","
                              "\"caller_tag\":\"0123456789abcdef\",\"op\":\"update_cell\",\"table\":\"sales\","
                              "\"status\":\"rejected\",\"error\":{\"status\":409,\"code\":\"conflict\",\"title\":"
                              "\"Conflict\",\"detail\":\"held\",\"conflicts\":[{\"row_id\":1}]},\"ts\":"
                              "\"1970-01-01T00:00:00.005Z\",\"changes\":[]}");
  dg_buf_reset(&b);
  /* no (valid) tag, no user, op or table: a reject_with of an unreadable request */
  dg_wire_out_open(&w, &b, "6-1", "6-1", NULL, "XYZ", NULL, NULL);
  dg_wire_out_rejected(&w, 500, "boom", NULL, "ts");
  dg_jsonw_end(&w);
  dg_buf_putc(&b, '\0');
  assert_string_equal(b.data, "{\"update_id\":\"6-1\",\"stream_id\":\"6-1\",\"request_id\":\"6-1\",\"user\":null,"
                              "\"op\":null,\"table\":null,\"status\":\"rejected\",\"error\":{\"status\":500,\"code\":"
                              "\"internal\",\"title\":\"Internal Server Error\",\"detail\":\"boom\"},\"ts\":\"ts\","
                              "\"changes\":[]}");
  assert_false(dg_wire_out_applied(b.data, b.len - 1));
  dg_buf_dispose(&b);
}

/* An applied outcome as apply.c writes one (a compact delete, a revert). */
static const char APPLIED[] =
    "{\"update_id\":\"1732870000000-3\",\"stream_id\":\"1732870000000-3\",\"request_id\":\"r-\\\"q\\\"\","
    "\"user\":\"ana\",\"caller_tag\":\"0123456789abcdef\",\"op\":\"delete_row\",\"table\":\"sales\","
    "\"status\":\"applied\",\"error\":null,\"ts\":\"2024-11-29T09:46:40.000Z\","
    "\"inserted\":[7,\"9007199254740993\"],"
    "\"deleted\":[],\"deleted_total\":5,\"deleted_truncated\":true,\"deleted_ranges\":[[1,3],[8,9]],"
    "\"row\":{\"id\":7,\"parent_id\":null},"
    "\"changes\":[{\"table\":\"sales\",\"row_id\":1,\"column\":\"qty\",\"old\":\"1\",\"new\":\"2\"},"
    "{\"table\":\"other\",\"row_id\":2},{\"row_id\":3},{\"table\":4}]}";

static void test_out_accessors(void **state) {
  (void)state;
  size_t len = strlen(APPLIED);
  char s[64];
  assert_true(dg_wire_out_applied(APPLIED, len));
  assert_true(dg_wire_out_str(APPLIED, len, DG_WIRE_O_OP, s, sizeof s));
  assert_string_equal(s, "delete_row");
  assert_true(dg_wire_out_str(APPLIED, len, DG_WIRE_O_TABLE, s, sizeof s));
  assert_string_equal(s, "sales");
  assert_true(dg_wire_out_str(APPLIED, len, DG_WIRE_O_UPDATE_ID, s, sizeof s));
  assert_string_equal(s, "1732870000000-3");
  /* an escaped string is decoded */
  assert_true(dg_wire_out_str(APPLIED, len, DG_WIRE_O_REQUEST_ID, s, sizeof s));
  assert_string_equal(s, "r-\"q\"");
  assert_true(dg_wire_out_str(APPLIED, len, DG_WIRE_O_CALLER_TAG, s, sizeof s));
  assert_string_equal(s, TAG);
  /* too long for the buffer, not a string, absent */
  assert_false(dg_wire_out_str(APPLIED, len, DG_WIRE_O_OP, s, 10));
  assert_false(dg_wire_out_str(APPLIED, len, DG_WIRE_O_ERROR, s, sizeof s));
  assert_false(dg_wire_out_str(APPLIED, len, DG_WIRE_O_VIEW, s, sizeof s));
  /* raw: exact digits, no decoding */
  const char *v;
  size_t n;
  assert_int_equal(dg_wire_out_raw(APPLIED, len, dg_wire_out_ids(1), &v, &n), 0);
  assert_int_equal(n, strlen("[7,\"9007199254740993\"]"));
  assert_memory_equal(v, "[7,\"9007199254740993\"]", n);
  assert_int_equal(dg_wire_out_raw(APPLIED, len, DG_WIRE_O_ROWS, &v, &n), DG_ENOTFOUND);
  assert_int_equal(dg_wire_out_raw("[1]", 3, DG_WIRE_O_ROWS, &v, &n), DG_EINVAL);
  /* the truncated side */
  assert_true(dg_wire_out_true(APPLIED, len, dg_wire_out_ids_truncated(0)));
  assert_false(dg_wire_out_true(APPLIED, len, dg_wire_out_ids_truncated(1)));
  assert_false(dg_wire_out_true(APPLIED, len, DG_WIRE_O_STATUS));
  json_t *ranges = dg_wire_out_get(APPLIED, len, dg_wire_out_ids_ranges(0));
  assert_int_equal(json_array_size(ranges), 2);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(ranges, 1), 0)), 8);
  json_decref(ranges);
  json_t *total = dg_wire_out_get(APPLIED, len, DG_WIRE_O_DELETED_TOTAL);
  assert_int_equal(json_integer_value(total), 5);
  json_decref(total);
  json_t *row = dg_wire_out_get(APPLIED, len, DG_WIRE_O_ROW);
  assert_int_equal(json_integer_value(json_object_get(row, "id")), 7);
  json_decref(row);
  json_t *err = dg_wire_out_get(APPLIED, len, DG_WIRE_O_ERROR);
  assert_true(json_is_null(err));
  json_decref(err);
  assert_null(dg_wire_out_get(APPLIED, len, DG_WIRE_O_TABLE_DEF));
}

static void test_out_names(void **state) {
  (void)state;
  for (int i = 0; i < DG_WIRE_O__COUNT; i++) {
    const char *a = dg_wire_out_name((dg_wire_out_t)i);
    assert_non_null(a);
    for (int k = 0; k < i; k++) assert_string_not_equal(a, dg_wire_out_name((dg_wire_out_t)k));
  }
  assert_null(dg_wire_out_name(DG_WIRE_O__COUNT));
  assert_null(dg_wire_out_name((dg_wire_out_t)-1));
  assert_string_equal(dg_wire_out_name(DG_WIRE_O_INSERTED_RANGES), "inserted_ranges");
  assert_string_equal(dg_wire_out_name(dg_wire_out_ids_truncated(0)), "deleted_truncated");
  assert_string_equal(dg_wire_out_name(DG_WIRE_O_CHANGES_TRUNCATED), "changes_truncated");
}

typedef struct {
  char seen[256];
  int stop_after;
  int calls;
} collect_t;

static int collect(const char *table, void *arg) {
  collect_t *c = arg;
  strcat(c->seen, table);
  strcat(c->seen, ";");
  return ++c->calls == c->stop_after;
}

static void test_out_tables(void **state) {
  (void)state;
  collect_t c = {"", 0, 0};
  assert_int_equal(dg_wire_out_tables(APPLIED, strlen(APPLIED), collect, &c), 0);
  assert_string_equal(c.seen, "sales;sales;other;"); /* own, then each change's; non-strings skipped */
  collect_t d = {"", 2, 0};
  dg_wire_out_tables(APPLIED, strlen(APPLIED), collect, &d);
  assert_string_equal(d.seen, "sales;sales;");
  collect_t e = {"", 0, 0};
  const char *cross = "{\"table\":null,\"changes\":[{\"table\":\"a\"},{\"table\":\"b\"}]}";
  dg_wire_out_tables(cross, strlen(cross), collect, &e);
  assert_string_equal(e.seen, "a;b;");
  collect_t f = {"", 0, 0};
  assert_int_equal(dg_wire_out_tables("{\"table\":", 9, collect, &f), DG_EINVAL);
  assert_int_equal(f.calls, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_req_round_trip),    cmocka_unit_test(test_req_without_table),
      cmocka_unit_test(test_req_text_equals_dom), cmocka_unit_test(test_req_decode_errors),
      cmocka_unit_test(test_req_ids_checked),   cmocka_unit_test(test_out_rejected_text),
      cmocka_unit_test(test_out_accessors),     cmocka_unit_test(test_out_names),
      cmocka_unit_test(test_out_tables),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
