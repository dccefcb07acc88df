/*
 * decimal.c -- strict decimal strings <-> scaled int64_t (see dg/decimal.h).
 *
 * Parsing never goes through a double: the digits are read once, the decimal
 * point and exponent only move the place where the integer part ends, and
 * the first dropped digit decides the rounding (half away from zero: a 5 is
 * either exactly half or more than half, both of which round away). The
 * integer part is accumulated in a uint64_t and compared with 10^18 before
 * every step, so nothing can wrap.
 */
#include "dg/decimal.h"

#include <string.h>

static const uint64_t pow10_u64[19] = {
    1ull,
    10ull,
    100ull,
    1000ull,
    10000ull,
    100000ull,
    1000000ull,
    10000000ull,
    100000000ull,
    1000000000ull,
    10000000000ull,
    100000000000ull,
    1000000000000ull,
    10000000000000ull,
    100000000000000ull,
    1000000000000000ull,
    10000000000000000ull,
    100000000000000000ull,
    1000000000000000000ull,
};

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int dg_decimal_parse(const char *s, size_t len, int scale, int64_t *out) {
  if (s == NULL || out == NULL || len == 0 || len > DG_DECIMAL_MAX_INPUT || scale < 0 ||
      scale > DG_DECIMAL_MAX_SCALE)
    return DG_EINVAL;

  size_t i = 0;
  int neg = 0;
  if (s[i] == '+' || s[i] == '-') {
    neg = s[i] == '-';
    i++;
  }
  /* Mantissa: remember where its digits are; skip nothing yet. */
  size_t int_start = i;
  while (i < len && is_digit(s[i])) i++;
  size_t int_end = i;
  size_t frac_start = i, frac_end = i;
  if (i < len && s[i] == '.') {
    i++;
    frac_start = i;
    while (i < len && is_digit(s[i])) i++;
    frac_end = i;
  }
  if (int_end == int_start && frac_end == frac_start) return DG_EINVAL; /* no digit at all */
  long exp10 = 0;
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    int eneg = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) {
      eneg = s[i] == '-';
      i++;
    }
    if (i >= len || !is_digit(s[i])) return DG_EINVAL;
    while (i < len && is_digit(s[i])) {
      /* Saturate: beyond +-100000 the result is 0 or an overflow anyway. */
      if (exp10 < 100000) exp10 = exp10 * 10 + (s[i] - '0');
      i++;
    }
    if (eneg) exp10 = -exp10;
  }
  if (i != len) return DG_EINVAL;

  /* The digit sequence d = int digits then frac digits; value = d * 10^shift
   * in scaled units, shift = exp10 - nfrac + scale. The integer part of the
   * scaled value is the first (ndigits + shift) digits. */
  size_t nint = int_end - int_start, nfrac = frac_end - frac_start;
  size_t ndig = nint + nfrac;
#define DIGIT(k) ((k) < nint ? s[int_start + (k)] : s[frac_start + (k)-nint])
  size_t first = 0; /* skip leading zeros */
  while (first < ndig && DIGIT(first) == '0') first++;
  if (first == ndig) {
    *out = 0;
    return 0;
  }
  long shift = exp10 - (long)nfrac + scale;
  long keep = (long)(ndig - first) + shift; /* digits in the integer part */
  if (keep > 19) return DG_EOVERFLOW;       /* >= 10^18 for sure */
  uint64_t v = 0;
  int round_up = 0;
  if (keep > 0) {
    long have = (long)(ndig - first); /* significant digits available */
    long take = keep < have ? keep : have;
    for (long k = 0; k < take; k++) {
      v = v * 10 + (uint64_t)(DIGIT(first + (size_t)k) - '0'); /* <= 19 digits: fits */
      if (v >= (uint64_t)DG_DECIMAL_LIMIT && k + 1 < keep) return DG_EOVERFLOW;
    }
    if (keep > have) { /* trailing zeros from the exponent */
      long z = keep - have;
      if (v > (uint64_t)DG_DECIMAL_LIMIT / pow10_u64[z]) return DG_EOVERFLOW;
      v *= pow10_u64[z];
    } else if (keep < have) {
      round_up = DIGIT(first + (size_t)keep) >= '5';
    }
  } else if (keep == 0) {
    round_up = DIGIT(first) >= '5';
  } /* keep < 0: the value is below half a unit: 0 */
#undef DIGIT
  v += (uint64_t)round_up;
  if (v >= (uint64_t)DG_DECIMAL_LIMIT) return DG_EOVERFLOW;
  *out = neg ? -(int64_t)v : (int64_t)v;
  return 0;
}

size_t dg_decimal_format(int64_t v, int scale, char *buf, size_t cap) {
  if (scale < 0 || scale > DG_DECIMAL_MAX_SCALE) scale = 0;
  char tmp[DG_DECIMAL_FORMAT_MAX + 8];
  /* Build backwards: digits of |v| (as uint64_t, so INT64_MIN works). */
  uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  char *p = tmp + sizeof tmp;
  int nd = 0;
  do {
    *--p = (char)('0' + m % 10);
    m /= 10;
    nd++;
    if (nd == scale) *--p = '.';
  } while (m != 0 || nd <= scale);
  if (v < 0) *--p = '-';
  size_t n = (size_t)(tmp + sizeof tmp - p);
  if (cap > 0) {
    size_t c = n < cap - 1 ? n : cap - 1;
    memcpy(buf, p, c);
    buf[c] = '\0';
  }
  return n;
}
