/*
 * test_isotime.c -- RFC 3339 date-times to milliseconds (src/common/isotime.c):
 * key expiry and `duckgrid restore --until-time`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dg/isotime.h"

static int64_t ms_of(const char *s) {
  int64_t v = -12345;
  return dg_parse_rfc3339_ms(s, &v) == 0 ? v : -1;
}

static void test_valid(void **state) {
  (void)state;
  assert_int_equal(ms_of("1970-01-01T00:00:00Z"), 0);
  assert_int_equal(ms_of("2026-12-05T18:30:00Z"), 1796495400000LL);
  assert_int_equal(ms_of("2026-12-05T18:30:00.25Z"), 1796495400250LL);
  assert_int_equal(ms_of("2026-12-05T18:30:00.123456z"), 1796495400123LL);
  assert_int_equal(ms_of("2026-12-05T19:30:00+01:00"), 1796495400000LL);
  assert_int_equal(ms_of("2026-12-05T17:00:00.5-01:30"), 1796495400500LL);
  assert_int_equal(ms_of("2028-02-29T00:00:00Z"), 1835395200000LL);
}

static void test_invalid(void **state) {
  (void)state;
  const char *bad[] = {"", "2026-12-05", "2026-12-05T18:30:00", "2026-12-05 18:30:00Z", "2026-13-01T00:00:00Z",
                       "2026-02-31T00:00:00Z", "2027-02-29T00:00:00Z", "1969-12-31T23:59:59Z",
                       "2026-12-05T18:30:00.Z", "2026-12-05T18:30:00+1:00", "2026-12-05T24:00:00Z",
                       "2026-12-05T18:30:00Zjunk", "yesterday"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int64_t v = 7;
    assert_int_not_equal(dg_parse_rfc3339_ms(bad[i], &v), 0);
    assert_int_equal(v, 7); /* untouched */
  }
  assert_int_not_equal(dg_parse_rfc3339_ms(NULL, NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_valid), cmocka_unit_test(test_invalid)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
