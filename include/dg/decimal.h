/*
 * decimal.h -- exact decimal strings <-> scaled int64_t.
 *
 * A number column of scale s (0..6) stores v as the integer v * 10^s in an
 * int64_t, the C image of DuckDB's DECIMAL(18,s). Its magnitude limit is
 * |v * 10^s| < 10^18, i.e. |v| < 10^(18-s). These helpers are the one place
 * where text becomes such an integer and back; no double is ever involved.
 */
#ifndef DG_DECIMAL_H
#define DG_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

#include "dg/common.h"

/* Largest supported scale: DECIMAL(18,6) leaves 12 integer digits, which
 * covers money in any currency to the micro-unit. */
#define DG_DECIMAL_MAX_SCALE 6

/* Longest input dg_decimal_parse looks at. A DECIMAL(18,s) needs at most ~40
 * characters; 256 leaves room for leading zeros and an exponent while still
 * capping the work done on hostile input. */
#define DG_DECIMAL_MAX_INPUT 256

/* Longest output of dg_decimal_format, including the terminating NUL:
 * "-" + 19 digits + "." + NUL fits in 22; round up. */
#define DG_DECIMAL_FORMAT_MAX 24

/* Exclusive magnitude limit of every scaled value: |v| < 10^(18-s) for the
 * decimal value v is |v * 10^s| < 10^18 for its scaled image, whatever s is.
 * It is DECIMAL(18,s)'s range, and it keeps sums of two values inside
 * int64_t (2 * 10^18 < 2^63 ~ 9.22 * 10^18). */
#define DG_DECIMAL_LIMIT INT64_C(1000000000000000000)

/**
 * Parses a strict decimal string into a value scaled by 10^scale.
 * Grammar: [+-]? digits [ '.' digits? ]? ( [eE] [+-]? digits )?  or
 * [+-]? '.' digits ( exponent )?  -- no spaces, no "inf"/"nan", no hex.
 * Digits beyond `scale` are rounded half away from zero ("0.005" at scale 2
 * is 0.01, "-0.005" is -0.01).
 * Failures (*out untouched):
 *   DG_EINVAL    malformed, empty, longer than DG_DECIMAL_MAX_INPUT, or
 *                scale outside 0..DG_DECIMAL_MAX_SCALE;
 *   DG_EOVERFLOW the rounded magnitude is >= 10^(18-scale).
 */
int dg_decimal_parse(const char *s, size_t len, int scale, int64_t *out);

/**
 * Formats a scaled value with exactly `scale` decimals ("-0.05", "3.34",
 * "12" at scale 0) and a NUL. Returns the length written without the NUL, or
 * the length that would have been written when cap is too small (then buf
 * holds a truncated, NUL-terminated prefix when cap > 0), like snprintf. A
 * buffer of DG_DECIMAL_FORMAT_MAX bytes is always enough. A scale outside
 * 0..6 formats as 0 decimals.
 */
size_t dg_decimal_format(int64_t v, int scale, char *buf, size_t cap);

#endif
