/*
 * test_decimal.c -- dg_decimal_parse / dg_decimal_format: strict grammar,
 * half-away-from-zero rounding at every scale, the 10^(18-scale) limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dg/decimal.h"

static int parse(const char *s, int scale, int64_t *v) {
  return dg_decimal_parse(s, strlen(s), scale, v);
}

static void want_value(const char *s, int scale, int64_t want) {
  int64_t v = 12345;
  int rc = parse(s, scale, &v);
  if (rc != 0 || v != want)
    fail_msg("parse(\"%s\", %d) = rc %d, %lld; want %lld", s, scale, rc, (long long)v,
             (long long)want);
}

static void want_error(const char *s, int scale, int err) {
  int64_t v = 777;
  int rc = parse(s, scale, &v);
  if (rc != err) fail_msg("parse(\"%s\", %d) = rc %d; want %d", s, scale, rc, err);
  assert_int_equal(v, 777); /* out untouched */
}

static void test_parse_plain(void **state) {
  (void)state;
  want_value("0", 2, 0);
  want_value("-0", 2, 0);
  want_value("12", 2, 1200);
  want_value("+12", 2, 1200);
  want_value("-12.5", 2, -1250);
  want_value("120.50", 2, 12050);
  want_value("3.34", 2, 334);
  want_value("-0.05", 2, -5);
  want_value(".5", 2, 50);
  want_value("5.", 2, 500);
  want_value("007.10", 2, 710);
  want_value("12", 0, 12);
  want_value("0.000001", 6, 1);
  want_value("123456789012.123456", 6, INT64_C(123456789012123456));
}

static void test_parse_rounding(void **state) {
  (void)state;
  want_value("0.005", 2, 1);
  want_value("-0.005", 2, -1);
  want_value("0.0049999", 2, 0);
  want_value("-0.0049999", 2, 0);
  want_value("2.675", 2, 268); /* exact decimal: no binary surprise */
  want_value("0.5", 0, 1);
  want_value("-0.5", 0, -1);
  want_value("1.4999999999999999999999", 0, 1);
  want_value("0.0000005", 6, 1);
  want_value("0.00000049", 6, 0);
  want_value("9.999", 2, 1000);
  want_value("0.4", 0, 0);
  want_value("0.0001", 2, 0);
}

static void test_parse_exponent(void **state) {
  (void)state;
  want_value("1e2", 2, 10000);
  want_value("1.5E-2", 2, 2);
  want_value("-1.5e-2", 2, -2);
  want_value("125e-2", 2, 125);
  want_value("1e-400", 2, 0);
  want_value("0e999999", 2, 0);
  want_value("1.2345e3", 0, 1235);
  want_error("1e400", 2, DG_EOVERFLOW);
  want_error("1e", 2, DG_EINVAL);
  want_error("1e+", 2, DG_EINVAL);
  want_error("e5", 2, DG_EINVAL);
}

static void test_parse_limits(void **state) {
  (void)state;
  want_value("9999999999999999.99", 2, INT64_C(999999999999999999));
  want_error("10000000000000000", 2, DG_EOVERFLOW);
  want_error("-10000000000000000.00", 2, DG_EOVERFLOW);
  want_error("9999999999999999.995", 2, DG_EOVERFLOW); /* rounds up to 10^16 */
  want_value("999999999999999999", 0, INT64_C(999999999999999999));
  want_error("1000000000000000000", 0, DG_EOVERFLOW);
  want_value("999999999999.999999", 6, INT64_C(999999999999999999));
  want_error("1000000000000", 6, DG_EOVERFLOW);
  want_error("99999999999999999999999999", 0, DG_EOVERFLOW);
  want_value("0000000000000000000000000001", 0, 1);
}

static void test_parse_malformed(void **state) {
  (void)state;
  const char *bad[] = {"", "-", "+", ".", "-.", "1.2.3", "1,5", " 1", "1 ", "0x10", "inf",
                       "nan", "1e5.5", "--1", "+-1", "١"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) want_error(bad[i], 2, DG_EINVAL);
  int64_t v = 5;
  assert_int_equal(dg_decimal_parse("1", 1, 7, &v), DG_EINVAL);
  assert_int_equal(dg_decimal_parse("1", 1, -1, &v), DG_EINVAL);
  assert_int_equal(dg_decimal_parse(NULL, 1, 2, &v), DG_EINVAL);
  /* Length is what counts, not a NUL: "12" followed by garbage. */
  assert_int_equal(dg_decimal_parse("12xyz", 2, 2, &v), 0);
  assert_int_equal(v, 1200);
  char big[DG_DECIMAL_MAX_INPUT + 2];
  memset(big, '1', sizeof big);
  assert_int_equal(dg_decimal_parse(big, sizeof big, 0, &v), DG_EINVAL);
  assert_int_equal(dg_decimal_parse("1\0" "2", 3, 0, &v), DG_EINVAL);
}

static void want_format(int64_t v, int scale, const char *want) {
  char buf[DG_DECIMAL_FORMAT_MAX];
  size_t n = dg_decimal_format(v, scale, buf, sizeof buf);
  assert_string_equal(buf, want);
  assert_int_equal(n, strlen(want));
}

static void test_format(void **state) {
  (void)state;
  want_format(-5, 2, "-0.05");
  want_format(334, 2, "3.34");
  want_format(12, 0, "12");
  want_format(0, 0, "0");
  want_format(0, 2, "0.00");
  want_format(1200, 2, "12.00");
  want_format(-1, 6, "-0.000001");
  want_format(INT64_C(999999999999999999), 6, "999999999999.999999");
  want_format(INT64_MIN, 0, "-9223372036854775808");
  want_format(INT64_MIN, 6, "-9223372036854.775808");
  char small[4];
  size_t n = dg_decimal_format(-12345, 2, small, sizeof small);
  assert_int_equal(n, 7); /* "-123.45" */
  assert_string_equal(small, "-12");
}

static void test_roundtrip(void **state) {
  (void)state;
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int scale = (int)(x % 7);
    int64_t v = (int64_t)(x % (uint64_t)DG_DECIMAL_LIMIT);
    if (x & 1) v = -v;
    char buf[DG_DECIMAL_FORMAT_MAX];
    size_t n = dg_decimal_format(v, scale, buf, sizeof buf);
    int64_t back = 0;
    assert_int_equal(dg_decimal_parse(buf, n, scale, &back), 0);
    assert_true(back == v);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_plain),     cmocka_unit_test(test_parse_rounding),
      cmocka_unit_test(test_parse_exponent),  cmocka_unit_test(test_parse_limits),
      cmocka_unit_test(test_parse_malformed), cmocka_unit_test(test_format),
      cmocka_unit_test(test_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
