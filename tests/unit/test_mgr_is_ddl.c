/* test_mgr_is_ddl.c -- dg__mgr_is_ddl reads a request's op without decoding
 * it when the text begins {"op":"<no DDL op>"; its answer must always be the
 * one a full decode gives (dg__mgr_apply decodes the same way), whatever the
 * text: checked on chosen texts and on random mutations of them. The same
 * for dg__mgr_revert_target (undo.c), which tells a compact revert. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "manager/internal.h"

/* The answer by decoding, as dg__mgr_apply decodes a request. */
static int by_decoding(const char *text, size_t len) {
  static const char *const ddl[] = {"create_table", "delete_table", "create_view", "delete_view"};
  json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
  const char *op = json_string_value(json_object_get(o, "op"));
  int yes = 0;
  for (size_t i = 0; op && i < 4; i++) yes |= strcmp(op, ddl[i]) == 0;
  json_decref(o);
  return yes;
}

/* A compact revert by decoding: op revert, compact true, reverts an id. */
static int revert_by_decoding(const char *text, size_t len, dg_redis_xid_t *u) {
  json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
  const char *op = json_string_value(json_object_get(o, "op"));
  const char *id = json_string_value(json_object_get(o, "reverts"));
  int yes = op && strcmp(op, "revert") == 0 && json_is_true(json_object_get(o, "compact")) && id &&
            dg_redis_xid_parse(id, strlen(id), u) == 0;
  json_decref(o);
  return yes;
}

static void revert_agrees(const char *text, size_t len) {
  dg_redis_xid_t a = {0, 0}, b = {0, 0};
  int x = dg__mgr_revert_target(text, len, &a), y = revert_by_decoding(text, len, &b);
  assert_int_equal(x, y);
  if (x) assert_int_equal(dg_redis_xid_cmp(a, b), 0);
}

static const char *const cases[] = {
    "{\"op\":\"revert\",\"reverts\":\"17-3\",\"compact\":true}",
    "{\"op\":\"revert\",\"reverts\":\"17-3\",\"compact\":false}",
    "{\"op\":\"revert\",\"reverts\":\"17-x\",\"compact\":true}",
    "{\"op\":\"revertx\",\"reverts\":\"17-3\",\"compact\":true}",
    "{\"op\":\"update_cell\",\"value\":\"compact\",\"compact\":true,\"reverts\":\"1-1\"}",
    "{\"compact\":true,\"op\":\"revert\",\"reverts\":\"17-3\"}",
    "{\"op\":\"rev\\u0065rt\",\"reverts\":\"17-3\",\"compact\":true}",
    "{\"op\":\"revert\",\"op\":\"revert\",\"reverts\":\"17-3\",\"compact\":true}",
    "{\"op\":\"insert_rows\",\"table\":\"t\",\"count\":0}",
    "{\"op\":\"create_table\",\"table\":\"t\"}",
    "{\"op\":\"delete_table\",\"table\":\"t\"}",
    "{\"op\":\"create_view\",\"view\":\"v\"}",
    "{\"op\":\"delete_view\",\"view\":\"v\"}",
    "{\"op\":\"create_table\"",                       /* cut short: not JSON   */
    "{\"op\":\"insert_rows\",\"op\":\"create_table\"}", /* op twice: refused    */
    "{\"op\":\"create_table\",\"op\":\"insert_rows\"}",
    "{\"op\":\"create_tablex\"}",
    "{\"op\":\"create_tabl\"}",
    "{\"op\":\"create\\u005ftable\"}",                /* an escape: decoded    */
    "{\"op\":\"insert\\u005frows\"}",
    "{\"table\":\"t\",\"op\":\"create_table\"}",      /* op not first          */
    "{ \"op\":\"create_table\"}",
    "{\"op\" : \"create_table\"}",
    "{\"op\":\"\"}",
    "{\"op\":\"\xff\xfe\"}",                          /* not UTF-8             */
    "{\"op\":\"insert_rows\",\"table\":",
    "{\"op\":\"update_cell\"} trailing",
    "{\"op\":\"create_table\"} trailing",
    "{\"op\":\"",
    "{\"op\":",
    "",
    "[\"op\",\"create_table\"]",
    "{\"op\":\"create_table\\\"\"}",
    "{\"op\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
};

static void test_chosen_texts(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t len = strlen(cases[i]);
    assert_int_equal(dg__mgr_is_ddl(cases[i], len), by_decoding(cases[i], len));
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) revert_agrees(cases[i], strlen(cases[i]));
  dg_redis_xid_t u = {0, 0};
  assert_true(dg__mgr_revert_target(cases[0], strlen(cases[0]), &u));
  assert_true(u.ms == 17 && u.seq == 3);
  assert_true(dg__mgr_revert_target(cases[5], strlen(cases[5]), &u));
  assert_true(dg__mgr_revert_target(cases[6], strlen(cases[6]), &u)); /* an escape: decoded */
  assert_false(dg__mgr_revert_target(cases[1], strlen(cases[1]), &u));
  assert_false(dg__mgr_revert_target(cases[4], strlen(cases[4]), &u));
  assert_false(dg__mgr_revert_target(cases[7], strlen(cases[7]), &u)); /* op twice: refused */
  assert_true(dg__mgr_is_ddl(cases[9], strlen(cases[9])));
  assert_false(dg__mgr_is_ddl(cases[8], strlen(cases[8])));
  assert_false(dg__mgr_is_ddl(cases[14], strlen(cases[14])));
}

/* Each chosen text with bytes replaced, inserted or cut, many times. */
static void test_mutations_agree(void **state) {
  (void)state;
  static const char alphabet[] = "{}\":,\\ _abcdeilmnoprstuvwx-0137\x01\xc3\xa9";
  srand(19);
  char buf[256];
  for (int round = 0; round < 200000; round++) {
    const char *c = cases[(size_t)rand() % (sizeof cases / sizeof cases[0])];
    size_t len = strlen(c);
    memcpy(buf, c, len);
    int edits = 1 + rand() % 3;
    for (int k = 0; k < edits; k++) {
      size_t at = len ? (size_t)rand() % len : 0;
      char b = alphabet[(size_t)rand() % (sizeof alphabet - 1)];
      switch (rand() % 3) {
        case 0:
          if (len) buf[at] = b;
          break;
        case 1:
          if (len + 1 < sizeof buf) {
            memmove(buf + at + 1, buf + at, len - at);
            buf[at] = b;
            len++;
          }
          break;
        default:
          len = at;
      }
    }
    assert_int_equal(dg__mgr_is_ddl(buf, len), by_decoding(buf, len));
    revert_agrees(buf, len);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chosen_texts),
      cmocka_unit_test(test_mutations_agree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
