/* test_errors.c -- the one error space (common.h DG_ERRNO_MAP, DG_STATUS_MAP):
 * every code is distinct, named and mapped to the status the API contract
 * gives it; every problem status has the code ../shared/API.md lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dg/common.h"

static void test_codes_are_distinct_and_named(void **state) {
  (void)state;
  static const int codes[] = {
#define CODE(name, value, status, text) DG_##name,
      DG_ERRNO_MAP(CODE)
#undef CODE
  };
  size_t n = sizeof codes / sizeof codes[0];
  assert_true(n >= 13);
  for (size_t i = 0; i < n; i++) {
    assert_true(codes[i] < 0);
    assert_string_not_equal(dg_strerror(codes[i]), "unknown error");
    for (size_t j = i + 1; j < n; j++) assert_int_not_equal(codes[i], codes[j]);
  }
  assert_string_equal(dg_strerror(DG_OK), "ok");
  assert_string_equal(dg_strerror(-999), "unknown error");
  assert_string_equal(dg_strerror(DG_EOVERFLOW), "value out of range");
}

static void test_statuses_of_codes(void **state) {
  (void)state;
  assert_int_equal(dg_err_status(DG_EINVAL), 400);
  assert_int_equal(dg_err_status(DG_EAUTH), 401);
  assert_int_equal(dg_err_status(DG_ENOTFOUND), 404);
  assert_int_equal(dg_err_status(DG_ECONFLICT), 409);
  assert_int_equal(dg_err_status(DG_EEXIST), 409);
  assert_int_equal(dg_err_status(DG_EGONE), 410);
  assert_int_equal(dg_err_status(DG_ETOOBIG), 413);
  assert_int_equal(dg_err_status(DG_EUNAVAIL), 503);
  assert_int_equal(dg_err_status(DG_ETIMEOUT), 504);
  assert_int_equal(dg_err_status(DG_EINTERNAL), 500);
  assert_int_equal(dg_err_status(-999), 500);
}

static void test_problem_codes_of_api_md(void **state) {
  (void)state;
  static const struct {
    int status;
    const char *code, *title;
  } want[] = {
      {400, "bad_request", "Bad Request"},       {401, "unauthorized", "Unauthorized"},
      {403, "forbidden", "Forbidden"},           {404, "not_found", "Not Found"},
      {405, "method_not_allowed", "Method Not Allowed"}, {409, "conflict", "Conflict"},
      {410, "gone", "Gone"},                     {413, "payload_too_large", "Payload Too Large"},
      {429, "too_many_requests", "Too Many Requests"}, {500, "internal", "Internal Server Error"},
      {503, "unavailable", "Service Unavailable"}, {504, "timeout", "Gateway Timeout"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    assert_string_equal(dg_status_code(want[i].status), want[i].code);
    assert_string_equal(dg_status_reason(want[i].status), want[i].title);
  }
  assert_string_equal(dg_status_code(418), "internal");
  assert_string_equal(dg_status_reason(418), "Internal Server Error");
  assert_string_equal(dg_status_reason(204), "No Content");
  assert_string_equal(dg_status_reason(299), "OK");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_codes_are_distinct_and_named),
      cmocka_unit_test(test_statuses_of_codes),
      cmocka_unit_test(test_problem_codes_of_api_md),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
