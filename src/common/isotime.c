/*
 * isotime.c -- RFC 3339 date-times ("2026-12-31T23:59:59Z",
 * "...59.250+01:00") to milliseconds since the epoch: key expiry
 * (keys.c) and `duckgrid restore --until-time` (restore.c).
 */
#include "dg/isotime.h"

#include <stdio.h>
#include <time.h>

int dg_parse_rfc3339_ms(const char *s, int64_t *out) {
  int Y, M, D, h, m, sec, n = 0;
  char T;
  if (s == NULL || sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &Y, &M, &D, &T, &h, &m, &sec, &n) != 7 || n != 19 ||
      (T != 'T' && T != 't') || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
    return -1;
  const char *p = s + 19;
  int frac = 0, digits = 0;
  if (*p == '.') {
    for (p++; *p >= '0' && *p <= '9'; p++, digits++)
      if (digits < 3) frac = frac * 10 + (*p - '0');
    if (digits == 0) return -1;
    for (int d = digits; d < 3; d++) frac *= 10;
  }
  int off = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int oh, om, k = 0;
    if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5 || oh > 23 || om > 59) return -1;
    off = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    p += 6;
  } else {
    return -1;
  }
  if (*p != '\0') return -1;
  struct tm tm = {0};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  if (t == (time_t)-1 || tm.tm_mday != D) return -1; /* 2026-02-31 is no date */
  *out = ((int64_t)t - off) * 1000 + frac;
  return 0;
}
