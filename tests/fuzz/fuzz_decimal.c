/*
 * fuzz_decimal.c -- libFuzzer harness for dg_decimal_parse / dg_decimal_format
 * (src/common/decimal.c), the one place where client text becomes a scaled
 * int64_t.
 *
 * The input is the decimal text itself. At every scale 0..6 it checks:
 *   - parse agrees with an independent reference parser written here (same
 *     grammar, different structure: it builds the exact rational digit by
 *     digit in __int128), on the result code and on the value;
 *   - on success |v| < 10^18 (|value| < 10^(18-scale)), format gives exactly
 *     `scale` decimals and parses back to v, and a short buffer gets the same
 *     length and a NUL-terminated prefix (snprintf semantics);
 *   - on failure *out is untouched and the code is DG_EINVAL or DG_EOVERFLOW;
 *   - a sign flips the value (parse("-" s) == -parse(s) for unsigned s).
 * Any mismatch aborts with a message naming the input and scale.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg/decimal.h"

#include "fuzz_check.h"

static int dig(char c) { return c >= '0' && c <= '9'; }

/*
 * Reference: [+-]? (digits ('.' digits?)? | '.' digits) ([eE] [+-]? digits)?
 * value = mantissa * 10^(exp + scale - nfrac), rounded half away from zero,
 * |result| < 10^18. Works on the significant digits only, so the exponent can
 * be anything; |exp| is clamped where the result is certainly 0 or too big.
 */
static int ref_parse(const char *s, size_t len, int scale, int64_t *out) {
  if (len == 0 || len > DG_DECIMAL_MAX_INPUT || scale < 0 || scale > DG_DECIMAL_MAX_SCALE)
    return DG_EINVAL;
  size_t i = 0;
  int neg = 0;
  if (s[0] == '+' || s[0] == '-') neg = s[i++] == '-';
  char sig[DG_DECIMAL_MAX_INPUT]; /* significant digits, leading zeros dropped */
  size_t nsig = 0, nint = 0, nfrac = 0;
  while (i < len && dig(s[i])) {
    if (nsig > 0 || s[i] != '0') sig[nsig++] = s[i];
    nint++;
    i++;
  }
  long point_shift = 0; /* fractional digits that came after the point */
  if (i < len && s[i] == '.') {
    i++;
    while (i < len && dig(s[i])) {
      if (nsig > 0 || s[i] != '0') sig[nsig++] = s[i];
      nfrac++;
      i++;
    }
  }
  point_shift = (long)nfrac;
  if (nint + nfrac == 0) return DG_EINVAL;
  long e = 0;
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    int en = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) en = s[i++] == '-';
    if (i >= len || !dig(s[i])) return DG_EINVAL;
    while (i < len && dig(s[i])) {
      if (e < 1000000) e = e * 10 + (s[i] - '0');
      i++;
    }
    if (en) e = -e;
  }
  if (i != len) return DG_EINVAL;
  if (nsig == 0) {
    *out = 0;
    return 0;
  }
  /* Digits of sig after which the scaled value's point sits. */
  long ipos = (long)nsig + e + scale - point_shift;
  if (ipos > 19) return DG_EOVERFLOW;
  __int128 v = 0;
  for (long k = 0; k < ipos; k++) v = v * 10 + (k < (long)nsig ? sig[k] - '0' : 0);
  int up = ipos >= 0 && ipos < (long)nsig && sig[ipos] >= '5';
  v += up;
  if (v >= (__int128)DG_DECIMAL_LIMIT) return DG_EOVERFLOW;
  *out = neg ? -(int64_t)v : (int64_t)v;
  return 0;
}

static void check_format(int64_t v, int scale, const char *in, size_t len) {
  char buf[DG_DECIMAL_FORMAT_MAX];
  size_t n = dg_decimal_format(v, scale, buf, sizeof buf);
  CHECK(n < sizeof buf && strlen(buf) == n, "format(%lld, %d) length %zu", (long long)v, scale, n);
  /* Shape: -?digits, then '.' and exactly `scale` digits when scale > 0. */
  const char *p = buf + (buf[0] == '-');
  CHECK(v < 0 ? buf[0] == '-' : buf[0] != '-', "sign of %s for %lld", buf, (long long)v);
  const char *dot = strchr(p, '.');
  if (scale == 0) {
    CHECK(dot == NULL, "format(%lld, 0) = %s has a point", (long long)v, buf);
  } else {
    CHECK(dot != NULL && dot > p && strlen(dot + 1) == (size_t)scale,
          "format(%lld, %d) = %s", (long long)v, scale, buf);
  }
  for (const char *q = p; *q; q++) CHECK(dig(*q) || q == dot, "format gave %s", buf);
  CHECK(p[0] != '0' || p[1] == '\0' || p[1] == '.', "leading zero in %s", buf);
  int64_t back = INT64_MIN;
  int rc = dg_decimal_parse(buf, n, scale, &back);
  CHECK(rc == 0 && back == v, "format(%lld, %d) = %s parses back as rc %d, %lld (input %.*s)",
        (long long)v, scale, buf, rc, (long long)back, (int)len, in);
  /* snprintf semantics on short buffers. */
  for (size_t cap = 0; cap <= n; cap++) {
    char small[DG_DECIMAL_FORMAT_MAX];
    memset(small, 'x', sizeof small);
    size_t m = dg_decimal_format(v, scale, small, cap);
    CHECK(m == n, "format into %zu bytes returned %zu, not %zu", cap, m, n);
    if (cap > 0)
      CHECK(small[cap - 1] == '\0' && memcmp(small, buf, cap - 1) == 0,
            "format into %zu bytes: bad prefix", cap);
    else
      CHECK(small[0] == 'x', "format into 0 bytes wrote");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  for (int scale = 0; scale <= DG_DECIMAL_MAX_SCALE; scale++) {
    const int64_t untouched = INT64_C(0x5a5a5a5a5a5a5a5a);
    int64_t v = untouched, r = untouched;
    int rc = dg_decimal_parse(s, size, scale, &v);
    int rrc = ref_parse(s, size, scale, &r);
    CHECK(rc == rrc && v == r, "input '%.*s' scale %d: parse rc %d v %lld, reference rc %d v %lld",
          (int)size, s, scale, rc, (long long)v, rrc, (long long)r);
    if (rc != 0) {
      CHECK(rc == DG_EINVAL || rc == DG_EOVERFLOW, "rc %d", rc);
      CHECK(v == untouched, "*out written on failure");
      continue;
    }
    CHECK(v > -DG_DECIMAL_LIMIT && v < DG_DECIMAL_LIMIT, "out of range: %lld", (long long)v);
    check_format(v, scale, s, size);

    /* A leading sign negates (both must fit the length cap). */
    if (size > 0 && size < DG_DECIMAL_MAX_INPUT && s[0] != '+' && s[0] != '-') {
      char tmp[DG_DECIMAL_MAX_INPUT];
      tmp[0] = '-';
      memcpy(tmp + 1, s, size);
      int64_t nv = untouched;
      int nrc = dg_decimal_parse(tmp, size + 1, scale, &nv);
      CHECK(nrc == 0 && nv == -v, "'-%.*s' at scale %d: rc %d v %lld, expected %lld", (int)size, s,
            scale, nrc, (long long)nv, (long long)-v);
      tmp[0] = '+';
      nrc = dg_decimal_parse(tmp, size + 1, scale, &nv);
      CHECK(nrc == 0 && nv == v, "'+%.*s' at scale %d differs", (int)size, s, scale);
    }
  }
  /* Scales outside 0..6 are refused; format treats them as 0. */
  int64_t v = 7;
  CHECK(dg_decimal_parse(s, size, -1, &v) == DG_EINVAL && v == 7, "scale -1 accepted");
  CHECK(dg_decimal_parse(s, size, 7, &v) == DG_EINVAL && v == 7, "scale 7 accepted");
  /* Format any int64_t, including INT64_MIN: derive one from the input. */
  if (size >= 8) {
    int64_t raw;
    memcpy(&raw, data, 8);
    int scale = data[size - 1] % 9 - 1; /* -1..7 */
    char buf[DG_DECIMAL_FORMAT_MAX];
    size_t n = dg_decimal_format(raw, scale, buf, sizeof buf);
    CHECK(n < sizeof buf && strlen(buf) == n, "format(%lld, %d)", (long long)raw, scale);
    if (scale >= 0 && scale <= DG_DECIMAL_MAX_SCALE && raw > -DG_DECIMAL_LIMIT &&
        raw < DG_DECIMAL_LIMIT)
      check_format(raw, scale, "(raw)", 5);
  }
  return 0;
}
